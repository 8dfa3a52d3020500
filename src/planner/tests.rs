use async_graphql::{Name, Value};

use super::*;

const LIMITS: Limits = Limits {
    max_page_size: 1000,
};

fn f(name: &str, children: Vec<Field>) -> Field {
    Field::new(name, children)
}

fn leaf(name: &str) -> Field {
    Field::leaf(name)
}

fn rel(e: Entity, field: &str) -> Rel {
    e.relation(field).unwrap_or_else(|| panic!("{field}"))
}

fn int(n: i64) -> Value {
    Value::from(n)
}

#[test]
fn scalars_only_is_one_statement() {
    let node =
        plan(Entity::User, &[leaf("id"), leaf("email")], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        node,
        Node {
            entity: Entity::User,
            joins: vec![],
            batches: vec![],
            scalars: vec!["email".to_owned(), "id".to_owned()],
            aggregates: vec![],
        }
    );
    assert_eq!(node.statements(), 1);
}

#[test]
fn lesson_shapes_have_their_counts() {
    // users -> orders
    let dashboard = plan(
        Entity::User,
        &[leaf("id"), f("orders", vec![leaf("id")])],
        LIMITS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dashboard.statements(), 2);

    // users -> orders -> items -> product: the product is joined into the items statement.
    let deep = plan(
        Entity::User,
        &[f(
            "orders",
            vec![f("items", vec![f("product", vec![leaf("name")])])],
        )],
        LIMITS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deep.statements(), 3);
    let items = &deep.batches[0].node.batches[0];
    assert_eq!(items.edge, rel(Entity::Order, "items"));
    assert_eq!(items.node.joins[0].edge, rel(Entity::OrderItem, "product"));

    // order(id) -> { user, items -> product }
    let detail = plan(
        Entity::Order,
        &[
            f("user", vec![leaf("email")]),
            f("items", vec![f("product", vec![leaf("name")])]),
        ],
        LIMITS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(detail.statements(), 2);
    assert_eq!(detail.joins[0].edge, rel(Entity::Order, "user"));

    // products -> orders -> user
    let m2m = plan(
        Entity::Product,
        &[f("orders", vec![f("user", vec![leaf("email")])])],
        LIMITS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m2m.statements(), 2);
}

#[test]
fn aliases_with_equal_arguments_share_a_batch() {
    let a = f("orders", vec![leaf("id")]).arg("first", int(2));
    let b = f("orders", vec![f("items", vec![leaf("id")])]).arg("first", int(2));
    let node = plan(Entity::User, &[a, b], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.batches.len(), 1);
    // The merged batch carries the union of both sub-selections.
    assert_eq!(node.batches[0].node.batches.len(), 1);
    assert_eq!(node.statements(), 3);
}

#[test]
fn aliases_with_different_arguments_are_separate_batches() {
    let a = f("orders", vec![leaf("id")]).arg("first", int(2));
    let b = f("orders", vec![leaf("id")]).arg("status", Value::Enum(Name::new("SHIPPED")));
    let node = plan(Entity::User, &[a, b], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.batches.len(), 2);
    assert_eq!(
        node.batches[0].args,
        EdgeArgs {
            first: Some(2),
            ..EdgeArgs::default()
        }
    );
    // A filter argument is the `where` condition it stands for: the same batch key.
    let written = f("orders", vec![leaf("id")]).arg(
        "where",
        Value::from_json(serde_json::json!({ "status": { "eq": "SHIPPED" } })).expect("value"),
    );
    let same = plan(Entity::User, &[written], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.batches[1].args, same.batches[0].args);
    assert!(node.batches[1].args.filter.is_some());
}

#[test]
fn a_to_one_edge_selected_twice_is_joined_once() {
    let a = f("user", vec![leaf("id")]);
    let b = f("user", vec![f("orders", vec![leaf("id")])]);
    let node = plan(Entity::Order, &[a, b], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.joins.len(), 1);
    // A to-many edge under a joined to-one edge is still one batch, keyed by the joined ids.
    assert_eq!(node.joins[0].node.batches.len(), 1);
    assert_eq!(node.statements(), 2);
}

#[test]
fn explicit_null_arguments_mean_absent() {
    let a = f("orders", vec![leaf("id")])
        .arg("first", Value::Null)
        .arg("status", Value::Null);
    let node = plan(Entity::User, &[a], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.batches[0].args, EdgeArgs::default());
}

#[test]
fn four_levels_count_every_to_many_level() {
    // products -> orderItems -> order -> items -> product -> orders
    let sel = f(
        "orderItems",
        vec![f(
            "order",
            vec![f(
                "items",
                vec![f("product", vec![f("orders", vec![leaf("id")])])],
            )],
        )],
    );
    let node = plan(Entity::Product, &[sel], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.statements(), 4);
}

#[test]
fn page_sizes_are_checked() {
    let neg = f("orders", vec![]).arg("first", int(-1));
    let err = plan(Entity::User, &[neg], LIMITS).err();
    assert_eq!(
        err,
        Some(PlanError(
            "User.orders: `first` must not be negative, got -1".into()
        ))
    );
    let big = f("orders", vec![]).arg("first", int(1001));
    assert!(plan(Entity::User, &[big], LIMITS).is_err());
    let ok = f("orders", vec![]).arg("first", int(1000));
    assert!(plan(Entity::User, &[ok], LIMITS).is_ok());
}

#[test]
fn unknown_status_is_refused() {
    let bad = f("orders", vec![]).arg("status", Value::Enum(Name::new("LOST")));
    assert!(plan(Entity::User, &[bad], LIMITS).is_err());
}

#[test]
fn fields_of_other_types_are_not_edges() {
    // `orders` is an edge of User and Product, but not of OrderItem.
    let node = plan(Entity::OrderItem, &[f("orders", vec![leaf("id")])], LIMITS)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.statements(), 1);
}

#[test]
fn records_the_scalars_each_node_reads() {
    let node = plan(
        Entity::User,
        &[
            leaf("username"),
            leaf("__typename"),
            f(
                "orders",
                vec![leaf("totalAmount"), f("user", vec![leaf("email")])],
            ),
            leaf("username"),
            leaf("id"),
        ],
        LIMITS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.scalars, ["__typename", "id", "username"]);
    let orders = &node.batches[0].node;
    assert_eq!(orders.scalars, ["totalAmount"]);
    assert_eq!(orders.joins[0].node.scalars, ["email"]);
}

#[test]
fn order_by_is_part_of_the_batch_key_and_is_checked() {
    let a = f("orders", vec![leaf("id")]).arg(
        "orderBy",
        Value::List(vec![Value::Enum(Name::new("CREATED_AT_DESC"))]),
    );
    let b =
        f("orders", vec![leaf("status")]).arg("orderBy", Value::Enum(Name::new("CREATED_AT_DESC")));
    let c = f("orders", vec![leaf("id")]);
    let node = plan(Entity::User, &[a, b, c], LIMITS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        node.batches.len(),
        2,
        "a list of one and one value are the same order"
    );
    assert_eq!(node.statements(), 3);
    let keys: Vec<(usize, bool)> = node.batches[0].args.order.keys().collect();
    assert_eq!(
        keys,
        [(Entity::Order.column("createdAt").unwrap_or(99), true)]
    );

    let twice = f("orders", vec![leaf("id")]).arg(
        "orderBy",
        Value::List(vec![
            Value::Enum(Name::new("CREATED_AT_DESC")),
            Value::Enum(Name::new("CREATED_AT_ASC")),
        ]),
    );
    assert!(plan(Entity::User, &[twice], LIMITS).is_err());
    let many = f("orders", vec![leaf("id")]).arg(
        "orderBy",
        Value::List(
            [
                "ID_ASC",
                "STATUS_ASC",
                "TOTAL_AMOUNT_DESC",
                "CREATED_AT_ASC",
            ]
            .iter()
            .map(|n| Value::Enum(Name::new(n)))
            .collect(),
        ),
    );
    assert!(
        plan(Entity::User, &[many], LIMITS).is_err(),
        "at most 3 keys"
    );
}

/// The view is read from the same selection as the plan: every response key in order (aliases
/// too), each column by its position, and each edge with the arguments its batch is stored
/// under.
#[test]
fn the_view_writes_every_key_and_finds_each_batch_by_its_plan_arguments() {
    let orders = |first| f("orders", vec![leaf("id")]).arg("first", int(first));
    let selection = [
        leaf("email").alias("mail"),
        leaf("id"),
        orders(2).alias("two"),
        orders(5),
        f(
            "ordersConnection",
            vec![leaf("totalCount"), f("pageInfo", vec![leaf("hasNextPage")])],
        )
        .arg("first", int(3)),
    ];
    let node = plan(Entity::User, &selection, LIMITS).unwrap_or_else(|e| panic!("{e}"));
    let View::Object(parts) =
        View::object(Entity::User, &selection, LIMITS).unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!("an object view");
    };
    let keys: Vec<&[u8]> = parts.iter().map(|p| &*p.key).collect();
    assert_eq!(
        keys,
        [
            &b"\"mail\":"[..],
            b"\"id\":",
            b"\"two\":",
            b"\"orders\":",
            b"\"ordersConnection\":"
        ]
    );
    let cols = Entity::User.desc().columns;
    assert!(matches!(parts[0].what, view::What::Column(at) if cols[at].field == Some("email")));
    assert!(matches!(parts[1].what, view::What::Id(0)));
    // Each list's arguments are exactly those of one of the plan's batches.
    for part in &parts[2..4] {
        let view::What::Many(index, args, _) = &part.what else {
            panic!("a to-many edge");
        };
        assert!(
            node.batches
                .iter()
                .any(|b| b.edge.index == *index && b.args == *args)
        );
    }
    let view::What::Conn(index, args, conn) = &parts[4].what else {
        panic!("a connection");
    };
    assert!(
        node.batches
            .iter()
            .any(|b| b.edge.index == *index && b.args == *args)
    );
    assert!(view::conn_counts(conn));
}

/// A view refuses what the plan refuses, with the same message: the page size is read and
/// checked by one function.
#[test]
fn the_view_and_the_plan_refuse_a_page_alike() {
    let too_big = [f("orders", vec![leaf("id")]).arg("first", int(5_000))];
    let plan_err = plan(Entity::User, &too_big, LIMITS).expect_err("over the cap");
    let view_err = View::object(Entity::User, &too_big, LIMITS).expect_err("over the cap");
    assert_eq!(plan_err, view_err);
    let conn = [f("ordersConnection", vec![leaf("totalCount")]).arg("last", int(5_000))];
    let plan_err = plan(Entity::User, &conn, LIMITS).expect_err("over the cap");
    let view_err = View::object(Entity::User, &conn, LIMITS).expect_err("over the cap");
    assert_eq!(plan_err, view_err);
    let unknown = [leaf("nope")];
    assert!(View::object(Entity::User, &unknown, LIMITS).is_err());
}

/// The look-ahead row of a page, in one place: a page of 2 reads 3 rows, shows the first 2,
/// and the third only tells that more follow.
#[test]
fn a_page_reads_one_row_more_than_it_shows() {
    let page = Page::read(
        Entity::Order,
        SortKeys::default(),
        Some(2),
        None,
        None,
        None,
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.rows_read(), 3);
    assert_eq!(
        (0..4).map(|n| page.shows(n)).collect::<Vec<_>>(),
        [true, true, false, false]
    );
    assert_eq!((page.shown_of(1), page.more(1)), (1, false));
    assert_eq!((page.shown_of(2), page.more(2)), (2, false));
    assert_eq!((page.shown_of(3), page.more(3)), (2, true));
    let empty = Page::read(
        Entity::Order,
        SortKeys::default(),
        Some(0),
        None,
        None,
        None,
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (empty.rows_read(), empty.shows(0), empty.more(1)),
        (1, false, true)
    );
}

/// Root filters are described arguments: each is one comparison of its column, AND-ed with
/// `where`; an entity without the argument refuses it.
#[test]
fn filter_args_are_where_conditions_of_their_columns() {
    let parsed = |json: serde_json::Value| {
        let v = Value::from_json(json).expect("value");
        Some(std::sync::Arc::new(
            Filter::parse(Entity::Order, &v, "t").unwrap_or_else(|e| panic!("{e}")),
        ))
    };
    let pending = Value::Enum(async_graphql::Name::new("PENDING"));
    let one =
        Filter::with_filter_args(Entity::Order, [("status", &pending)], || Ok(None), "orders")
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        one,
        parsed(serde_json::json!({ "status": { "eq": "PENDING" } }))
    );
    let rest = parsed(serde_json::json!({ "not": { "status": { "eq": "PENDING" } } }));
    let amount = Value::String("10.50".to_owned());
    let both = Filter::with_filter_args(
        Entity::Order,
        [("minAmount", &amount), ("userId", &Value::Null)],
        || Ok(rest.clone()),
        "orders",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        both,
        parsed(serde_json::json!({
            "totalAmount": { "gte": "10.50" },
            "not": { "status": { "eq": "PENDING" } },
        }))
    );
    let none = Filter::with_filter_args(Entity::Order, [], || Ok(rest.clone()), "orders")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none, rest);
    assert!(
        Filter::with_filter_args(Entity::User, [("status", &pending)], || Ok(None), "users")
            .is_err()
    );
    let cents = Value::String("10.505".to_owned());
    let err = Filter::with_filter_args(
        Entity::Order,
        [("minAmount", &cents)],
        || Ok(None),
        "orders",
    )
    .expect_err("three decimals");
    assert!(err.0.starts_with("orders.minAmount must be"), "{err}");
}

/// The roots are the description's: each entity's list and by-id roots, and a connection and
/// an aggregate beside each list, with the list's access; their arguments are read by the
/// edges' rules (defaults, the page cap, non-null arguments, root filters AND-ed with `where`).
#[test]
fn roots_follow_the_description_and_read_their_arguments_like_edges() {
    use crate::entities::{Access, CONNECTION_SUFFIX};
    use roots::{RootArgs, RootKind, root_field, root_fields};
    for entity in Entity::ALL {
        let described = entity.desc().roots;
        let generated: Vec<_> = root_fields()
            .iter()
            .filter(|r| r.entity == entity)
            .collect();
        let expected =
            usize::from(described.by_id.is_some()) + 3 * usize::from(described.list.is_some());
        assert_eq!(generated.len(), expected, "{entity:?}");
        if let Some(list) = described.list {
            let conn =
                root_field(&format!("{}{CONNECTION_SUFFIX}", list.name)).expect("connection");
            assert_eq!(
                (conn.entity, conn.kind, conn.access),
                (entity, RootKind::Connection, list.access)
            );
        }
    }
    assert_eq!(root_field("users").map(|r| r.access), Some(Access::Admin));
    assert!(
        root_field("orderItems").is_none(),
        "order items have no roots"
    );

    let limits = LIMITS;
    let orders = root_field("orders").expect("orders");
    match orders.read([], limits).expect("defaults") {
        RootArgs::List {
            first,
            offset,
            filter,
            ..
        } => {
            assert_eq!((first, offset), (roots::DEFAULT_LIST_SIZE, 0));
            assert!(filter.is_none());
        }
        other => panic!("{other:?}"),
    }
    let null = Value::Null;
    let err = orders
        .read([("first", &null)], limits)
        .expect_err("first is Int!");
    assert_eq!(err.0, "orders: `first` must not be null");
    let over = int(limits.max_page_size + 1);
    assert!(orders.read([("first", &over)], limits).is_err());
    let status = Value::Enum(Name::new("PENDING"));
    let filter =
        Value::from_json(serde_json::json!({ "totalAmount": { "gt": "3" } })).expect("value");
    match orders
        .read([("status", &status), ("where", &filter)], limits)
        .expect("filters")
    {
        RootArgs::List {
            filter: Some(f), ..
        } => assert!(matches!(&*f, Filter::All(parts) if parts.len() == 2)),
        other => panic!("{other:?}"),
    }
    let conn = root_field("productsConnection").expect("connection");
    let last = int(2);
    match conn.read([("last", &last)], limits).expect("page") {
        RootArgs::Connection { args, .. } => assert!(args.page.expect("page").backward),
        other => panic!("{other:?}"),
    }
    assert!(
        conn.read([("status", &status)], limits).is_err(),
        "products have no status"
    );
    let bad = Value::String("x".to_owned());
    let err = root_field("order")
        .expect("order")
        .read([("id", &bad)], limits)
        .expect_err("bad id");
    assert_eq!(err.0, "order: \"x\" is not a valid id");
}
