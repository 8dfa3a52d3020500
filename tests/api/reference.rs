//! The reference: the whole database read naively into memory, and a small, independent
//! GraphQL evaluator that answers a query row by row from it (the lesson's lazy loading, with
//! no SQL at all). Every statement-count test compares the server's answer with this one, so
//! batching can never change an answer unnoticed.

use std::collections::HashMap;

use crate::rows::order_items::{self, OrderItemRow};
use crate::rows::orders::{self, OrderRow};
use crate::rows::products::{self, ProductRow};
use crate::rows::users::{self, UserRow};
use async_graphql::parser::parse_query;
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value as GqlValue};
use eagerql::db::columns::Cols;
use eagerql::db::{Backend, Db, Session};
use eagerql::model::OrderStatus;
use serde_json::{Map, Value as Json};

/// Every row of the database.
pub struct Model {
    pub users: Vec<UserRow>,
    pub orders: Vec<OrderRow>,
    pub items: Vec<OrderItemRow>,
    pub products: Vec<ProductRow>,
    pub links: Vec<(i64, i64)>,
    /// The signed-in viewer `Query.me` answers with.
    pub me: Option<i64>,
}

impl Model {
    /// Reads every table with one plain `select` each.
    pub async fn load(db: &Db) -> Model {
        let s = Session::unmetered(db.clone());
        let pg = db.backend() == Backend::Postgres;
        let money = |c: &str| {
            if pg {
                format!("({c} * 100)::int8")
            } else {
                c.to_owned()
            }
        };
        let int = |c: &str| {
            if pg {
                format!("{c}::int8")
            } else {
                c.to_owned()
            }
        };
        let users = s
            .fetch("ref.users", "select id, email, username, is_active, created_at, updated_at, bio from users order by id".into(), vec![], |r| users::decode(&mut Cols::all(r)))
            .await;
        let orders = s
            .fetch(
                "ref.orders",
                format!(
                    "select id, user_id, status, {}, created_at from orders order by id",
                    money("total_amount")
                ),
                vec![],
                |r| orders::decode(&mut Cols::all(r)),
            )
            .await;
        let items = s
            .fetch(
                "ref.items",
                format!(
                    "select id, order_id, product_id, {}, {} from order_items order by id",
                    int("quantity"),
                    money("unit_price")
                ),
                vec![],
                |r| order_items::decode(&mut Cols::all(r)),
            )
            .await;
        let products = s
            .fetch(
                "ref.products",
                format!(
                    "select id, name, sku, {}, {} from products order by id",
                    money("price"),
                    int("stock_quantity")
                ),
                vec![],
                |r| products::decode(&mut Cols::all(r)),
            )
            .await;
        let links = s
            .fetch(
                "ref.links",
                "select order_id, product_id from order_products order by order_id, product_id"
                    .into(),
                vec![],
                |r| Ok((r.i64(0)?, r.i64(1)?)),
            )
            .await;
        Model {
            users: must(users, "users"),
            orders: must(orders, "orders"),
            items: must(items, "items"),
            products: must(products, "products"),
            links: must(links, "links"),
            me: None,
        }
    }

    /// What customer `id` may see: their account, their orders and those orders' items and
    /// links, and the whole catalogue; `me` is them.
    pub fn as_customer(&self, id: i64) -> Model {
        let orders: Vec<_> = self
            .orders
            .iter()
            .filter(|o| o.user_id == id)
            .cloned()
            .collect();
        let mine = |order: i64| orders.iter().any(|o| o.id == order);
        Model {
            users: self.users.iter().filter(|u| u.id == id).cloned().collect(),
            items: self
                .items
                .iter()
                .filter(|i| mine(i.order_id))
                .cloned()
                .collect(),
            links: self.links.iter().filter(|l| mine(l.0)).copied().collect(),
            products: self.products.clone(),
            orders,
            me: Some(id),
        }
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Answers `query` with `variables`, as `data`.
    pub fn eval(&self, query: &str, variables: &Json) -> Json {
        let doc = parse_query(query).expect("reference: query parses");
        let op = match &doc.operations {
            DocumentOperations::Single(op) => op,
            DocumentOperations::Multiple(ops) => ops.values().next().expect("an operation"),
        };
        let mut vars = variables.as_object().cloned().unwrap_or_default();
        for def in &op.node.variable_definitions {
            let name = def.node.name.node.to_string();
            if let (false, Some(default)) = (vars.contains_key(&name), &def.node.default_value) {
                vars.insert(name, default.node.clone().into_json().unwrap_or(Json::Null));
            }
        }
        let cx = Cx { doc: &doc, vars };
        Json::Object(self.set(Obj::Query, &op.node.selection_set.node, &cx))
    }

    fn set(&self, obj: Obj<'_>, set: &SelectionSet, cx: &Cx<'_>) -> Map<String, Json> {
        let mut out = Map::new();
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    if cx.skipped(&f.node.directives) {
                        continue;
                    }
                    let key = f
                        .node
                        .alias
                        .as_ref()
                        .unwrap_or(&f.node.name)
                        .node
                        .to_string();
                    let value = self.field(obj, &f.node, cx);
                    merge(&mut out, key, value);
                }
                Selection::FragmentSpread(fs) => {
                    if cx.skipped(&fs.node.directives) {
                        continue;
                    }
                    let frag = &cx.doc.fragments[&fs.node.fragment_name.node];
                    for (k, v) in self.set(obj, &frag.node.selection_set.node, cx) {
                        merge(&mut out, k, v);
                    }
                }
                Selection::InlineFragment(inf) => {
                    if cx.skipped(&inf.node.directives) {
                        continue;
                    }
                    for (k, v) in self.set(obj, &inf.node.selection_set.node, cx) {
                        merge(&mut out, k, v);
                    }
                }
            }
        }
        out
    }

    fn field<'a>(&'a self, obj: Obj<'a>, f: &Field, cx: &Cx<'_>) -> Json {
        let args = cx.args(f);
        let int = |name: &str, default: Option<i64>| match args.get(name) {
            Some(GqlValue::Number(n)) => n.as_i64(),
            _ => default,
        };
        let id = |name: &str| match args.get(name) {
            Some(GqlValue::String(s)) => s.parse::<i64>().ok(),
            Some(GqlValue::Number(n)) => n.as_i64(),
            _ => None,
        };
        let status = match args.get("status") {
            Some(GqlValue::Enum(e)) => OrderStatus::from_graphql(e.as_str()),
            _ => None,
        };
        let sub = |o: Obj<'_>| Json::Object(self.set(o, &f.selection_set.node, cx));
        let list = |objs: Vec<Obj<'_>>| Json::Array(objs.into_iter().map(sub).collect());
        let order = args.get("orderBy");
        let first = int("first", Some(20)).unwrap_or(20) as usize;
        let offset = int("offset", Some(0)).unwrap_or(0) as usize;
        let filter = args.get("where").cloned();
        let keep = |v: Vec<Obj<'a>>| -> Vec<Obj<'a>> {
            v.into_iter()
                .filter(|o| filter.as_ref().is_none_or(|w| self.matches(*o, w)))
                .collect()
        };
        let paged = |all| paged(keep(all), order, first, offset);
        let name = f.name.node.as_str();
        if name == "__typename" {
            return Json::String(obj.typename().to_owned());
        }
        if let Some(base) = name.strip_suffix("Connection") {
            let rows = match (obj, base) {
                (Obj::Query, "users") => self.users.iter().map(Obj::User).collect(),
                (Obj::Query, "products") => self.products.iter().map(Obj::Product).collect(),
                (Obj::Query, "orders") => self.root_orders(&args, status, id("userId")),
                _ => self.children(obj, base, status),
            };
            let target = match (obj, base) {
                (Obj::Query, "users") => "User",
                (Obj::Query, "products") | (Obj::Order(_), "products") => "Product",
                (_, "items") | (_, "orderItems") => "OrderItem",
                _ => "Order",
            };
            return self.connection(target, keep(rows), f, &args, cx);
        }
        if let (false, Some(base)) = (matches!(obj, Obj::Query), name.strip_suffix("Aggregate")) {
            let rows = keep(self.children(obj, base, status));
            return self.aggregate(obj, base, &rows, f, cx);
        }
        match obj {
            Obj::Query => match name {
                "users" => list(paged(self.users.iter().map(Obj::User).collect())),
                "usersAggregate" => {
                    let rows = keep(self.users.iter().map(Obj::User).collect());
                    self.aggregate(obj, "users", &rows, f, cx)
                }
                "productsAggregate" => {
                    let rows = keep(self.products.iter().map(Obj::Product).collect());
                    self.aggregate(obj, "products", &rows, f, cx)
                }
                "ordersAggregate" => {
                    let rows = keep(self.root_orders(&args, status, id("userId")));
                    self.aggregate(obj, "orders", &rows, f, cx)
                }
                "me" => self
                    .me
                    .and_then(|me| self.user(me))
                    .map(sub)
                    .unwrap_or(Json::Null),
                "user" => self
                    .user(id("id").unwrap_or(0))
                    .map(sub)
                    .unwrap_or(Json::Null),
                "order" => self
                    .order(id("id").unwrap_or(0))
                    .map(sub)
                    .unwrap_or(Json::Null),
                "product" => self
                    .product(id("id").unwrap_or(0))
                    .map(sub)
                    .unwrap_or(Json::Null),
                "products" => list(paged(self.products.iter().map(Obj::Product).collect())),
                "orders" => list(paged(self.root_orders(&args, status, id("userId")))),
                other => panic!("reference: unknown Query.{other}"),
            },
            Obj::User(u) => match name {
                "id" => Json::String(u.id.to_string()),
                "email" => Json::String(u.email.clone()),
                "username" => Json::String(u.username.clone()),
                "isActive" => Json::Bool(u.is_active),
                "createdAt" => Json::String(u.created_at.to_rfc3339()),
                "updatedAt" => Json::String(u.updated_at.to_rfc3339()),
                "bio" => u.bio.clone().map(Json::String).unwrap_or(Json::Null),
                "orders" => {
                    let mine = self
                        .orders
                        .iter()
                        .filter(|o| o.user_id == u.id && status.is_none_or(|s| o.status == s))
                        .map(Obj::Order)
                        .collect();
                    list(take(sorted(keep(mine), order), int("first", None)))
                }
                other => panic!("reference: unknown User.{other}"),
            },
            Obj::Order(o) => match name {
                "id" => Json::String(o.id.to_string()),
                "status" => Json::String(format!("{:?}", o.status).to_uppercase()),
                "totalAmount" => Json::String(o.total_amount.to_string()),
                "createdAt" => Json::String(o.created_at.to_rfc3339()),
                "user" => sub(self.user(o.user_id).expect("order has a user")),
                "items" => list(sorted(
                    keep(
                        self.items
                            .iter()
                            .filter(|i| i.order_id == o.id)
                            .map(Obj::Item)
                            .collect(),
                    ),
                    order,
                )),
                "products" => {
                    let mut ids: Vec<i64> = self
                        .links
                        .iter()
                        .filter(|l| l.0 == o.id)
                        .map(|l| l.1)
                        .collect();
                    ids.sort_unstable();
                    list(sorted(
                        keep(ids.into_iter().filter_map(|p| self.product(p)).collect()),
                        order,
                    ))
                }
                other => panic!("reference: unknown Order.{other}"),
            },
            Obj::Item(i) => match name {
                "id" => Json::String(i.id.to_string()),
                "quantity" => Json::from(i.quantity),
                "unitPrice" => Json::String(i.unit_price.to_string()),
                "order" => sub(self.order(i.order_id).expect("item has an order")),
                "product" => sub(self.product(i.product_id).expect("item has a product")),
                other => panic!("reference: unknown OrderItem.{other}"),
            },
            Obj::Product(p) => match name {
                "id" => Json::String(p.id.to_string()),
                "name" => Json::String(p.name.clone()),
                "sku" => Json::String(p.sku.clone()),
                "price" => Json::String(p.price.to_string()),
                "stockQuantity" => Json::from(p.stock_quantity),
                "orders" => {
                    let mut ids: Vec<i64> = self
                        .links
                        .iter()
                        .filter(|l| l.1 == p.id)
                        .map(|l| l.0)
                        .collect();
                    ids.sort_unstable();
                    let orders = ids.into_iter().filter_map(|o| self.order(o)).collect();
                    list(take(sorted(keep(orders), order), int("first", None)))
                }
                "orderItems" => list(sorted(
                    keep(
                        self.items
                            .iter()
                            .filter(|i| i.product_id == p.id)
                            .map(Obj::Item)
                            .collect(),
                    ),
                    order,
                )),
                other => panic!("reference: unknown Product.{other}"),
            },
        }
    }

    /// The rows of a to-many edge of `obj`, unordered and unpaged.
    fn children<'a>(
        &'a self,
        obj: Obj<'a>,
        edge: &str,
        status: Option<OrderStatus>,
    ) -> Vec<Obj<'a>> {
        let orders_of = |ids: Vec<i64>| -> Vec<Obj<'a>> {
            ids.into_iter().filter_map(|o| self.order(o)).collect()
        };
        match (obj, edge) {
            (Obj::User(u), "orders") => self
                .orders
                .iter()
                .filter(|o| o.user_id == u.id && status.is_none_or(|s| o.status == s))
                .map(Obj::Order)
                .collect(),
            (Obj::Order(o), "items") => self
                .items
                .iter()
                .filter(|i| i.order_id == o.id)
                .map(Obj::Item)
                .collect(),
            (Obj::Order(o), "products") => self
                .links
                .iter()
                .filter(|l| l.0 == o.id)
                .filter_map(|l| self.product(l.1))
                .collect(),
            (Obj::Product(p), "orders") => orders_of(
                self.links
                    .iter()
                    .filter(|l| l.1 == p.id)
                    .map(|l| l.0)
                    .collect(),
            ),
            (Obj::Product(p), "orderItems") => self
                .items
                .iter()
                .filter(|i| i.product_id == p.id)
                .map(Obj::Item)
                .collect(),
            (_, other) => panic!("reference: no edge {other} on {}", obj.typename()),
        }
    }

    /// The orders the filters of `Query.orders` keep (`status`, `userId`, `minAmount`).
    fn root_orders(
        &self,
        args: &HashMap<String, GqlValue>,
        status: Option<OrderStatus>,
        user: Option<i64>,
    ) -> Vec<Obj<'_>> {
        self.orders
            .iter()
            .filter(|o| status.is_none_or(|s| o.status == s))
            .filter(|o| user.is_none_or(|u| o.user_id == u))
            .filter(|o| match args.get("minAmount") {
                Some(GqlValue::String(m)) => o.total_amount >= m.parse().unwrap_or_default(),
                _ => true,
            })
            .map(Obj::Order)
            .collect()
    }

    /// Whether `o` passes the `where` value `w` (the documented semantics, row by row).
    fn matches(&self, o: Obj<'_>, w: &GqlValue) -> bool {
        let GqlValue::Object(fields) = w else {
            panic!("reference: a where filter is an object, got {w}")
        };
        let list = |v: &GqlValue| -> Vec<GqlValue> {
            match v {
                GqlValue::List(items) => items.clone(),
                other => vec![other.clone()],
            }
        };
        fields.iter().all(|(name, v)| match (name.as_str(), v) {
            (_, GqlValue::Null) => true,
            ("and", v) => list(v).iter().all(|x| self.matches(o, x)),
            ("or", v) => list(v).iter().any(|x| self.matches(o, x)),
            ("not", v) => !self.matches(o, v),
            (name, v) => match self.related(o, name) {
                Some(Related::One(target)) => self.matches(target, v),
                Some(Related::Many(rows)) => {
                    let GqlValue::Object(ops) = v else {
                        panic!("reference: a list filter is an object")
                    };
                    ops.iter().all(|(op, w)| {
                        let any = rows.iter().any(|r| self.matches(*r, w));
                        match op.as_str() {
                            "some" => any,
                            "none" => !any,
                            other => panic!("reference: no list operator {other}"),
                        }
                    })
                }
                None => ops_hold(&filter_val(&o, name), v),
            },
        })
    }

    /// The rows a relationship of `o` names, if `name` is one.
    fn related<'a>(&'a self, o: Obj<'a>, name: &str) -> Option<Related<'a>> {
        Some(match (o, name) {
            (Obj::Order(r), "user") => Related::One(self.user(r.user_id)?),
            (Obj::Item(r), "order") => Related::One(self.order(r.order_id)?),
            (Obj::Item(r), "product") => Related::One(self.product(r.product_id)?),
            (Obj::User(_), "orders")
            | (Obj::Order(_), "items" | "products")
            | (Obj::Product(_), "orders" | "orderItems") => {
                Related::Many(self.children(o, name, None))
            }
            _ => return None,
        })
    }

    /// A connection object over `rows` (every row of the list, unordered): sorted by
    /// `orderBy`, cut by the cursors, then the first or last page, by the Relay algorithm.
    fn connection(
        &self,
        target: &str,
        rows: Vec<Obj<'_>>,
        f: &Field,
        args: &HashMap<String, GqlValue>,
        cx: &Cx<'_>,
    ) -> Json {
        let keys = order_keys(args.get("orderBy"));
        let order_text: Vec<String> = match args.get("orderBy") {
            Some(GqlValue::List(items)) => items.iter().map(|i| i.to_string()).collect(),
            Some(GqlValue::Enum(e)) => vec![e.to_string()],
            _ => Vec::new(),
        };
        let order_text = order_text.join(",");
        let total = rows.len();
        let mut rows = sorted(rows, args.get("orderBy"));
        let cursor_arg = |name: &str| match args.get(name) {
            Some(GqlValue::String(c)) => Some(decode_cursor(c)),
            _ => None,
        };
        if let Some((vals, id)) = cursor_arg("after") {
            rows.retain(|o| cmp_cursor(o, &keys, &vals, id) == std::cmp::Ordering::Greater);
        }
        if let Some((vals, id)) = cursor_arg("before") {
            rows.retain(|o| cmp_cursor(o, &keys, &vals, id) == std::cmp::Ordering::Less);
        }
        let int = |name: &str| match args.get(name) {
            Some(GqlValue::Number(n)) => n.as_u64().map(|n| n as usize),
            _ => None,
        };
        let (mut has_next, mut has_prev) = (false, false);
        match (int("first"), int("last")) {
            (_, Some(n)) => {
                has_prev = rows.len() > n;
                rows = rows.split_off(rows.len().saturating_sub(n));
            }
            (first, None) => {
                let n = first.unwrap_or(20);
                has_next = rows.len() > n;
                rows.truncate(n);
            }
        }
        let cursor = |o: &Obj<'_>| encode_cursor(target, &order_text, o, &keys);
        let mut out = Map::new();
        for item in &f.selection_set.node.items {
            let Selection::Field(part) = &item.node else {
                panic!("reference: fragments inside connections are not modelled")
            };
            let part = &part.node;
            let key = part.alias.as_ref().unwrap_or(&part.name).node.to_string();
            let sub_fields = |p: &Field| -> Vec<(String, Field)> {
                p.selection_set
                    .node
                    .items
                    .iter()
                    .filter_map(|i| match &i.node {
                        Selection::Field(c) => Some((
                            c.node
                                .alias
                                .as_ref()
                                .unwrap_or(&c.node.name)
                                .node
                                .to_string(),
                            c.node.clone(),
                        )),
                        _ => None,
                    })
                    .collect()
            };
            let value = match part.name.node.as_str() {
                "__typename" => Json::String(format!("{target}Connection")),
                "totalCount" => Json::from(total),
                "nodes" => Json::Array(
                    rows.iter()
                        .map(|o| Json::Object(self.set(*o, &part.selection_set.node, cx)))
                        .collect(),
                ),
                "edges" => Json::Array(
                    rows.iter()
                        .map(|o| {
                            let mut e = Map::new();
                            for (k, c) in sub_fields(part) {
                                let v = match c.name.node.as_str() {
                                    "__typename" => Json::String(format!("{target}Edge")),
                                    "cursor" => Json::String(cursor(o)),
                                    "node" => Json::Object(self.set(*o, &c.selection_set.node, cx)),
                                    other => panic!("reference: no edge field {other}"),
                                };
                                merge(&mut e, k, v);
                            }
                            Json::Object(e)
                        })
                        .collect(),
                ),
                "pageInfo" => {
                    let mut p = Map::new();
                    for (k, c) in sub_fields(part) {
                        let v = match c.name.node.as_str() {
                            "__typename" => Json::String("PageInfo".to_owned()),
                            "hasNextPage" => Json::Bool(has_next),
                            "hasPreviousPage" => Json::Bool(has_prev),
                            "startCursor" => rows.first().map_or(Json::Null, |o| cursor(o).into()),
                            "endCursor" => rows.last().map_or(Json::Null, |o| cursor(o).into()),
                            other => panic!("reference: no PageInfo field {other}"),
                        };
                        merge(&mut p, k, v);
                    }
                    Json::Object(p)
                }
                other => panic!("reference: no connection field {other}"),
            };
            merge(&mut out, key, value);
        }
        Json::Object(out)
    }

    /// An aggregate object over `rows` (count, sum, avg, min, max of their fields).
    fn aggregate(
        &self,
        obj: Obj<'_>,
        edge: &str,
        rows: &[Obj<'_>],
        f: &Field,
        cx: &Cx<'_>,
    ) -> Json {
        let target = match rows.first() {
            Some(o) => o.typename().to_owned(),
            None => match (obj, edge) {
                (Obj::Query, "users") => "User".to_owned(),
                (Obj::Query, "products") => "Product".to_owned(),
                (Obj::User(_), _) | (Obj::Product(_), "orders") | (Obj::Query, _) => {
                    "Order".to_owned()
                }
                (_, "items") | (_, "orderItems") => "OrderItem".to_owned(),
                _ => "Product".to_owned(),
            },
        };
        let mut out = Map::new();
        for item in &f.selection_set.node.items {
            let Selection::Field(part) = &item.node else {
                panic!("reference: fragments inside aggregates are not modelled")
            };
            let part = &part.node;
            let key = part.alias.as_ref().unwrap_or(&part.name).node.to_string();
            let value = match part.name.node.as_str() {
                "__typename" => Json::String(format!("{target}Aggregate")),
                "count" => Json::from(rows.len()),
                func => {
                    let mut inner = Map::new();
                    for c in &part.selection_set.node.items {
                        let Selection::Field(c) = &c.node else {
                            continue;
                        };
                        let c = &c.node;
                        let k = c.alias.as_ref().unwrap_or(&c.name).node.to_string();
                        let field = c.name.node.as_str();
                        let v = if field == "__typename" {
                            let suffix = match func {
                                "sum" => "SumFields",
                                "avg" => "AvgFields",
                                "min" => "MinFields",
                                _ => "MaxFields",
                            };
                            Json::String(format!("{target}{suffix}"))
                        } else {
                            agg_value(func, field, rows)
                        };
                        merge(&mut inner, k, v);
                    }
                    Json::Object(inner)
                }
            };
            let _ = cx;
            merge(&mut out, key, value);
        }
        Json::Object(out)
    }

    fn user(&self, id: i64) -> Option<Obj<'_>> {
        self.users.iter().find(|u| u.id == id).map(Obj::User)
    }
    fn order(&self, id: i64) -> Option<Obj<'_>> {
        self.orders.iter().find(|o| o.id == id).map(Obj::Order)
    }
    fn product(&self, id: i64) -> Option<Obj<'_>> {
        self.products.iter().find(|p| p.id == id).map(Obj::Product)
    }
}

#[derive(Copy, Clone)]
enum Obj<'a> {
    Query,
    User(&'a UserRow),
    Order(&'a OrderRow),
    Item(&'a OrderItemRow),
    Product(&'a ProductRow),
}

impl Obj<'_> {
    fn typename(&self) -> &'static str {
        match self {
            Obj::Query => "Query",
            Obj::User(_) => "User",
            Obj::Order(_) => "Order",
            Obj::Item(_) => "OrderItem",
            Obj::Product(_) => "Product",
        }
    }
}

struct Cx<'a> {
    doc: &'a ExecutableDocument,
    vars: Map<String, Json>,
}

impl Cx<'_> {
    fn var(&self, name: &Name) -> GqlValue {
        self.vars
            .get(name.as_str())
            .and_then(|v| GqlValue::from_json(v.clone()).ok())
            .unwrap_or(GqlValue::Null)
    }

    fn args(&self, f: &Field) -> HashMap<String, GqlValue> {
        f.arguments
            .iter()
            .map(|(n, v)| {
                let value = v
                    .node
                    .clone()
                    .into_const_with(|name| Ok::<_, ()>(self.var(&name)))
                    .unwrap_or(GqlValue::Null);
                (n.node.to_string(), value)
            })
            .filter(|(_, v)| *v != GqlValue::Null)
            .collect()
    }

    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let cond = d.node.get_argument("if").and_then(|v| {
                v.node
                    .clone()
                    .into_const_with(|n| Ok::<_, ()>(self.var(&n)))
                    .ok()
            });
            match d.node.name.node.as_str() {
                "skip" => cond == Some(GqlValue::Boolean(true)),
                "include" => cond == Some(GqlValue::Boolean(false)),
                _ => false,
            }
        })
    }
}

fn must<T>(r: Result<T, eagerql::error::AppError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("reference {what}: {}", e.detail()))
}

/// `func` of `field` over `rows`, as the server writes it (null over no rows).
fn agg_value(func: &str, field: &str, rows: &[Obj<'_>]) -> Json {
    if rows.is_empty() {
        return Json::Null;
    }
    let vals: Vec<SortVal> = rows.iter().map(|o| sort_val(o, field)).collect();
    match func {
        "min" | "max" => {
            let v = if func == "min" {
                vals.into_iter().min()
            } else {
                vals.into_iter().max()
            };
            match v {
                Some(SortVal::Int(n)) => Json::from(n),
                Some(SortVal::Dec(d)) => Json::String(d.to_string()),
                Some(SortVal::Time(t)) => Json::String(t.to_rfc3339()),
                Some(SortVal::Text(t)) => Json::String(t),
                None => Json::Null,
            }
        }
        "sum" | "avg" => {
            let mut int = 0i64;
            let mut dec = rust_decimal::Decimal::ZERO;
            let mut money = false;
            for v in &vals {
                match v {
                    SortVal::Int(n) => int += n,
                    SortVal::Dec(d) => {
                        money = true;
                        dec += d;
                    }
                    _ => panic!("reference: cannot {func} {field}"),
                }
            }
            if func == "sum" {
                if money {
                    Json::String(dec.to_string())
                } else {
                    Json::from(int)
                }
            } else {
                let total = if money {
                    dec
                } else {
                    rust_decimal::Decimal::from(int)
                };
                let avg = total / rust_decimal::Decimal::from(vals.len() as i64);
                use rust_decimal::prelude::ToPrimitive as _;
                serde_json::Number::from_f64(avg.to_f64().unwrap_or(f64::NAN))
                    .map_or(Json::Null, Json::Number)
            }
        }
        other => panic!("reference: unknown aggregate {other}"),
    }
}

/// What a relationship filter looks at.
enum Related<'a> {
    One(Obj<'a>),
    Many(Vec<Obj<'a>>),
}

/// A field's value as a filter sees it.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum FVal {
    Null,
    Bool(bool),
    Sort(SortVal),
}

fn filter_val(o: &Obj<'_>, field: &str) -> FVal {
    match (o, field) {
        (Obj::User(u), "isActive") => FVal::Bool(u.is_active),
        (Obj::User(u), "updatedAt") => FVal::Sort(SortVal::Time(u.updated_at)),
        (Obj::User(u), "bio") => u
            .bio
            .clone()
            .map_or(FVal::Null, |b| FVal::Sort(SortVal::Text(b))),
        _ => FVal::Sort(sort_val(o, field)),
    }
}

/// The literal `v` as a value of the same type as `like`.
fn lit_like(like: &FVal, v: &GqlValue) -> FVal {
    let text = match v {
        GqlValue::String(s) => s.clone(),
        GqlValue::Enum(e) => e.to_string().to_lowercase(),
        GqlValue::Number(n) => n.to_string(),
        GqlValue::Boolean(b) => return FVal::Bool(*b),
        other => panic!("reference: a filter value, got {other}"),
    };
    FVal::Sort(match like {
        FVal::Sort(SortVal::Int(_)) => SortVal::Int(text.parse().expect("an integer")),
        FVal::Sort(SortVal::Dec(_)) => SortVal::Dec(text.parse().expect("a decimal")),
        FVal::Sort(SortVal::Time(_)) => SortVal::Time(
            chrono::DateTime::parse_from_rfc3339(&text)
                .expect("a time")
                .with_timezone(&chrono::Utc),
        ),
        _ => SortVal::Text(text),
    })
}

/// Whether every operator of a field filter holds for `val`.
fn ops_hold(val: &FVal, ops: &GqlValue) -> bool {
    let GqlValue::Object(ops) = ops else {
        panic!("reference: a field filter is an object")
    };
    ops.iter().all(|(op, v)| {
        if matches!(v, GqlValue::Null) {
            return true;
        }
        if op.as_str() == "isNull" {
            return (*val == FVal::Null) == (*v == GqlValue::Boolean(true));
        }
        if *val == FVal::Null {
            return false;
        }
        let lower = |f: &FVal| match f {
            FVal::Sort(SortVal::Text(t)) => t.to_ascii_lowercase(),
            _ => String::new(),
        };
        match op.as_str() {
            "eq" => *val == lit_like(val, v),
            "gt" => *val > lit_like(val, v),
            "gte" => *val >= lit_like(val, v),
            "lt" => *val < lit_like(val, v),
            "lte" => *val <= lit_like(val, v),
            "in" => match v {
                GqlValue::List(items) => items.iter().any(|i| *val == lit_like(val, i)),
                _ => panic!("reference: `in` takes a list"),
            },
            "contains" => lower(val).contains(&lower(&lit_like(val, v))),
            "startsWith" => lower(val).starts_with(&lower(&lit_like(val, v))),
            other => panic!("reference: no operator {other}"),
        }
    })
}

/// A value to sort by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortVal {
    Int(i64),
    Dec(rust_decimal::Decimal),
    Time(chrono::DateTime<chrono::Utc>),
    Text(String),
}

/// `CREATED_AT_DESC` -> (`createdAt`, descending).
fn sort_key(value: &str) -> (String, bool) {
    let (base, desc) = match value.strip_suffix("_DESC") {
        Some(b) => (b, true),
        None => (value.strip_suffix("_ASC").unwrap_or(value), false),
    };
    let mut field = String::new();
    let mut upper = false;
    for c in base.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            field.push(c);
            upper = false;
        } else {
            field.push(c.to_ascii_lowercase());
        }
    }
    (field, desc)
}

fn sort_val(obj: &Obj<'_>, field: &str) -> SortVal {
    match (obj, field) {
        (Obj::User(u), "id") => SortVal::Int(u.id),
        (Obj::User(u), "email") => SortVal::Text(u.email.clone()),
        (Obj::User(u), "username") => SortVal::Text(u.username.clone()),
        (Obj::User(u), "createdAt") => SortVal::Time(u.created_at),
        (Obj::Order(o), "id") => SortVal::Int(o.id),
        (Obj::Order(o), "status") => SortVal::Text(o.status.as_db().to_owned()),
        (Obj::Order(o), "totalAmount") => SortVal::Dec(o.total_amount),
        (Obj::Order(o), "createdAt") => SortVal::Time(o.created_at),
        (Obj::Item(i), "id") => SortVal::Int(i.id),
        (Obj::Item(i), "quantity") => SortVal::Int(i64::from(i.quantity)),
        (Obj::Item(i), "unitPrice") => SortVal::Dec(i.unit_price),
        (Obj::Product(p), "id") => SortVal::Int(p.id),
        (Obj::Product(p), "name") => SortVal::Text(p.name.clone()),
        (Obj::Product(p), "sku") => SortVal::Text(p.sku.clone()),
        (Obj::Product(p), "price") => SortVal::Dec(p.price),
        (Obj::Product(p), "stockQuantity") => SortVal::Int(i64::from(p.stock_quantity)),
        (_, other) => panic!("reference: cannot sort by {other}"),
    }
}

/// The `(field, descending)` keys of an `orderBy` argument (a list or one value).
fn order_keys(order: Option<&GqlValue>) -> Vec<(String, bool)> {
    match order {
        Some(GqlValue::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                GqlValue::Enum(e) => Some(sort_key(e.as_str())),
                _ => None,
            })
            .collect(),
        Some(GqlValue::Enum(e)) => vec![sort_key(e.as_str())],
        _ => Vec::new(),
    }
}

/// A cursor as documented: URL-safe base64 of `[type, order, [key values], id]`.
fn encode_cursor(target: &str, order: &str, o: &Obj<'_>, keys: &[(String, bool)]) -> String {
    use base64::Engine as _;
    let vals: Vec<Json> = keys
        .iter()
        .map(|(field, _)| match sort_val(o, field) {
            SortVal::Int(n) => Json::from(n),
            SortVal::Dec(d) => Json::from(d.to_string()),
            SortVal::Time(t) => Json::from(t.to_rfc3339()),
            SortVal::Text(t) if field == "status" => Json::from(t.to_uppercase()),
            SortVal::Text(t) => Json::from(t),
        })
        .collect();
    let id = match sort_val(o, "id") {
        SortVal::Int(n) => n,
        _ => 0,
    };
    let text = Json::Array(vec![
        Json::from(target),
        Json::from(order),
        Json::Array(vals),
        Json::from(id),
    ])
    .to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(c: &str) -> (Vec<Json>, i64) {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .expect("reference: a valid cursor");
    let json: Json = serde_json::from_slice(&bytes).expect("reference: cursor JSON");
    (
        json[2].as_array().cloned().unwrap_or_default(),
        json[3].as_i64().unwrap_or_default(),
    )
}

/// Where `o` is relative to a cursor's row in the order `keys`.
fn cmp_cursor(o: &Obj<'_>, keys: &[(String, bool)], vals: &[Json], id: i64) -> std::cmp::Ordering {
    for ((field, desc), v) in keys.iter().zip(vals) {
        let mine = sort_val(o, field);
        let theirs = match (&mine, v) {
            (SortVal::Int(_), v) => SortVal::Int(v.as_i64().unwrap_or_default()),
            (SortVal::Dec(_), v) => {
                SortVal::Dec(v.as_str().unwrap_or("0").parse().unwrap_or_default())
            }
            (SortVal::Time(_), v) => SortVal::Time(
                chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_default(),
            ),
            (SortVal::Text(_), v) if field == "status" => {
                SortVal::Text(v.as_str().unwrap_or_default().to_lowercase())
            }
            (SortVal::Text(_), v) => SortVal::Text(v.as_str().unwrap_or_default().to_owned()),
        };
        let ord = mine.cmp(&theirs);
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    sort_val(o, "id").cmp(&SortVal::Int(id))
}

/// Orders `v` by an `orderBy` argument (a list or one value), the id breaking ties.
fn sorted<'a>(mut v: Vec<Obj<'a>>, order: Option<&GqlValue>) -> Vec<Obj<'a>> {
    let keys = order_keys(order);
    v.sort_by(|a, b| {
        for (field, desc) in &keys {
            let o = sort_val(a, field).cmp(&sort_val(b, field));
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        sort_val(a, "id").cmp(&sort_val(b, "id"))
    });
    v
}

/// A root page: sorted, then `offset` skipped and `first` kept.
fn paged<'a>(
    all: Vec<Obj<'a>>,
    order: Option<&GqlValue>,
    first: usize,
    offset: usize,
) -> Vec<Obj<'a>> {
    sorted(all, order)
        .into_iter()
        .skip(offset)
        .take(first)
        .collect()
}

fn take(v: Vec<Obj<'_>>, first: Option<i64>) -> Vec<Obj<'_>> {
    match first {
        Some(n) => v.into_iter().take(n as usize).collect(),
        None => v,
    }
}

/// Merges a field into a response map the way GraphQL merges repeated fields.
fn merge(out: &mut Map<String, Json>, key: String, value: Json) {
    match (out.get_mut(&key), value) {
        (Some(Json::Object(a)), Json::Object(b)) => {
            for (k, v) in b {
                merge(a, k, v);
            }
        }
        (Some(Json::Array(a)), Json::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                if let (Json::Object(xa), Json::Object(yb)) = (x, y) {
                    for (k, v) in yb {
                        merge(xa, k, v);
                    }
                }
            }
        }
        (_, value) => {
            out.insert(key, value);
        }
    }
}
