//! The one description of the data model: every entity, its table and columns (with their
//! GraphQL names, types and documentation), its relationships (kind, keys, link table) and
//! the arguments each relationship accepts.
//!
//! Everything else is driven by these tables: the planner finds relationships here, the SQL
//! builder (`db::load`) takes table, columns and keys from here and decodes rows by the
//! columns' kinds, the GraphQL object types are registered from here (`graphql::types`), and
//! the one renderer (`graphql::render`) writes each field by its kind, and the `Query` roots
//! are generated from each entity's [`Roots`]. Adding a column is a migration plus one
//! [`Column`] entry; adding a relationship is a migration (if it needs one) plus one
//! [`Relation`] entry; adding an entity is a migration plus one [`EntityDesc`] (the README's
//! recipe).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::model::{EnumType, ORDER_EVENT_KIND, ORDER_STATUS, ROLE};

/// The object types backed by tables.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// `users`
    User,
    /// `orders`
    Order,
    /// `order_items`
    OrderItem,
    /// `products`
    Product,
    /// `order_events`
    OrderEvent,
}

impl Entity {
    /// Every entity.
    pub const ALL: [Entity; 5] = [
        Entity::User,
        Entity::Order,
        Entity::OrderItem,
        Entity::Product,
        Entity::OrderEvent,
    ];

    /// The tables the description names: each entity's, then each link table, once.
    pub fn tables() -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Entity::ALL.iter().map(|e| e.desc().table).collect();
        let links = Entity::ALL
            .iter()
            .flat_map(|e| e.desc().relations)
            .filter_map(|r| match r.link {
                Link::Through { table, .. } => Some(table),
                _ => None,
            });
        for table in links {
            if !out.contains(&table) {
                out.push(table);
            }
        }
        out
    }

    /// Its description.
    pub fn desc(self) -> &'static EntityDesc {
        match self {
            Entity::User => &USER,
            Entity::Order => &ORDER,
            Entity::OrderItem => &ORDER_ITEM,
            Entity::Product => &PRODUCT,
            Entity::OrderEvent => &ORDER_EVENT,
        }
    }

    /// The described filter argument `name` and its column's kind, if any.
    pub fn filter_arg(self, name: &str) -> Option<(&'static FilterArg, Kind)> {
        let arg = self.desc().filter_args.iter().find(|f| f.arg == name)?;
        let col = self.column_named(arg.column)?;
        Some((arg, self.desc().columns[col].kind))
    }

    /// The relationship of this entity exposed as the GraphQL field `field`, if any.
    pub fn relation(self, field: &str) -> Option<Rel> {
        self.desc()
            .relations
            .iter()
            .position(|r| r.field == field)
            .map(|i| Rel {
                from: self,
                index: i as u8,
            })
    }

    /// The position of the column read by the GraphQL field `field`, if any.
    pub fn column(self, field: &str) -> Option<usize> {
        self.desc()
            .columns
            .iter()
            .position(|c| c.field == Some(field))
    }

    /// The to-many relationship whose aggregate field is `field` (`ordersAggregate`).
    pub fn aggregate(self, field: &str) -> Option<Rel> {
        let base = field.strip_suffix(AGGREGATE_SUFFIX)?;
        self.relation(base).filter(|r| r.desc().is_many())
    }

    /// The to-many relationship whose connection field is `field` (`ordersConnection`).
    pub fn connection(self, field: &str) -> Option<Rel> {
        let base = field.strip_suffix(CONNECTION_SUFFIX)?;
        self.relation(base).filter(|r| r.desc().is_many())
    }

    /// The columns `func` applies to: `(position, column)`.
    pub fn aggregated(self, func: AggFunc) -> Vec<(usize, &'static Column)> {
        self.desc()
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.field.is_some() && func.applies(c.kind))
            .collect()
    }

    /// The GraphQL enum of this entity's sort keys: `OrderOrderBy`.
    pub fn order_by_type(self) -> String {
        format!("{}OrderBy", self.desc().name)
    }

    /// The values of [`Entity::order_by_type`]: `(name, column, descending)` for every sortable
    /// column, ascending then descending (`CREATED_AT_ASC`, `CREATED_AT_DESC`, ...).
    pub fn sort_values(self) -> Vec<(String, usize, bool)> {
        let mut out = Vec::new();
        for (i, col) in self.desc().columns.iter().enumerate() {
            if let (true, Some(field)) = (col.sortable, col.field) {
                let base = screaming(field);
                out.push((format!("{base}_ASC"), i, false));
                out.push((format!("{base}_DESC"), i, true));
            }
        }
        out
    }

    /// The column and direction a value of [`Entity::order_by_type`] names.
    pub fn sort_key(self, value: &str) -> Option<(usize, bool)> {
        self.sort_values()
            .into_iter()
            .find(|(name, _, _)| name == value)
            .map(|(_, col, desc)| (col, desc))
    }

    /// The position of the column named `name` in the table.
    pub fn column_named(self, name: &str) -> Option<usize> {
        self.desc().columns.iter().position(|c| c.name == name)
    }
}

/// What a column holds, which decides how it is read on each backend, how it is typed in
/// GraphQL and how it is written as JSON.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A primary or foreign key (`int8`): GraphQL `ID!`. Keys are read by every load.
    Id,
    /// Text: `String!`.
    Text,
    /// Nullable text: `String`.
    OptText,
    /// A boolean: `Boolean!`.
    Bool,
    /// A timestamp: `DateTime!` (RFC 3339, UTC).
    DateTime,
    /// A nullable timestamp: `DateTime`.
    OptDateTime,
    /// Money, `numeric(10,2)` on PostgreSQL and integer cents on SQLite: `Decimal!`.
    Money,
    /// A 32-bit integer: `Int!`.
    Int,
    /// One of the values an enum type describes (an order's status, an account's role),
    /// stored as its text: `OrderStatus!`, `Role!`.
    Enum(&'static EnumType),
    /// A nullable [`Kind::Enum`]: `OrderStatus`.
    OptEnum(&'static EnumType),
}

impl Kind {
    /// The GraphQL type of a field of this kind.
    pub fn graphql(self) -> &'static str {
        match self {
            Kind::Id => "ID!",
            Kind::Text => "String!",
            Kind::OptText => "String",
            Kind::Bool => "Boolean!",
            Kind::DateTime => "DateTime!",
            Kind::OptDateTime => "DateTime",
            Kind::Money => "Decimal!",
            Kind::Int => "Int!",
            Kind::Enum(e) => e.non_null,
            Kind::OptEnum(e) => e.name,
        }
    }
}

/// A column of an entity's table that loads read.
#[derive(Copy, Clone, Debug)]
pub struct Column {
    /// The SQL column.
    pub name: &'static str,
    /// The GraphQL field that exposes it; `None` for a foreign key, which is read by every
    /// load (relationships need it) but is not a field.
    pub field: Option<&'static str>,
    /// What it holds.
    pub kind: Kind,
    /// The field's documentation (its schema description).
    pub doc: &'static str,
    /// Whether lists of the entity can be ordered by it (`orderBy: [XOrderBy!]`, values
    /// `FIELD_ASC` / `FIELD_DESC`). Only non-null columns, so order is the same on both
    /// backends.
    pub sortable: bool,
}

impl Column {
    const fn field(name: &'static str, field: &'static str, kind: Kind, doc: &'static str) -> Self {
        Column {
            name,
            field: Some(field),
            kind,
            doc,
            sortable: false,
        }
    }

    const fn foreign_key(name: &'static str) -> Self {
        Column {
            name,
            field: None,
            kind: Kind::Id,
            doc: "",
            sortable: false,
        }
    }

    /// The same column, usable as a sort key.
    const fn sortable(self) -> Self {
        Column {
            sortable: true,
            ..self
        }
    }

    /// Whether every load reads it (the keys), whatever the selection.
    pub fn always_read(&self) -> bool {
        self.kind == Kind::Id
    }
}

/// How a relationship finds its rows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// To-one: this entity's column holding the target's id (NOT NULL). Loaded by a JOIN.
    ForeignKey(&'static str),
    /// To-many: the target's column holding this entity's id. One batch statement.
    Children(&'static str),
    /// To-many through a link table: `table.parent` holds this entity's id and `table.child`
    /// the target's. One batch statement.
    Through {
        /// The link table.
        table: &'static str,
        /// Its column holding this entity's id.
        parent: &'static str,
        /// Its column holding the target's id.
        child: &'static str,
    },
}

/// An argument a to-many relationship accepts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EdgeArg {
    /// `first: Int`: at most this many children per parent, by id.
    First(&'static str),
    /// One of the target's [`FilterArg`]s, by its name (`orders(status: PENDING)`): read as
    /// the `where` condition it stands for, and documented and typed by the target.
    Filter(&'static str),
    /// `orderBy: [XOrderBy!]`: the children's order (the id always breaks ties).
    OrderBy(&'static str),
    /// `where: XWhere`: only the children the filter keeps.
    Where(&'static str),
}

impl EdgeArg {
    /// The argument's name.
    pub fn name(self) -> &'static str {
        match self {
            EdgeArg::First(_) => "first",
            EdgeArg::Filter(name) => name,
            EdgeArg::OrderBy(_) => "orderBy",
            EdgeArg::Where(_) => "where",
        }
    }

    /// Its GraphQL type, on a relationship to `target`.
    pub fn graphql(self, target: Entity) -> String {
        match self {
            EdgeArg::First(_) => "Int".to_owned(),
            EdgeArg::Filter(name) => target
                .filter_arg(name)
                .map(|(_, kind)| kind.graphql().trim_end_matches('!').to_owned())
                .unwrap_or_default(),
            EdgeArg::OrderBy(_) => format!("[{}!]", target.order_by_type()),
            EdgeArg::Where(_) => format!("{}Where", target.desc().name),
        }
    }

    /// Its documentation, on a relationship to `target`.
    pub fn doc(self, target: Entity) -> &'static str {
        match self {
            EdgeArg::First(d) | EdgeArg::OrderBy(d) | EdgeArg::Where(d) => d,
            EdgeArg::Filter(name) => target.filter_arg(name).map_or("", |(f, _)| f.doc),
        }
    }
}

/// An aggregate function of a to-many relationship's `...Aggregate` field.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggFunc {
    /// `sum`: money and integer columns.
    Sum,
    /// `avg`: money and integer columns, as a `Float`.
    Avg,
    /// `min`: money, integer and timestamp columns.
    Min,
    /// `max`: likewise.
    Max,
}

impl AggFunc {
    /// Every function, in schema order.
    pub const ALL: [AggFunc; 4] = [AggFunc::Sum, AggFunc::Avg, AggFunc::Min, AggFunc::Max];

    /// The GraphQL field (`sum`) and the SQL function.
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
        }
    }

    /// The fields-type suffix: `OrderSumFields`.
    pub fn type_suffix(self) -> &'static str {
        match self {
            AggFunc::Sum => "SumFields",
            AggFunc::Avg => "AvgFields",
            AggFunc::Min => "MinFields",
            AggFunc::Max => "MaxFields",
        }
    }

    /// Whether it applies to a column of kind `kind` (keys never).
    pub fn applies(self, kind: Kind) -> bool {
        match self {
            AggFunc::Sum | AggFunc::Avg => matches!(kind, Kind::Money | Kind::Int),
            AggFunc::Min | AggFunc::Max => {
                matches!(kind, Kind::Money | Kind::Int | Kind::DateTime)
            }
        }
    }

    /// The (nullable: no rows, no value) GraphQL type of its result over a `kind` column.
    pub fn graphql(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (AggFunc::Avg, _) => "Float",
            (_, Kind::Money) => "Decimal",
            (_, Kind::DateTime) => "DateTime",
            _ => "Int",
        }
    }
}

/// The suffix of a to-many relationship's aggregate field: `ordersAggregate`.
pub const AGGREGATE_SUFFIX: &str = "Aggregate";

/// The suffix of a to-many relationship's connection field: `ordersConnection`.
pub const CONNECTION_SUFFIX: &str = "Connection";

/// Most keys one `orderBy` list may have.
pub const MAX_SORT_KEYS: usize = 3;

/// `createdAt` -> `CREATED_AT`.
fn screaming(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A relationship, exposed as a GraphQL field of its entity.
#[derive(Copy, Clone, Debug)]
pub struct Relation {
    /// The GraphQL field.
    pub field: &'static str,
    /// The entity at the far end.
    pub target: Entity,
    /// How its rows are found (and so whether it is to-one or to-many).
    pub link: Link,
    /// The arguments it accepts (to-many only).
    pub args: &'static [EdgeArg],
    /// The field's documentation.
    pub doc: &'static str,
}

impl Relation {
    /// Whether it yields a list.
    pub fn is_many(&self) -> bool {
        !matches!(self.link, Link::ForeignKey(_))
    }
}

/// Which rows of an entity a viewer may see. Loads apply it as a predicate inside the same
/// statement (`db::load`), on every path: roots, joins, batches and report rows. An
/// administrator sees every row; an anonymous viewer sees only [`Visibility::Public`] rows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Every row, to everyone.
    Public,
    /// A customer sees the rows whose column `.0` holds their own user id.
    Owner(&'static str),
    /// A row is visible when the `parent` row its foreign key `key` names is.
    Through {
        /// The foreign key column.
        key: &'static str,
        /// The entity it names.
        parent: Entity,
    },
}

/// An entity: its GraphQL type, its table, its columns and relationships.
#[derive(Debug)]
pub struct EntityDesc {
    /// Which entity.
    pub entity: Entity,
    /// The GraphQL object type.
    pub name: &'static str,
    /// The type's documentation.
    pub doc: &'static str,
    /// The table. Its primary key is `id`, the first column.
    pub table: &'static str,
    /// The columns loads read, in this order (the first is `id`). Fields appear in the
    /// schema in this order, followed by the relationships.
    pub columns: &'static [Column],
    /// The relationships, in schema order.
    pub relations: &'static [Relation],
    /// Which rows a viewer sees.
    pub visibility: Visibility,
    /// The table's named constraints whose violation is the client's to fix.
    pub constraints: &'static [Constraint],
    /// The arguments of the entity's root lists, connections and aggregates that each keep
    /// the rows whose column compares with their value (`orders(status: PENDING)`); a
    /// relationship to the entity may accept them too ([`EdgeArg::Filter`]).
    pub filter_args: &'static [FilterArg],
    /// Its `Query` roots, each with who may use it (the rows are then those its
    /// [`Visibility`] shows the viewer).
    pub roots: Roots,
}

/// Who may use a root field. Whoever may, sees the rows the entity's [`Visibility`] shows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Anyone,
    /// A signed-in viewer (`UNAUTHENTICATED` otherwise).
    SignedIn,
    /// An administrator (`UNAUTHENTICATED` when anonymous, `FORBIDDEN` otherwise).
    Admin,
}

/// A root field of `Query` and who may use it.
#[derive(Copy, Clone, Debug)]
pub struct Root {
    /// The field's name.
    pub name: &'static str,
    /// Who may use it.
    pub access: Access,
}

/// The `Query` roots of an entity, generated from its description (`graphql::query`).
#[derive(Copy, Clone, Debug)]
pub struct Roots {
    /// One row by id (`order(id: ID!): Order`).
    pub by_id: Option<Root>,
    /// A page of rows (`orders(first, offset, ...): [Order!]!`); the same name with
    /// [`CONNECTION_SUFFIX`] is its cursor connection and with [`AGGREGATE_SUFFIX`] its
    /// aggregates, both with the same access.
    pub list: Option<Root>,
}

impl Roots {
    /// No roots: the entity is reached through relationships only.
    pub const NONE: Roots = Roots {
        by_id: None,
        list: None,
    };
}

/// An argument of an entity's root list, connection and aggregate (and of the relationships
/// to it that name it) that keeps the rows whose column compares with its value: shorthand
/// for one `where` condition (the column need not be a field: `userId` compares the foreign
/// key `user_id`), AND-ed with `where`. Its GraphQL type is its column's.
#[derive(Copy, Clone, Debug)]
pub struct FilterArg {
    /// The argument.
    pub arg: &'static str,
    /// The column it compares.
    pub column: &'static str,
    /// It keeps the rows whose column is at least its value (`minAmount`), not equal to it.
    pub at_least: bool,
    /// Its documentation.
    pub doc: &'static str,
}

/// A named constraint of a table whose violation is the client's to fix, not a server fault.
/// Both dialects' migrations give it this name (a test reads them).
#[derive(Copy, Clone, Debug)]
pub struct Constraint {
    /// Its name: PostgreSQL reports it with the violation; SQLite names a CHECK by it.
    pub name: &'static str,
    /// The columns a UNIQUE constraint covers (SQLite reports a unique violation as
    /// `table.column, ...`); empty for a CHECK.
    pub unique: &'static [&'static str],
    /// What its violation tells the client.
    pub means: Violation,
}

/// What a violated [`Constraint`] tells the client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The value given for the input field `.0` is taken (`CONFLICT`, `extensions.field`).
    Taken(&'static str),
    /// The write cannot be accepted, for the reason `.0` (`BAD_USER_INPUT`).
    Refused(&'static str),
}

/// The described constraint a database error names, from PostgreSQL's constraint name or
/// SQLite's message (`UNIQUE constraint failed: users.email`, `CHECK constraint failed:
/// products_stock_quantity_check`); `None`: no described constraint.
pub fn violated_constraint(name: Option<&str>, message: &str) -> Option<&'static Constraint> {
    let all = || {
        Entity::ALL.iter().flat_map(|e| {
            e.desc()
                .constraints
                .iter()
                .map(move |c| (e.desc().table, c))
        })
    };
    if let Some(name) = name {
        return all().find(|(_, c)| c.name == name).map(|(_, c)| c);
    }
    if let Some(named) = message.strip_prefix("CHECK constraint failed: ") {
        return all().find(|(_, c)| c.name == named.trim()).map(|(_, c)| c);
    }
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
    all()
        .find(|(table, c)| {
            !c.unique.is_empty()
                && c.unique.len() == columns.len()
                && c.unique
                    .iter()
                    .zip(&columns)
                    .all(|(col, got)| got.split_once('.') == Some((*table, *col)))
        })
        .map(|(_, c)| c)
}

/// The documentation of every `orderBy` argument.
pub const ORDER_BY_DOC: &str = "The order of the list: up to 3 keys, the first deciding first; \
the id always breaks the remaining ties (default: by id). Text sorts by code point.";

/// The documentation of every `where` argument.
pub const WHERE_DOC: &str = "Only the rows this filter keeps: every field given must hold; \
`and`, `or` and `not` combine filters; relationships filter by their rows (`some`, `none`). \
Values are bound, never written into SQL; at most 100 conditions, 8 levels of nesting and 1000 \
values per `in`.";

const ID: Column = Column::field("id", "id", Kind::Id, "Unique identifier.").sortable();

/// `users`: the accounts that place orders. `password_hash` is not a column of this list, so
/// no load can ever read it.
pub static USER: EntityDesc = EntityDesc {
    entity: Entity::User,
    name: "User",
    doc: "A customer account. Its password hash is never exposed.",
    table: "users",
    visibility: Visibility::Owner("id"),
    constraints: &[
        Constraint {
            name: "users_email_key",
            unique: &["email"],
            means: Violation::Taken("email"),
        },
        Constraint {
            name: "users_username_key",
            unique: &["username"],
            means: Violation::Taken("username"),
        },
    ],
    roots: Roots {
        by_id: Some(Root {
            name: "user",
            access: Access::SignedIn,
        }),
        list: Some(Root {
            name: "users",
            access: Access::Admin,
        }),
    },
    filter_args: &[],
    columns: &[
        ID,
        Column::field("email", "email", Kind::Text, "Unique e-mail address.").sortable(),
        Column::field("username", "username", Kind::Text, "Unique user name.").sortable(),
        Column::field(
            "is_active",
            "isActive",
            Kind::Bool,
            "Whether the account is active; only active users can place orders.",
        ),
        Column::field(
            "created_at",
            "createdAt",
            Kind::DateTime,
            "When the account was created.",
        )
        .sortable(),
        Column::field(
            "updated_at",
            "updatedAt",
            Kind::DateTime,
            "When the account last changed.",
        ),
        Column::field("bio", "bio", Kind::OptText, "Free-text profile, if any."),
        Column::field(
            "role",
            "role",
            Kind::Enum(&ROLE),
            "What the account may do: `CUSTOMER` (its own orders) or `ADMIN` (everything).",
        ),
    ],
    relations: &[Relation {
        field: "orders",
        target: Entity::Order,
        link: Link::Children("user_id"),
        args: &[
            EdgeArg::First("At most this many orders per user (the first in `orderBy` order)."),
            EdgeArg::Filter("status"),
            EdgeArg::OrderBy(ORDER_BY_DOC),
            EdgeArg::Where(WHERE_DOC),
        ],
        doc: "The user's orders, ordered by id. Loaded for all users of a level in one statement.",
    }],
};

/// `orders`: one purchase by one user.
pub static ORDER: EntityDesc = EntityDesc {
    entity: Entity::Order,
    name: "Order",
    doc: "A purchase: who placed it, what it contains and what it cost.",
    table: "orders",
    visibility: Visibility::Owner("user_id"),
    constraints: &[],
    roots: Roots {
        by_id: Some(Root {
            name: "order",
            access: Access::SignedIn,
        }),
        list: Some(Root {
            name: "orders",
            access: Access::SignedIn,
        }),
    },
    filter_args: &[
        FilterArg {
            arg: "status",
            column: "status",
            at_least: false,
            doc: "Only orders with this status.",
        },
        FilterArg {
            arg: "userId",
            column: "user_id",
            at_least: false,
            doc: "Only this user's orders.",
        },
        FilterArg {
            arg: "minAmount",
            column: "total_amount",
            at_least: true,
            doc: "Only orders whose total is at least this amount.",
        },
    ],
    columns: &[
        ID,
        Column::foreign_key("user_id"),
        Column::field(
            "status",
            "status",
            Kind::Enum(&ORDER_STATUS),
            "Where the order is in its life cycle.",
        )
        .sortable(),
        Column::field(
            "total_amount",
            "totalAmount",
            Kind::Money,
            "The exact total of the order's items.",
        )
        .sortable(),
        Column::field(
            "created_at",
            "createdAt",
            Kind::DateTime,
            "When the order was placed.",
        )
        .sortable(),
        Column::field(
            "status_changed_at",
            "statusChangedAt",
            Kind::OptDateTime,
            "When the status last changed; null while the order is as it was placed.",
        ),
    ],
    relations: &[
        Relation {
            field: "user",
            target: Entity::User,
            link: Link::ForeignKey("user_id"),
            args: &[],
            doc: "The user who placed the order. Joined into the statement that loads the order.",
        },
        Relation {
            field: "items",
            target: Entity::OrderItem,
            link: Link::Children("order_id"),
            args: &[EdgeArg::OrderBy(ORDER_BY_DOC), EdgeArg::Where(WHERE_DOC)],
            doc: "The order's lines, ordered by id.",
        },
        Relation {
            field: "products",
            target: Entity::Product,
            link: Link::Through {
                table: "order_products",
                parent: "order_id",
                child: "product_id",
            },
            args: &[EdgeArg::OrderBy(ORDER_BY_DOC), EdgeArg::Where(WHERE_DOC)],
            doc: "The products of the order (through `order_products`), ordered by id.",
        },
        Relation {
            field: "events",
            target: Entity::OrderEvent,
            link: Link::Children("order_id"),
            args: &[
                EdgeArg::Filter("kind"),
                EdgeArg::OrderBy(ORDER_BY_DOC),
                EdgeArg::Where(WHERE_DOC),
            ],
            doc: "What happened to the order (placed, each status change), ordered by id.",
        },
    ],
};

/// `order_items`: the lines of an order, each one product at the price paid.
pub static ORDER_ITEM: EntityDesc = EntityDesc {
    entity: Entity::OrderItem,
    name: "OrderItem",
    doc: "One line of an order: a product, a quantity and the unit price paid.",
    table: "order_items",
    roots: Roots::NONE,
    visibility: Visibility::Through {
        key: "order_id",
        parent: Entity::Order,
    },
    constraints: &[],
    filter_args: &[],
    columns: &[
        ID,
        Column::foreign_key("order_id"),
        Column::foreign_key("product_id"),
        Column::field(
            "quantity",
            "quantity",
            Kind::Int,
            "Units bought (at least 1).",
        )
        .sortable(),
        Column::field(
            "unit_price",
            "unitPrice",
            Kind::Money,
            "The price of one unit when the order was placed.",
        )
        .sortable(),
    ],
    relations: &[
        Relation {
            field: "order",
            target: Entity::Order,
            link: Link::ForeignKey("order_id"),
            args: &[],
            doc: "The order this line belongs to. Joined into the statement that loads the line.",
        },
        Relation {
            field: "product",
            target: Entity::Product,
            link: Link::ForeignKey("product_id"),
            args: &[],
            doc: "The product bought. Joined into the statement that loads the line.",
        },
    ],
};

/// `products`: the catalogue.
pub static PRODUCT: EntityDesc = EntityDesc {
    entity: Entity::Product,
    name: "Product",
    doc: "A product in the catalogue, with its current price and stock.",
    table: "products",
    visibility: Visibility::Public,
    constraints: &[
        Constraint {
            name: "products_sku_key",
            unique: &["sku"],
            means: Violation::Taken("sku"),
        },
        // The last line of defence against overselling, should a conditional update ever
        // let one through.
        Constraint {
            name: "products_stock_quantity_check",
            unique: &[],
            means: Violation::Refused("insufficient stock"),
        },
    ],
    roots: Roots {
        by_id: Some(Root {
            name: "product",
            access: Access::Anyone,
        }),
        list: Some(Root {
            name: "products",
            access: Access::Anyone,
        }),
    },
    filter_args: &[],
    columns: &[
        ID,
        Column::field("name", "name", Kind::Text, "Display name.").sortable(),
        Column::field("sku", "sku", Kind::Text, "Unique stock-keeping unit.").sortable(),
        Column::field("price", "price", Kind::Money, "Current unit price.").sortable(),
        Column::field(
            "stock_quantity",
            "stockQuantity",
            Kind::Int,
            "Units in stock; never negative.",
        )
        .sortable(),
    ],
    relations: &[
        Relation {
            field: "orders",
            target: Entity::Order,
            link: Link::Through {
                table: "order_products",
                parent: "product_id",
                child: "order_id",
            },
            args: &[
                EdgeArg::First(
                    "At most this many orders per product (the first in `orderBy` order).",
                ),
                EdgeArg::OrderBy(ORDER_BY_DOC),
                EdgeArg::Where(WHERE_DOC),
            ],
            doc: "Orders that contain this product (through `order_products`), ordered by id.",
        },
        Relation {
            field: "orderItems",
            target: Entity::OrderItem,
            link: Link::Children("product_id"),
            args: &[EdgeArg::OrderBy(ORDER_BY_DOC), EdgeArg::Where(WHERE_DOC)],
            doc: "Order lines that bought this product, ordered by id.",
        },
    ],
};

/// `order_events`: the order life cycle as a log, written by triggers on `orders` whoever
/// writes them (migration `0010_order_events`); ids follow commit order.
pub static ORDER_EVENT: EntityDesc = EntityDesc {
    entity: Entity::OrderEvent,
    name: "OrderEvent",
    doc: "Something that happened to an order: it was placed, its status changed, or it was \
          cancelled. Events are numbered in the order they were committed.",
    table: "order_events",
    visibility: Visibility::Through {
        key: "order_id",
        parent: Entity::Order,
    },
    constraints: &[],
    roots: Roots {
        by_id: None,
        list: Some(Root {
            name: "orderEvents",
            access: Access::SignedIn,
        }),
    },
    filter_args: &[
        FilterArg {
            arg: "kind",
            column: "kind",
            at_least: false,
            doc: "Only events of this kind.",
        },
        FilterArg {
            arg: "orderId",
            column: "order_id",
            at_least: false,
            doc: "Only this order's events.",
        },
    ],
    columns: &[
        ID,
        Column::foreign_key("order_id"),
        Column::field(
            "kind",
            "kind",
            Kind::Enum(&ORDER_EVENT_KIND),
            "What happened.",
        ),
        Column::field(
            "status",
            "status",
            Kind::Enum(&ORDER_STATUS),
            "The order's status after the event.",
        ),
        Column::field(
            "previous_status",
            "previousStatus",
            Kind::OptEnum(&ORDER_STATUS),
            "The order's status before the event; null when it was placed.",
        ),
        Column::field("at", "at", Kind::DateTime, "When it happened.").sortable(),
    ],
    relations: &[Relation {
        field: "order",
        target: Entity::Order,
        link: Link::ForeignKey("order_id"),
        args: &[],
        doc: "The order, as it is now. Joined into the statement that loads the event.",
    }],
};

/// A relationship, by its entity and its position in that entity's [`EntityDesc::relations`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rel {
    /// The entity it starts from.
    pub from: Entity,
    /// Its position in the entity's relationships.
    pub index: u8,
}

impl Rel {
    /// Its description.
    pub fn desc(self) -> &'static Relation {
        &self.from.desc().relations[usize::from(self.index)]
    }

    /// The entity at the far end.
    pub fn target(self) -> Entity {
        self.desc().target
    }

    /// `Type.field`, for messages.
    pub fn path(self) -> String {
        format!("{}.{}", self.from.desc().name, self.desc().field)
    }

    /// For a to-one edge: why every row a viewer may see names a target the same viewer may
    /// see, shown from the description alone; `Err` says why it cannot be shown.
    ///
    /// Loads rely on it: a to-one edge is an inner join carrying the target's visibility
    /// predicate (`db::load`), so a visible row whose target were hidden would vanish from an
    /// answer that selects the edge. An edge whose invariant cannot be shown is a defect of
    /// the description (a test runs this over every edge), to be fixed by the visibility of
    /// one of the two entities, never by a join that drops rows.
    pub fn target_visibility(self) -> Result<&'static str, String> {
        let Link::ForeignKey(fk) = self.desc().link else {
            return Err(format!("{} is not a to-one edge", self.path()));
        };
        let target = self.target();
        let (from, to) = (self.from.desc().visibility, target.desc().visibility);
        names_visible(from, fk, target, to).ok_or_else(|| {
            format!(
                "{}: a row visible as {from:?} names a {} visible as {to:?}; nothing shows \
                 that a viewer who sees the row sees its target",
                self.path(),
                target.desc().name
            )
        })
    }
}

/// Why a row visible as `from` that names a `target` row (visible as `to`) by its column `fk`
/// names one its viewer sees too; `None`: that does not follow (see
/// [`Rel::target_visibility`]).
fn names_visible(
    from: Visibility,
    fk: &str,
    target: Entity,
    to: Visibility,
) -> Option<&'static str> {
    match (from, to) {
        (_, Visibility::Public) => Some("the target is public"),
        (Visibility::Owner(col), Visibility::Owner("id")) if col == fk => {
            Some("the row is its owner's, and it names that owner")
        }
        (Visibility::Through { key, parent }, _) if key == fk && parent == target => {
            Some("the row is visible exactly when the target it names is")
        }
        _ => None,
    }
}

/// One column's value in a loaded row.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Not read by this load (its field was not selected).
    Absent,
    /// SQL `NULL`, in a nullable column ([`Kind::OptText`], [`Kind::OptDateTime`],
    /// [`Kind::OptEnum`]).
    Null,
    /// [`Kind::Id`] and [`Kind::Int`].
    Int(i64),
    /// [`Kind::Text`] and [`Kind::OptText`].
    Text(Box<str>),
    /// [`Kind::Bool`].
    Bool(bool),
    /// [`Kind::DateTime`] and [`Kind::OptDateTime`].
    Time(DateTime<Utc>),
    /// [`Kind::Money`].
    Money(Decimal),
    /// [`Kind::Enum`] and [`Kind::OptEnum`]: the type and the index of its value.
    Enum(&'static EnumType, u8),
    /// An average.
    Float(f64),
}

/// A loaded row of an entity: the values of the columns its load read (bit `i` of `mask` for
/// column `i` of the description), and only those, in column order.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Whose row.
    pub entity: Entity,
    /// Which columns were read.
    pub mask: u32,
    /// Their values, in column order.
    pub vals: Box<[Val]>,
}

impl Row {
    /// The value of column `at`; [`Val::Absent`] when the load did not read it.
    pub fn get(&self, at: usize) -> &Val {
        if at >= 32 || self.mask & (1 << at) == 0 {
            return &Val::Absent;
        }
        let slot = (self.mask & ((1u32 << at) - 1)).count_ones() as usize;
        self.vals.get(slot).unwrap_or(&Val::Absent)
    }

    /// The primary key (the first column).
    pub fn id(&self) -> i64 {
        self.int(0)
    }

    /// The integer at column `at` (0 if absent: keys never are).
    pub fn int(&self, at: usize) -> i64 {
        match self.get(at) {
            Val::Int(v) => *v,
            _ => 0,
        }
    }

    /// The value of the key column named `name` (a foreign key).
    pub fn key(&self, name: &str) -> i64 {
        self.entity.column_named(name).map_or(0, |at| self.int(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_description_is_consistent() {
        for e in Entity::ALL {
            let d = e.desc();
            assert_eq!(d.entity, e);
            assert_eq!(d.columns[0].name, "id", "{}: id comes first", d.name);
            for r in d.relations {
                match r.link {
                    Link::ForeignKey(k) => {
                        let at = e
                            .column_named(k)
                            .unwrap_or_else(|| panic!("{k} of {}", d.name));
                        assert!(d.columns[at].always_read());
                        assert!(r.args.is_empty());
                    }
                    Link::Children(k) => {
                        assert!(r.target.column_named(k).is_some(), "{k} of {}", r.field);
                    }
                    Link::Through { .. } => {}
                }
            }
            // A field name is either a column or a relationship, never both.
            for c in d.columns.iter().filter_map(|c| c.field) {
                assert!(e.relation(c).is_none(), "{}.{c}", d.name);
            }
            assert!(d.columns.len() <= 32, "column masks are 32 bits");
        }
    }

    /// What a visible row names is visible too, for every to-one edge and every viewer: shown
    /// from the description (the database test `every_to_one_edge_keeps_every_visible_row`
    /// checks it against real rows for each role).
    #[test]
    fn every_to_one_edge_names_only_what_its_viewer_sees() {
        for e in Entity::ALL {
            for (i, r) in e.desc().relations.iter().enumerate() {
                if r.is_many() {
                    continue;
                }
                let rel = Rel {
                    from: e,
                    index: i as u8,
                };
                if let Err(why) = rel.target_visibility() {
                    panic!("{why}");
                }
            }
        }
    }

    /// Descriptions that break the invariant are caught: a row visible to its owner that
    /// names a user by another column (a reviewer), a public row that names a private one (an
    /// anonymous viewer sees the row, not its target), a row visible through another parent.
    #[test]
    fn a_to_one_edge_to_a_hidden_target_is_refused() {
        let user = Visibility::Owner("id");
        assert!(
            names_visible(
                Visibility::Owner("user_id"),
                "reviewer_id",
                Entity::User,
                user
            )
            .is_none()
        );
        assert!(names_visible(Visibility::Public, "user_id", Entity::User, user).is_none());
        let through = Visibility::Through {
            key: "order_id",
            parent: Entity::Order,
        };
        assert!(
            names_visible(
                through,
                "refund_id",
                Entity::Order,
                Visibility::Owner("user_id")
            )
            .is_none()
        );
        // The edges the model has, for contrast.
        assert!(
            names_visible(Visibility::Owner("user_id"), "user_id", Entity::User, user).is_some()
        );
        assert!(
            names_visible(
                through,
                "order_id",
                Entity::Order,
                Visibility::Owner("user_id")
            )
            .is_some()
        );
        assert!(
            names_visible(through, "product_id", Entity::Product, Visibility::Public).is_some()
        );
    }

    /// A violation is told by the constraint's name (PostgreSQL) or by SQLite's report of
    /// it, exactly: another table's column of the same name, or a column list that is only
    /// part of a constraint's, is not the constraint.
    #[test]
    fn violations_are_told_by_name_or_by_sqlites_report() {
        let taken = |c: Option<&Constraint>| c.map(|c| c.means);
        assert_eq!(
            taken(violated_constraint(
                Some("users_email_key"),
                "duplicate key"
            )),
            Some(Violation::Taken("email"))
        );
        assert_eq!(
            taken(violated_constraint(
                None,
                "UNIQUE constraint failed: users.username"
            )),
            Some(Violation::Taken("username"))
        );
        assert_eq!(
            taken(violated_constraint(
                None,
                "UNIQUE constraint failed: products.sku"
            )),
            Some(Violation::Taken("sku"))
        );
        assert_eq!(
            taken(violated_constraint(
                None,
                "CHECK constraint failed: products_stock_quantity_check"
            )),
            Some(Violation::Refused("insufficient stock"))
        );
        for other in [
            "UNIQUE constraint failed: orders.email",
            "UNIQUE constraint failed: users.email, users.username",
            "UNIQUE constraint failed: refresh_tokens.token_hash",
            "CHECK constraint failed: quantity > 0",
            "users.email is taken",
        ] {
            assert!(violated_constraint(None, other).is_none(), "{other}");
        }
        assert!(violated_constraint(Some("orders_pkey"), "").is_none());
    }

    /// Every described constraint is named so in both dialects' migrations, so the name the
    /// database reports is the one described.
    #[test]
    fn every_described_constraint_is_named_in_both_dialects() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations");
        for dialect in ["postgres", "sqlite"] {
            let mut text = String::new();
            for entry in std::fs::read_dir(root.join(dialect)).expect("migrations") {
                let path = entry.expect("entry").path();
                text.push_str(&std::fs::read_to_string(&path).expect("readable"));
            }
            for e in Entity::ALL {
                for c in e.desc().constraints {
                    assert!(
                        text.contains(&format!("constraint {} ", c.name)),
                        "{dialect}: {}",
                        c.name
                    );
                }
            }
        }
    }
}
