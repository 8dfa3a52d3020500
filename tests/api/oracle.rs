//! The oracle of the differential test: a grammar of query operations over the whole query
//! schema, its printer, and an independent evaluator that follows the GraphQL specification's
//! execution algorithm (`CoerceVariableValues`, `CollectFields` with `@skip`/`@include`,
//! `CoerceArgumentValues` with defaults and omitted variables, `ExecuteField`, null
//! propagation) over the raw rows, as the operation's viewer sees them (the roots each role
//! may use, and a customer's own account, orders and lines). It shares nothing with the
//! server's request handling: it never parses a document (it evaluates the grammar's own
//! tree) and reads plain rows.
//!
//! It also predicts the statement count from the plan rules the README states: one statement
//! per root field or report, plus one per distinct to-many edge or aggregate and argument set
//! (`first`, `status`, `where`, `orderBy`, cursors) per level whose parents are not empty;
//! to-one edges are joined; aggregates and connection counts of one relationship and filter
//! share a grouped statement. Aggregates (roots and edges: `count`, `sum`, `min`, `max`) are
//! computed here from the rows; `avg` is evaluated but not drawn, its float text being the
//! server's own. Connections (roots and edges) page with `first` or `last` between the
//! cursors `after` and `before` (positions of any row, made under the connection's order as
//! documented; now and then malformed or made under another order, which is refused) and
//! answer `edges { cursor node }`, `nodes`, `totalCount` and `pageInfo`. Lists take `orderBy`
//! (one or two keys, or the same field twice, which is refused), sorted here by the row
//! values with the id breaking ties, and `where` filters (field operators, to-one filters,
//! `some`/`none` of to-many relationships, `and`/`or`/`not`), kept here row by row with the
//! rows a relationship names as the viewer sees them.

use std::collections::HashMap;

use crate::rows::order_items::OrderItemRow;
use crate::rows::orders::OrderRow;
use crate::rows::products::ProductRow;
use crate::rows::users::UserRow;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use eagerql::model::OrderStatus;
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};

use crate::model::Model;

// ---------------------------------------------------------------------------------------------
// The schema, as the grammar and the evaluator see it.

/// The object types of the query side.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub enum Ty {
    Query,
    Analytics,
    User,
    Order,
    Item,
    Product,
    CustomerRevenue,
    DailyRevenue,
    ProductSales,
    /// `XAggregate` of the rows of a type.
    Agg(Base),
    /// `XSumFields`, `XAvgFields`, `XMinFields`, `XMaxFields`.
    Vals(Base, Func),
    /// `XConnection`.
    Conn(Base),
    /// `XEdge`.
    EdgeOf(Base),
    /// `PageInfo`.
    PageInfo,
}

impl Base {
    /// The object type of its rows.
    const fn ty(self) -> Ty {
        match self {
            Base::User => Ty::User,
            Base::Order => Ty::Order,
            Base::Item => Ty::Item,
            Base::Product => Ty::Product,
        }
    }
}

/// The types aggregates are over.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub enum Base {
    User,
    Order,
    Item,
    Product,
}

/// The aggregate functions the grammar draws.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub enum Func {
    Sum,
    /// Not drawn by the grammar (its float text is the server's own), evaluated for the
    /// examples' text front-end.
    Avg,
    Min,
    Max,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Conn(Base::User) => "UserConnection",
            Ty::Conn(Base::Order) => "OrderConnection",
            Ty::Conn(Base::Item) => "OrderItemConnection",
            Ty::Conn(Base::Product) => "ProductConnection",
            Ty::EdgeOf(Base::User) => "UserEdge",
            Ty::EdgeOf(Base::Order) => "OrderEdge",
            Ty::EdgeOf(Base::Item) => "OrderItemEdge",
            Ty::EdgeOf(Base::Product) => "ProductEdge",
            Ty::PageInfo => "PageInfo",
            Ty::Agg(Base::User) => "UserAggregate",
            Ty::Agg(Base::Order) => "OrderAggregate",
            Ty::Agg(Base::Item) => "OrderItemAggregate",
            Ty::Agg(Base::Product) => "ProductAggregate",
            Ty::Vals(Base::User, Func::Sum) => "UserSumFields",
            Ty::Vals(Base::User, Func::Avg) => "UserAvgFields",
            Ty::Vals(Base::User, Func::Min) => "UserMinFields",
            Ty::Vals(Base::User, Func::Max) => "UserMaxFields",
            Ty::Vals(Base::Order, Func::Sum) => "OrderSumFields",
            Ty::Vals(Base::Order, Func::Avg) => "OrderAvgFields",
            Ty::Vals(Base::Order, Func::Min) => "OrderMinFields",
            Ty::Vals(Base::Order, Func::Max) => "OrderMaxFields",
            Ty::Vals(Base::Item, Func::Sum) => "OrderItemSumFields",
            Ty::Vals(Base::Item, Func::Avg) => "OrderItemAvgFields",
            Ty::Vals(Base::Item, Func::Min) => "OrderItemMinFields",
            Ty::Vals(Base::Item, Func::Max) => "OrderItemMaxFields",
            Ty::Vals(Base::Product, Func::Sum) => "ProductSumFields",
            Ty::Vals(Base::Product, Func::Avg) => "ProductAvgFields",
            Ty::Vals(Base::Product, Func::Min) => "ProductMinFields",
            Ty::Vals(Base::Product, Func::Max) => "ProductMaxFields",
            Ty::Query => "Query",
            Ty::Analytics => "Analytics",
            Ty::User => "User",
            Ty::Order => "Order",
            Ty::Item => "OrderItem",
            Ty::Product => "Product",
            Ty::CustomerRevenue => "CustomerRevenue",
            Ty::DailyRevenue => "DailyRevenue",
            Ty::ProductSales => "ProductSales",
        }
    }
}

/// How an argument is typed in the schema.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ArgKind {
    /// `first: Int! = 20`
    First,
    /// `offset: Int! = 0`
    Offset,
    /// `id: ID!`
    Id,
    /// `status: OrderStatus`
    Status,
    /// `status: OrderStatus! = COMPLETED`
    StatusReq,
    /// `userId: ID`
    UserId,
    /// `minAmount: Decimal`
    MinAmount,
    /// `first: Int` on a to-many edge
    EdgeFirst,
    /// `last: Int` of a connection
    Last,
    /// `days: Int! = 30`
    Days,
    /// `limit: Int! = 10`
    Limit,
    /// `asOf: DateTime`
    AsOf,
    /// `orderBy: [XOrderBy!]` of a list of this type
    OrderBy(Ty),
    /// `where: XWhere` of a list, connection or aggregate of this type
    Where(Ty),
    /// `after: String` of a connection
    After,
    /// `before: String` of a connection
    Before,
}

impl ArgKind {
    /// The argument's type and default, as the schema declares them.
    fn location(self) -> (&'static str, Option<Json>) {
        match self {
            ArgKind::First => ("Int!", Some(Json::from(20))),
            ArgKind::Offset => ("Int!", Some(Json::from(0))),
            ArgKind::Id => ("ID!", None),
            ArgKind::Status => ("OrderStatus", None),
            ArgKind::StatusReq => ("OrderStatus!", Some(Json::from("COMPLETED"))),
            ArgKind::UserId => ("ID", None),
            ArgKind::MinAmount => ("Decimal", None),
            ArgKind::EdgeFirst | ArgKind::Last => ("Int", None),
            ArgKind::Days => ("Int!", Some(Json::from(30))),
            ArgKind::Limit => ("Int!", Some(Json::from(10))),
            ArgKind::AsOf => ("DateTime", None),
            ArgKind::OrderBy(Ty::User) => ("[UserOrderBy!]", None),
            ArgKind::OrderBy(Ty::Item) => ("[OrderItemOrderBy!]", None),
            ArgKind::OrderBy(Ty::Product) => ("[ProductOrderBy!]", None),
            ArgKind::OrderBy(_) => ("[OrderOrderBy!]", None),
            ArgKind::Where(Ty::User) => ("UserWhere", None),
            ArgKind::Where(Ty::Item) => ("OrderItemWhere", None),
            ArgKind::Where(Ty::Product) => ("ProductWhere", None),
            ArgKind::Where(_) => ("OrderWhere", None),
            ArgKind::After | ArgKind::Before => ("String", None),
        }
    }
}

/// A field of an object type.
#[derive(Debug)]
pub struct FieldDef {
    name: &'static str,
    ty: Option<Ty>,
    args: &'static [(&'static str, ArgKind)],
}

const fn leaf(name: &'static str) -> FieldDef {
    FieldDef {
        name,
        ty: None,
        args: &[],
    }
}

const fn obj(name: &'static str, ty: Ty, args: &'static [(&'static str, ArgKind)]) -> FieldDef {
    FieldDef {
        name,
        ty: Some(ty),
        args,
    }
}

const PAGE: &[(&str, ArgKind)] = &[("first", ArgKind::First), ("offset", ArgKind::Offset)];
const USERS: &[(&str, ArgKind)] = &[
    ("first", ArgKind::First),
    ("offset", ArgKind::Offset),
    ("orderBy", ArgKind::OrderBy(Ty::User)),
    ("where", ArgKind::Where(Ty::User)),
];
const PRODUCTS: &[(&str, ArgKind)] = &[
    ("first", ArgKind::First),
    ("offset", ArgKind::Offset),
    ("orderBy", ArgKind::OrderBy(Ty::Product)),
    ("where", ArgKind::Where(Ty::Product)),
];
const BY_ITEM: &[(&str, ArgKind)] = &[
    ("orderBy", ArgKind::OrderBy(Ty::Item)),
    ("where", ArgKind::Where(Ty::Item)),
];
const BY_PRODUCT: &[(&str, ArgKind)] = &[
    ("orderBy", ArgKind::OrderBy(Ty::Product)),
    ("where", ArgKind::Where(Ty::Product)),
];
const WHERE_ITEM: &[(&str, ArgKind)] = &[("where", ArgKind::Where(Ty::Item))];
const WHERE_PRODUCT: &[(&str, ArgKind)] = &[("where", ArgKind::Where(Ty::Product))];

/// The sort keys the grammar draws, per type: `(enum value, field, descending)`.
fn sort_keys(ty: Ty) -> &'static [(&'static str, &'static str, bool)] {
    match ty {
        Ty::User => &[
            ("USERNAME_DESC", "username", true),
            ("EMAIL_ASC", "email", false),
            ("CREATED_AT_DESC", "createdAt", true),
            ("ID_DESC", "id", true),
        ],
        Ty::Item => &[
            ("QUANTITY_DESC", "quantity", true),
            ("UNIT_PRICE_ASC", "unitPrice", false),
            ("ID_DESC", "id", true),
        ],
        Ty::Product => &[
            ("PRICE_DESC", "price", true),
            ("NAME_ASC", "name", false),
            ("SKU_DESC", "sku", true),
            ("STOCK_QUANTITY_ASC", "stockQuantity", false),
        ],
        _ => &[
            ("CREATED_AT_DESC", "createdAt", true),
            ("TOTAL_AMOUNT_ASC", "totalAmount", false),
            ("TOTAL_AMOUNT_DESC", "totalAmount", true),
            ("STATUS_ASC", "status", false),
            ("ID_DESC", "id", true),
        ],
    }
}
const BY_ID: &[(&str, ArgKind)] = &[("id", ArgKind::Id)];

/// The page arguments of a connection over rows ordered by `orderBy` of `ty`.
macro_rules! page_args {
    ($ty:expr $(, $extra:expr)*) => {
        &[
            ("first", ArgKind::EdgeFirst),
            ("last", ArgKind::Last),
            ("orderBy", ArgKind::OrderBy($ty)),
            ("where", ArgKind::Where($ty)),
            $($extra,)*
            // Drawn after `orderBy`: a cursor is made under the connection's order.
            ("after", ArgKind::After),
            ("before", ArgKind::Before),
        ]
    };
}

static QUERY: &[FieldDef] = &[
    obj("me", Ty::User, &[]),
    obj("users", Ty::User, USERS),
    obj("user", Ty::User, BY_ID),
    obj(
        "orders",
        Ty::Order,
        &[
            ("first", ArgKind::First),
            ("offset", ArgKind::Offset),
            ("status", ArgKind::Status),
            ("userId", ArgKind::UserId),
            ("minAmount", ArgKind::MinAmount),
            ("orderBy", ArgKind::OrderBy(Ty::Order)),
            ("where", ArgKind::Where(Ty::Order)),
        ],
    ),
    obj("order", Ty::Order, BY_ID),
    obj("products", Ty::Product, PRODUCTS),
    obj("product", Ty::Product, BY_ID),
    obj("analytics", Ty::Analytics, &[]),
    obj(
        "usersAggregate",
        Ty::Agg(Base::User),
        &[("where", ArgKind::Where(Ty::User))],
    ),
    obj(
        "ordersAggregate",
        Ty::Agg(Base::Order),
        &[
            ("status", ArgKind::Status),
            ("userId", ArgKind::UserId),
            ("minAmount", ArgKind::MinAmount),
            ("where", ArgKind::Where(Ty::Order)),
        ],
    ),
    obj("productsAggregate", Ty::Agg(Base::Product), WHERE_PRODUCT),
    obj(
        "usersConnection",
        Ty::Conn(Base::User),
        page_args!(Ty::User),
    ),
    obj(
        "ordersConnection",
        Ty::Conn(Base::Order),
        page_args!(
            Ty::Order,
            ("status", ArgKind::Status),
            ("userId", ArgKind::UserId),
            ("minAmount", ArgKind::MinAmount)
        ),
    ),
    obj(
        "productsConnection",
        Ty::Conn(Base::Product),
        page_args!(Ty::Product),
    ),
    leaf("__typename"),
];
static ANALYTICS: &[FieldDef] = &[
    obj(
        "topCustomers",
        Ty::CustomerRevenue,
        &[
            ("days", ArgKind::Days),
            ("limit", ArgKind::Limit),
            ("status", ArgKind::StatusReq),
            ("asOf", ArgKind::AsOf),
        ],
    ),
    obj("spendingSummary", Ty::CustomerRevenue, PAGE),
    obj(
        "revenueByDay",
        Ty::DailyRevenue,
        &[
            ("days", ArgKind::Days),
            ("asOf", ArgKind::AsOf),
            ("status", ArgKind::StatusReq),
        ],
    ),
    obj(
        "productSales",
        Ty::ProductSales,
        &[
            ("days", ArgKind::Days),
            ("limit", ArgKind::Limit),
            ("asOf", ArgKind::AsOf),
            ("status", ArgKind::StatusReq),
        ],
    ),
    leaf("__typename"),
];
static USER: &[FieldDef] = &[
    leaf("id"),
    leaf("email"),
    leaf("username"),
    leaf("isActive"),
    leaf("createdAt"),
    leaf("updatedAt"),
    leaf("bio"),
    obj(
        "orders",
        Ty::Order,
        &[
            ("first", ArgKind::EdgeFirst),
            ("status", ArgKind::Status),
            ("orderBy", ArgKind::OrderBy(Ty::Order)),
            ("where", ArgKind::Where(Ty::Order)),
        ],
    ),
    obj(
        "ordersAggregate",
        Ty::Agg(Base::Order),
        &[
            ("status", ArgKind::Status),
            ("where", ArgKind::Where(Ty::Order)),
        ],
    ),
    obj(
        "ordersConnection",
        Ty::Conn(Base::Order),
        page_args!(Ty::Order, ("status", ArgKind::Status)),
    ),
    leaf("__typename"),
];
static ORDER: &[FieldDef] = &[
    leaf("id"),
    leaf("status"),
    leaf("totalAmount"),
    leaf("createdAt"),
    obj("user", Ty::User, &[]),
    obj("items", Ty::Item, BY_ITEM),
    obj("products", Ty::Product, BY_PRODUCT),
    obj("itemsAggregate", Ty::Agg(Base::Item), WHERE_ITEM),
    obj("productsAggregate", Ty::Agg(Base::Product), WHERE_PRODUCT),
    obj(
        "itemsConnection",
        Ty::Conn(Base::Item),
        page_args!(Ty::Item),
    ),
    obj(
        "productsConnection",
        Ty::Conn(Base::Product),
        page_args!(Ty::Product),
    ),
    leaf("__typename"),
];
static ITEM: &[FieldDef] = &[
    leaf("id"),
    leaf("quantity"),
    leaf("unitPrice"),
    obj("order", Ty::Order, &[]),
    obj("product", Ty::Product, &[]),
    leaf("__typename"),
];
static PRODUCT: &[FieldDef] = &[
    leaf("id"),
    leaf("name"),
    leaf("sku"),
    leaf("price"),
    leaf("stockQuantity"),
    obj(
        "orders",
        Ty::Order,
        &[
            ("first", ArgKind::EdgeFirst),
            ("orderBy", ArgKind::OrderBy(Ty::Order)),
            ("where", ArgKind::Where(Ty::Order)),
        ],
    ),
    obj("orderItems", Ty::Item, BY_ITEM),
    obj(
        "ordersAggregate",
        Ty::Agg(Base::Order),
        &[("where", ArgKind::Where(Ty::Order))],
    ),
    obj("orderItemsAggregate", Ty::Agg(Base::Item), WHERE_ITEM),
    obj(
        "ordersConnection",
        Ty::Conn(Base::Order),
        page_args!(Ty::Order),
    ),
    obj(
        "orderItemsConnection",
        Ty::Conn(Base::Item),
        page_args!(Ty::Item),
    ),
    leaf("__typename"),
];
static CUSTOMER_REVENUE: &[FieldDef] = &[
    obj("user", Ty::User, &[]),
    leaf("orderCount"),
    leaf("totalRevenue"),
    leaf("__typename"),
];
static DAILY_REVENUE: &[FieldDef] = &[
    leaf("day"),
    leaf("orderCount"),
    leaf("revenue"),
    leaf("__typename"),
];
static PRODUCT_SALES: &[FieldDef] = &[
    obj("product", Ty::Product, &[]),
    leaf("unitsSold"),
    leaf("revenue"),
    leaf("__typename"),
];

macro_rules! connection {
    ($conn:ident, $edge:ident, $base:expr) => {
        static $conn: &[FieldDef] = &[
            obj("edges", Ty::EdgeOf($base), &[]),
            obj("nodes", $base.ty(), &[]),
            obj("pageInfo", Ty::PageInfo, &[]),
            leaf("totalCount"),
            leaf("__typename"),
        ];
        static $edge: &[FieldDef] = &[
            obj("node", $base.ty(), &[]),
            leaf("cursor"),
            leaf("__typename"),
        ];
    };
}
connection!(USER_CONN, USER_EDGE, Base::User);
connection!(ORDER_CONN, ORDER_EDGE, Base::Order);
connection!(ITEM_CONN, ITEM_EDGE, Base::Item);
connection!(PRODUCT_CONN, PRODUCT_EDGE, Base::Product);
static PAGE_INFO: &[FieldDef] = &[
    leaf("hasNextPage"),
    leaf("hasPreviousPage"),
    leaf("startCursor"),
    leaf("endCursor"),
    leaf("__typename"),
];
static USER_AGG: &[FieldDef] = &[
    leaf("count"),
    obj("min", Ty::Vals(Base::User, Func::Min), &[]),
    obj("max", Ty::Vals(Base::User, Func::Max), &[]),
    leaf("__typename"),
];
macro_rules! numeric_agg {
    ($name:ident, $base:expr) => {
        static $name: &[FieldDef] = &[
            leaf("count"),
            obj("sum", Ty::Vals($base, Func::Sum), &[]),
            obj("avg", Ty::Vals($base, Func::Avg), &[]),
            obj("min", Ty::Vals($base, Func::Min), &[]),
            obj("max", Ty::Vals($base, Func::Max), &[]),
            leaf("__typename"),
        ];
    };
}
numeric_agg!(ORDER_AGG, Base::Order);
numeric_agg!(ITEM_AGG, Base::Item);
numeric_agg!(PRODUCT_AGG, Base::Product);
static USER_VALS: &[FieldDef] = &[leaf("createdAt"), leaf("updatedAt"), leaf("__typename")];
static ORDER_SUM: &[FieldDef] = &[leaf("totalAmount"), leaf("__typename")];
static ORDER_ORDERED: &[FieldDef] = &[leaf("totalAmount"), leaf("createdAt"), leaf("__typename")];
static ITEM_VALS: &[FieldDef] = &[leaf("quantity"), leaf("unitPrice"), leaf("__typename")];
static PRODUCT_VALS: &[FieldDef] = &[leaf("price"), leaf("stockQuantity"), leaf("__typename")];

fn fields(ty: Ty) -> &'static [FieldDef] {
    match ty {
        Ty::Conn(Base::User) => USER_CONN,
        Ty::Conn(Base::Order) => ORDER_CONN,
        Ty::Conn(Base::Item) => ITEM_CONN,
        Ty::Conn(Base::Product) => PRODUCT_CONN,
        Ty::EdgeOf(Base::User) => USER_EDGE,
        Ty::EdgeOf(Base::Order) => ORDER_EDGE,
        Ty::EdgeOf(Base::Item) => ITEM_EDGE,
        Ty::EdgeOf(Base::Product) => PRODUCT_EDGE,
        Ty::PageInfo => PAGE_INFO,
        Ty::Agg(Base::User) => USER_AGG,
        Ty::Agg(Base::Order) => ORDER_AGG,
        Ty::Agg(Base::Item) => ITEM_AGG,
        Ty::Agg(Base::Product) => PRODUCT_AGG,
        Ty::Vals(Base::User, _) => USER_VALS,
        Ty::Vals(Base::Order, Func::Sum | Func::Avg) => ORDER_SUM,
        Ty::Vals(Base::Order, _) => ORDER_ORDERED,
        Ty::Vals(Base::Item, _) => ITEM_VALS,
        Ty::Vals(Base::Product, _) => PRODUCT_VALS,
        Ty::Query => QUERY,
        Ty::Analytics => ANALYTICS,
        Ty::User => USER,
        Ty::Order => ORDER,
        Ty::Item => ITEM,
        Ty::Product => PRODUCT,
        Ty::CustomerRevenue => CUSTOMER_REVENUE,
        Ty::DailyRevenue => DAILY_REVENUE,
        Ty::ProductSales => PRODUCT_SALES,
    }
}

// ---------------------------------------------------------------------------------------------
// The grammar's tree, and its printer.

/// A literal value.
#[derive(Clone, Debug)]
pub enum Lit {
    Int(i64),
    Str(String),
    Enum(&'static str),
    Bool(bool),
    /// A list of enum values.
    Enums(Vec<&'static str>),
    /// An input object (a `where` filter), as its JSON; printed with the values of `status`
    /// filters as enum values.
    Input(Json),
    Null,
}

impl Lit {
    fn print(&self) -> String {
        match self {
            Lit::Int(n) => n.to_string(),
            Lit::Str(s) => Json::from(s.as_str()).to_string(),
            Lit::Enum(e) => (*e).to_owned(),
            Lit::Bool(b) => b.to_string(),
            Lit::Enums(v) => format!("[{}]", v.join(", ")),
            Lit::Input(v) => print_input(v, false),
            Lit::Null => "null".to_owned(),
        }
    }

    fn json(&self) -> Json {
        match self {
            Lit::Int(n) => Json::from(*n),
            Lit::Str(s) => Json::from(s.as_str()),
            Lit::Enum(e) => Json::from(*e),
            Lit::Bool(b) => Json::Bool(*b),
            Lit::Enums(v) => Json::from(v.clone()),
            Lit::Input(v) => v.clone(),
            Lit::Null => Json::Null,
        }
    }
}

/// An argument or condition value: a literal or the index of a variable.
#[derive(Clone, Debug)]
pub enum Val {
    Lit(Lit),
    Var(usize),
}

/// A variable definition with the value the request sends (`None`: omitted).
#[derive(Clone, Debug)]
pub struct VarDef {
    ty: String,
    default: Option<Lit>,
    given: Option<Json>,
}

/// `@skip(if:)` (`skip`) or `@include(if:)`.
#[derive(Clone, Debug)]
pub struct Dir {
    skip: bool,
    cond: Val,
}

/// A selection.
#[derive(Clone, Debug)]
pub enum Sel {
    Field(FieldSel),
    /// A spread of fragment `usize`.
    Spread(usize, Vec<Dir>),
    /// An inline fragment, with a type condition or without.
    Inline(Option<Ty>, Vec<Dir>, Vec<Sel>),
}

/// A field selection.
#[derive(Clone, Debug)]
pub struct FieldSel {
    alias: Option<String>,
    def: &'static FieldDef,
    args: Vec<(&'static str, ArgKind, Val)>,
    dirs: Vec<Dir>,
    sel: Vec<Sel>,
}

impl FieldSel {
    fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(self.def.name)
    }
}

/// A fragment definition.
#[derive(Clone, Debug)]
pub struct Frag {
    on: Ty,
    sel: Vec<Sel>,
}

/// A query operation and the variables its request sends.
#[derive(Clone, Debug)]
pub struct Op {
    vars: Vec<VarDef>,
    frags: Vec<Frag>,
    sel: Vec<Sel>,
    /// Who sends it.
    pub viewer: Viewer,
}

/// Who sends an operation: the roles and owner-only rows of the permission table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// An administrator (user 1): every root, every row.
    Admin,
    /// A customer: their own account and orders (and those orders' items), the catalogue.
    Customer(i64),
    /// No token: the catalogue only.
    Anonymous,
}

impl Op {
    /// The document text.
    pub fn document(&self) -> String {
        let mut out = String::from("query");
        if !self.vars.is_empty() {
            out.push('(');
            for (i, v) in self.vars.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&format!("$v{i}: {}", v.ty));
                if let Some(d) = &v.default {
                    out.push_str(&format!(" = {}", d.print()));
                }
            }
            out.push(')');
        }
        out.push(' ');
        print_set(&mut out, &self.sel);
        for (i, f) in self.frags.iter().enumerate() {
            out.push_str(&format!("\nfragment F{i} on {} ", f.on.name()));
            print_set(&mut out, &f.sel);
        }
        out
    }

    /// The request's `variables`.
    pub fn variables(&self) -> Json {
        let mut m = Map::new();
        for (i, v) in self.vars.iter().enumerate() {
            if let Some(g) = &v.given {
                m.insert(format!("v{i}"), g.clone());
            }
        }
        Json::Object(m)
    }
}

/// An input value as a GraphQL literal; strings below a `status` key are enum values.
fn print_input(v: &Json, enums: bool) -> String {
    match v {
        Json::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", print_input(v, enums || k == "status")))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| print_input(i, enums)).collect();
            format!("[{}]", parts.join(", "))
        }
        Json::String(e) if enums => e.clone(),
        other => other.to_string(),
    }
}

fn print_val(v: &Val) -> String {
    match v {
        Val::Lit(l) => l.print(),
        Val::Var(i) => format!("$v{i}"),
    }
}

fn print_dirs(out: &mut String, dirs: &[Dir]) {
    for d in dirs {
        let name = if d.skip { "skip" } else { "include" };
        out.push_str(&format!(" @{name}(if: {})", print_val(&d.cond)));
    }
}

fn print_set(out: &mut String, sel: &[Sel]) {
    out.push('{');
    for s in sel {
        out.push(' ');
        match s {
            Sel::Field(f) => {
                if let Some(a) = &f.alias {
                    out.push_str(a);
                    out.push_str(": ");
                }
                out.push_str(f.def.name);
                out.push_str(&print_args(&f.args));
                print_dirs(out, &f.dirs);
                if !f.sel.is_empty() {
                    out.push(' ');
                    print_set(out, &f.sel);
                }
            }
            Sel::Spread(i, dirs) => {
                out.push_str(&format!("...F{i}"));
                print_dirs(out, dirs);
            }
            Sel::Inline(cond, dirs, sel) => {
                out.push_str("...");
                if let Some(ty) = cond {
                    out.push_str(&format!(" on {}", ty.name()));
                }
                print_dirs(out, dirs);
                out.push(' ');
                print_set(out, sel);
            }
        }
    }
    out.push_str(" }");
}

fn print_args(args: &[(&'static str, ArgKind, Val)]) -> String {
    if args.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = args
        .iter()
        .map(|(n, _, v)| format!("{n}: {}", print_val(v)))
        .collect();
    format!("({})", parts.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The generator: draws every decision from a sequence of numbers, where 0 is always the
// simplest choice, so that proptest shrinks an operation by shrinking the sequence.

/// Values the generator picks arguments from.
pub struct Pool {
    /// Two customers with orders, whose owner-only rows differ.
    pub customers: [i64; 2],
    pub user_ids: Vec<i64>,
    pub order_ids: Vec<i64>,
    pub product_ids: Vec<i64>,
    /// Window ends worth trying: order times and the instants next to them.
    pub as_of: Vec<DateTime<Utc>>,
    /// The rows filters take their values from and cursors their positions.
    pub rows: Model,
}

/// Generates one operation from `choices`.
pub fn generate(choices: &[u32], pool: &Pool) -> Op {
    let mut g = Gen {
        choices,
        at: 0,
        pool,
        op: Op {
            vars: Vec::new(),
            frags: Vec::new(),
            sel: Vec::new(),
            viewer: Viewer::Admin,
        },
        keys: HashMap::new(),
        unaliased: HashMap::new(),
    };
    let sel = g.selection(Ty::Query, 0, 0);
    g.op.sel = sel;
    // Drawn last, so the simplest viewer (an administrator) keeps every other choice.
    g.op.viewer = match g.next(4) {
        0 => Viewer::Admin,
        1 => Viewer::Customer(pool.customers[0]),
        2 => Viewer::Customer(pool.customers[1]),
        _ => Viewer::Anonymous,
    };
    g.op
}

const MAX_DEPTH: usize = 4;

struct Gen<'a> {
    choices: &'a [u32],
    at: usize,
    pool: &'a Pool,
    op: Op,
    /// Aliases, one per (type, field, arguments), so equal keys always mean equal fields.
    keys: HashMap<String, usize>,
    /// The arguments of the unaliased use of a (type, field), which later ones must repeat.
    unaliased: HashMap<(Ty, &'static str), String>,
}

impl Gen<'_> {
    fn next(&mut self, n: u32) -> u32 {
        let v = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        if n == 0 { 0 } else { v % n }
    }

    /// `true` with about `pct` percent, and `false` for the simplest choice.
    fn chance(&mut self, pct: u32) -> bool {
        self.next(100) >= 100 - pct
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        let i = self.next(items.len() as u32) as usize;
        items[i].clone()
    }

    fn selection(&mut self, ty: Ty, depth: usize, nesting: usize) -> Vec<Sel> {
        let n = 1 + self.next(if depth == 0 { 3 } else { 4 });
        let mut out: Vec<Sel> = Vec::new();
        for _ in 0..n {
            let r = self.next(100);
            if r >= 92 && nesting < 2 {
                let reuse: Vec<usize> = (0..self.op.frags.len())
                    .filter(|i| self.op.frags[*i].on == ty)
                    .collect();
                let idx = if !reuse.is_empty() && self.chance(50) {
                    self.pick(&reuse)
                } else {
                    let sel = self.selection(ty, depth, nesting + 1);
                    self.op.frags.push(Frag { on: ty, sel });
                    self.op.frags.len() - 1
                };
                let dirs = self.dirs();
                out.push(Sel::Spread(idx, dirs));
            } else if r >= 85 && nesting < 2 {
                let cond = self.chance(50).then_some(ty);
                let dirs = self.dirs();
                let sel = self.selection(ty, depth, nesting + 1);
                out.push(Sel::Inline(cond, dirs, sel));
            } else if r >= 78 && out.iter().any(|s| matches!(s, Sel::Field(_))) {
                // The same response key again, with another sub-selection and directives.
                let prev: Vec<FieldSel> = out
                    .iter()
                    .filter_map(|s| match s {
                        Sel::Field(f) => Some(f.clone()),
                        _ => None,
                    })
                    .collect();
                let mut f = self.pick(&prev);
                f.dirs = self.dirs();
                if let Some(t) = f.def.ty {
                    f.sel = self.selection(t, depth + 1, 0);
                }
                out.push(Sel::Field(f));
            } else {
                let f = self.field(ty, depth);
                out.push(Sel::Field(f));
            }
        }
        out
    }

    fn dirs(&mut self) -> Vec<Dir> {
        let mut out = Vec::new();
        while out.len() < 2 && self.chance(if out.is_empty() { 20 } else { 15 }) {
            // `@skip` and `@include` are not repeatable: a second directive is the other one.
            let skip = match out.first() {
                Some(Dir { skip, .. }) => !*skip,
                None => self.chance(50),
            };
            let cond = if self.chance(50) {
                // `Boolean!` sent, or `Boolean = default` sent or omitted.
                let (ty, default, given) = match self.next(3) {
                    0 => ("Boolean!", None, Some(Json::Bool(self.chance(50)))),
                    1 => ("Boolean", Some(Lit::Bool(self.chance(50))), None),
                    _ => (
                        "Boolean",
                        Some(Lit::Bool(self.chance(50))),
                        Some(Json::Bool(self.chance(50))),
                    ),
                };
                Val::Var(self.var(ty, default, given))
            } else {
                Val::Lit(Lit::Bool(self.chance(50)))
            };
            out.push(Dir { skip, cond });
        }
        out
    }

    fn var(&mut self, ty: &str, default: Option<Lit>, given: Option<Json>) -> usize {
        self.op.vars.push(VarDef {
            ty: ty.to_owned(),
            default,
            given,
        });
        self.op.vars.len() - 1
    }

    fn field(&mut self, ty: Ty, depth: usize) -> FieldSel {
        let defs = fields(ty);
        let mut def = &defs[self.next(defs.len() as u32) as usize];
        if def.name == "avg" {
            // Its float text is the server's own: `count` instead.
            def = &defs[0];
        }
        if def.ty.is_some() && depth >= MAX_DEPTH {
            // Deep enough: a leaf.
            def = defs.iter().find(|d| d.ty.is_none()).unwrap_or(def);
        }
        let mut args = Vec::new();
        for (name, kind) in def.args {
            let required = matches!(kind, ArgKind::Id | ArgKind::AsOf);
            let cursor = matches!(kind, ArgKind::After | ArgKind::Before);
            if required || self.chance(if cursor { 25 } else { 55 }) {
                let v = if cursor {
                    self.cursor(def, &args)
                } else {
                    self.arg(*kind, def.name)
                };
                args.push((*name, *kind, v));
            }
        }
        let printed = print_args(&args);
        // An unaliased field must repeat the arguments of the first unaliased use.
        let aliased = match self.unaliased.get(&(ty, def.name)) {
            Some(p) if *p == printed => self.chance(30),
            Some(_) => true,
            None => self.chance(30),
        };
        let alias = if aliased {
            let id = format!("{}.{}{}", ty.name(), def.name, printed);
            let n = self.keys.len();
            let n = *self.keys.entry(id).or_insert(n);
            Some(format!("{}_{n}", def.name.trim_start_matches("__")))
        } else {
            self.unaliased.entry((ty, def.name)).or_insert(printed);
            None
        };
        let dirs = self.dirs();
        let sel = match def.ty {
            Some(t) => self.selection(t, depth + 1, 0),
            None => Vec::new(),
        };
        FieldSel {
            alias,
            def,
            args,
            dirs,
            sel,
        }
    }

    /// An argument value: a literal, or a variable (sent, omitted, defaulted or null).
    fn arg(&mut self, kind: ArgKind, field: &str) -> Val {
        let lit = self.lit(kind, field);
        if !self.chance(30) {
            return Val::Lit(lit);
        }
        let (loc, loc_default) = kind.location();
        let base = loc.trim_end_matches('!');
        // A nullable variable may stand in a non-null position only where the argument has
        // a default.
        let var_non_null = if !loc.ends_with('!') || loc_default.is_some() {
            self.chance(40)
        } else {
            true
        };
        let var_ty = if var_non_null {
            format!("{base}!")
        } else {
            base.to_owned()
        };
        let default = if self.chance(30) {
            Some(self.lit_non_null(kind, field))
        } else {
            None
        };
        // `asOf` must never be absent (it would mean "now") and `id` is required.
        let must_have_value = matches!(kind, ArgKind::Id | ArgKind::AsOf);
        let given = match self.next(4) {
            0 if (!var_non_null || default.is_some())
                && (!must_have_value || default.is_some()) =>
            {
                None
            }
            1 if !var_non_null && !must_have_value => Some(Json::Null),
            _ if matches!(lit, Lit::Null) && (var_non_null || must_have_value) => {
                Some(self.lit_non_null(kind, field).json())
            }
            _ => Some(lit.json()),
        };
        Val::Var(self.var(&var_ty, default, given))
    }

    fn lit_non_null(&mut self, kind: ArgKind, field: &str) -> Lit {
        for _ in 0..4 {
            let l = self.lit(kind, field);
            if !matches!(l, Lit::Null) {
                return l;
            }
        }
        // Null four times running: a valid value of the argument's own type.
        match kind {
            ArgKind::OrderBy(ty) => Lit::Enums(vec![sort_keys(ty)[0].0]),
            ArgKind::Status | ArgKind::StatusReq => Lit::Enum("COMPLETED"),
            ArgKind::Where(ty) => Lit::Input(self.filter(ty, 0)),
            _ => Lit::Int(1),
        }
    }

    fn lit(&mut self, kind: ArgKind, field: &str) -> Lit {
        let bad = self.chance(3);
        match kind {
            ArgKind::First if bad => Lit::Int(self.pick(&[-1, 1001])),
            ArgKind::First => Lit::Int(self.pick(&[2, 0, 1, 3, 5, 20, 200])),
            ArgKind::Offset if bad => Lit::Int(-1),
            ArgKind::Offset => Lit::Int(self.pick(&[0, 1, 2, 7])),
            ArgKind::EdgeFirst | ArgKind::Last if bad => Lit::Int(self.pick(&[-2, 1001])),
            ArgKind::EdgeFirst | ArgKind::Last => Lit::Int(self.pick(&[1, 0, 2, 3, 20])),
            ArgKind::Id | ArgKind::UserId if bad => {
                Lit::Str(self.pick(&["abc".to_owned(), "0".to_owned()]))
            }
            ArgKind::Id | ArgKind::UserId => {
                let ids = match (kind, field) {
                    (ArgKind::UserId, _) | (_, "user") => &self.pool.user_ids,
                    (_, "order") => &self.pool.order_ids,
                    _ => &self.pool.product_ids,
                };
                let mut ids = ids.clone();
                ids.push(99_999);
                Lit::Str(self.pick(&ids).to_string())
            }
            ArgKind::Status if self.chance(8) => Lit::Null,
            ArgKind::Status | ArgKind::StatusReq => {
                Lit::Enum(self.pick(&["COMPLETED", "PENDING", "SHIPPED", "CANCELLED"]))
            }
            ArgKind::MinAmount if bad => Lit::Str("0.001".into()),
            ArgKind::MinAmount => {
                Lit::Str(self.pick(&["10".to_owned(), "0".into(), "50.5".into(), "120.25".into()]))
            }
            ArgKind::Days if bad => Lit::Int(0),
            ArgKind::Days => Lit::Int(self.pick(&[7, 1, 2, 30, 3650])),
            ArgKind::Limit if bad => Lit::Int(self.pick(&[0, 101])),
            ArgKind::Limit => Lit::Int(self.pick(&[3, 1, 2, 10])),
            ArgKind::Where(_) if self.chance(10) => Lit::Null,
            ArgKind::Where(ty) => Lit::Input(self.filter(ty, 0)),
            // Drawn by `cursor`, as literals.
            ArgKind::After | ArgKind::Before => Lit::Null,
            ArgKind::OrderBy(_) if self.chance(10) => Lit::Null,
            // The same field twice is refused.
            ArgKind::OrderBy(ty) if bad => {
                let (name, _, _) = sort_keys(ty)[0];
                Lit::Enums(vec![name, name])
            }
            ArgKind::OrderBy(ty) => {
                let keys = sort_keys(ty);
                let first = self.pick(keys);
                let mut out = vec![first.0];
                if self.chance(40) {
                    let second = self.pick(keys);
                    if second.1 != first.1 {
                        out.push(second.0);
                    }
                }
                Lit::Enums(out)
            }
            ArgKind::AsOf => {
                let t = self.pick(&self.pool.as_of.clone());
                let text = if self.chance(50) {
                    t.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
                } else {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                };
                Lit::Str(text)
            }
        }
    }

    /// The value an argument of the operation has when it runs, as far as the generator
    /// knows it (a literal, or a variable's sent value or default).
    fn effective(&self, v: &Val) -> Option<Json> {
        match v {
            Val::Lit(l) => Some(l.json()),
            Val::Var(i) => {
                let var = &self.op.vars[*i];
                var.given
                    .clone()
                    .or_else(|| var.default.as_ref().map(Lit::json))
            }
        }
    }

    /// `after` or `before` of a connection: the position of some row of its type (visible to
    /// the viewer or not, kept by the filters or not), made under the connection's `orderBy`
    /// as drawn before it; now and then a malformed cursor, or one made under another order.
    fn cursor(&mut self, def: &FieldDef, args: &[(&'static str, ArgKind, Val)]) -> Val {
        let Some(Ty::Conn(base)) = def.ty else {
            panic!("oracle: a cursor of {}", def.name)
        };
        if self.chance(3) {
            return Val::Lit(Lit::Str("bm90IGEgY3Vyc29y".to_owned()));
        }
        let order: Vec<String> = args
            .iter()
            .find(|(name, _, _)| *name == "orderBy")
            .and_then(|(_, _, v)| self.effective(v))
            .map(|v| order_names(&v))
            .unwrap_or_default();
        let order = if self.chance(3) {
            vec![sort_keys(base.ty())[1].0.to_owned()]
        } else {
            order
        };
        let rows = rows_of(&self.pool.rows, base);
        let row = rows[self.next(rows.len() as u32) as usize];
        Val::Lit(Lit::Str(encode_cursor(base, &order, &row)))
    }

    /// A `where` filter of `ty`: one or two conditions, each on a field, a relationship
    /// (to-one, or `some`/`none` of a to-many one) or `and`/`or`/`not` of filters. Written
    /// the way the server's canonical form keeps it (members sorted without repeats, no null
    /// or empty member), so that two filters meaning the same are written the same.
    fn filter(&mut self, ty: Ty, depth: usize) -> Json {
        let mut m = Map::new();
        for _ in 0..1 + self.next(2) {
            let (key, value) = self.condition(ty, depth);
            m.entry(key).or_insert(value);
        }
        Json::Object(m)
    }

    fn condition(&mut self, ty: Ty, depth: usize) -> (String, Json) {
        let nested = depth < 2;
        match self.next(if nested { 12 } else { 8 }) {
            8 | 9 => {
                let key = if self.chance(50) { "and" } else { "or" };
                let mut members: Vec<Json> = (0..1 + self.next(2))
                    .map(|_| self.filter(ty, depth + 1))
                    .collect();
                members.sort_by_key(Json::to_string);
                members.dedup();
                (key.to_owned(), Json::Array(members))
            }
            10 => ("not".to_owned(), self.filter(ty, depth + 1)),
            r => {
                let choices = filter_fields(ty);
                let (name, kind) = choices[r as usize % choices.len()];
                let value = match kind {
                    FKind::One(target) if nested => self.filter(target, depth + 1),
                    FKind::Many(target) if nested => {
                        let op = if self.chance(50) { "some" } else { "none" };
                        let inner = self.filter(target, depth + 1);
                        serde_json::json!({ op: inner })
                    }
                    FKind::One(_) | FKind::Many(_) => {
                        return ("id".to_owned(), self.ops(ty, "id", FKind::Id));
                    }
                    kind => self.ops(ty, name, kind),
                };
                (name.to_owned(), value)
            }
        }
    }

    /// One or two operators of a field filter.
    fn ops(&mut self, ty: Ty, field: &str, kind: FKind) -> Json {
        let names: &[&str] = match kind {
            FKind::Id | FKind::Status => &["eq", "in"],
            FKind::Bool => &["eq"],
            FKind::Text => &["eq", "in", "contains", "startsWith", "isNull"],
            _ => &["eq", "in", "gt", "gte", "lt", "lte", "isNull"],
        };
        let mut m = Map::new();
        for _ in 0..1 + self.next(2) {
            let op = self.pick(names);
            let value = match op {
                "isNull" => Json::Bool(self.chance(50)),
                "in" => {
                    let mut items: Vec<Json> = (0..1 + self.next(3))
                        .map(|_| self.scalar(ty, field, kind, op))
                        .collect();
                    items.sort_by_key(Json::to_string);
                    items.dedup();
                    Json::Array(items)
                }
                _ => self.scalar(ty, field, kind, op),
            };
            m.entry(op.to_owned()).or_insert(value);
        }
        Json::Object(m)
    }

    /// A value of a field of `ty` for operator `op`, taken from the rows most of the time.
    fn scalar(&mut self, ty: Ty, field: &str, kind: FKind, op: &str) -> Json {
        let base = base_of(ty);
        let rows = rows_of(&self.pool.rows, base);
        let row = rows[self.next(rows.len() as u32) as usize];
        match kind {
            FKind::Bool => Json::Bool(self.chance(50)),
            FKind::Status => {
                Json::from(self.pick(&["COMPLETED", "PENDING", "SHIPPED", "CANCELLED"]))
            }
            FKind::Id if self.chance(10) => Json::from("99999"),
            FKind::Id => Json::from(sort_key(&row, "id").text()),
            FKind::Int => {
                if self.chance(50) {
                    Json::from(self.pick(&[0, 1, 2, 3, 5, 50]))
                } else {
                    Json::from(sort_key(&row, field).text().parse::<i64>().unwrap_or(0))
                }
            }
            FKind::Dec => {
                if self.chance(50) {
                    Json::from(self.pick(&["0", "10", "10.5", "50.50", "120.25"]))
                } else {
                    Json::from(sort_key(&row, field).text())
                }
            }
            FKind::Time => {
                let t = self.pick(&self.pool.as_of.clone());
                Json::from(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            }
            _ => {
                let text = match filter_val(&row, field) {
                    FVal::Sort(SortKey::Text(t)) => t,
                    _ => "ab".to_owned(),
                };
                let chars: Vec<char> = text.chars().collect();
                let cut = |from: usize, len: usize| -> String {
                    chars.iter().skip(from).take(len).collect()
                };
                match op {
                    "contains" => match self.next(4) {
                        0 => cut(chars.len() / 3, 3),
                        1 => cut(1, 2).to_ascii_uppercase(),
                        2 => self.pick(&["%".to_owned(), "_".to_owned(), "e_".to_owned()]),
                        _ => "zz".to_owned(),
                    }
                    .into(),
                    "startsWith" => if self.chance(30) {
                        cut(0, 2).to_ascii_uppercase()
                    } else {
                        cut(0, 1 + chars.len() / 2)
                    }
                    .into(),
                    _ => text.into(),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluator.

/// A field after `CollectFields` and `CoerceArgumentValues`: one per response key.
#[derive(Debug)]
struct CField {
    key: String,
    def: &'static FieldDef,
    /// Coerced arguments: absent ones are missing (their defaults applied).
    args: HashMap<&'static str, Json>,
    /// Arguments that failed coercion (an explicit null for a non-null argument).
    bad_args: bool,
    children: Vec<CField>,
}

impl CField {
    fn arg(&self, name: &str) -> Option<&Json> {
        self.args.get(name).filter(|v| !v.is_null())
    }
}

/// What the oracle expects: `data` (absent for a request error), error paths with codes,
/// and the statement count.
#[derive(Debug)]
pub struct Expected {
    pub data: Json,
    pub errors: Vec<(Json, &'static str)>,
    pub statements: usize,
}

/// Evaluates `op` over `model`.
pub fn evaluate(op: &Op, model: &Model) -> Expected {
    let mut vars: HashMap<usize, Json> = HashMap::new();
    for (i, v) in op.vars.iter().enumerate() {
        match (&v.given, &v.default) {
            (Some(g), _) => {
                vars.insert(i, g.clone());
            }
            (None, Some(d)) => {
                vars.insert(i, d.json());
            }
            (None, None) => {}
        }
    }
    let cx = Cx {
        op,
        vars,
        model,
        viewer: op.viewer,
    };
    let root: Vec<&Sel> = op.sel.iter().collect();
    let tree = cx.collect(Ty::Query, &[root]);
    let mut errors = Vec::new();
    let mut statements = 0;
    let data = match cx.object(Obj::Query, &tree, &[], &mut errors, &mut statements) {
        Some(m) => Json::Object(m),
        None => Json::Null,
    };
    errors.sort_by_key(|e| e.0.to_string());
    Expected {
        data,
        errors,
        statements,
    }
}

struct Cx<'a> {
    op: &'a Op,
    vars: HashMap<usize, Json>,
    model: &'a Model,
    viewer: Viewer,
}

#[derive(Clone, Copy)]
enum Obj<'m> {
    Query,
    Analytics,
    User(&'m UserRow),
    Order(&'m OrderRow),
    Item(&'m OrderItemRow),
    Product(&'m ProductRow),
    /// A customer's row of a report: user, order count, cents.
    Customer(&'m UserRow, i64, i64),
    Daily(NaiveDate, i64, i64),
    Sales(&'m ProductRow, i64, i64),
}

fn cents(d: Decimal) -> i64 {
    (d * Decimal::from(100))
        .trunc()
        .to_string()
        .parse()
        .expect("cents")
}

fn money(c: i64) -> Json {
    let sign = if c < 0 { "-" } else { "" };
    Json::from(format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100))
}

fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "PENDING",
        OrderStatus::Completed => "COMPLETED",
        OrderStatus::Shipped => "SHIPPED",
        OrderStatus::Cancelled => "CANCELLED",
    }
}

fn parse_status(v: &Json) -> Option<OrderStatus> {
    match v.as_str()? {
        "PENDING" => Some(OrderStatus::Pending),
        "COMPLETED" => Some(OrderStatus::Completed),
        "SHIPPED" => Some(OrderStatus::Shipped),
        "CANCELLED" => Some(OrderStatus::Cancelled),
        _ => None,
    }
}

fn int(v: Option<&Json>) -> Option<i64> {
    v.and_then(Json::as_i64)
}

fn id(v: Option<&Json>) -> Option<i64> {
    let n = match v? {
        Json::String(s) => s.parse::<i64>().ok()?,
        Json::Number(n) => n.as_i64()?,
        _ => return None,
    };
    (n > 0).then_some(n)
}

impl<'a> Cx<'a> {
    fn value(&self, v: &Val) -> Option<Json> {
        match v {
            Val::Lit(l) => Some(l.json()),
            Val::Var(i) => self.vars.get(i).cloned(),
        }
    }

    fn included(&self, dirs: &[Dir]) -> bool {
        dirs.iter().all(|d| {
            let b = self
                .value(&d.cond)
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if d.skip { !b } else { b }
        })
    }

    /// `CollectFields` for objects of `ty` over several selection sets (the sub-selections of
    /// one response key's fields), then the same for each key's merged sub-selection.
    fn collect(&self, ty: Ty, sets: &[Vec<&'a Sel>]) -> Vec<CField> {
        let mut grouped: Vec<(String, Vec<&'a FieldSel>)> = Vec::new();
        let mut visited = Vec::new();
        for set in sets {
            self.collect_into(ty, set, &mut visited, &mut grouped);
        }
        grouped
            .into_iter()
            .map(|(key, same)| {
                let first = same[0];
                let mut args = HashMap::new();
                let mut bad_args = false;
                for (name, kind, v) in &first.args {
                    if let Some(value) = self.value(v) {
                        args.insert(*name, value);
                    }
                    let (loc, _) = kind.location();
                    if loc.ends_with('!') && args.get(name).is_some_and(Json::is_null) {
                        bad_args = true;
                    }
                }
                for (name, kind) in first.def.args {
                    if !args.contains_key(name)
                        && let (_, Some(d)) = kind.location()
                    {
                        args.insert(*name, d);
                    }
                }
                let children = match first.def.ty {
                    Some(t) => {
                        let subs: Vec<Vec<&'a Sel>> =
                            same.iter().map(|f| f.sel.iter().collect()).collect();
                        self.collect(t, &subs)
                    }
                    None => Vec::new(),
                };
                CField {
                    key,
                    def: first.def,
                    args,
                    bad_args,
                    children,
                }
            })
            .collect()
    }

    fn collect_into(
        &self,
        ty: Ty,
        set: &[&'a Sel],
        visited: &mut Vec<usize>,
        grouped: &mut Vec<(String, Vec<&'a FieldSel>)>,
    ) {
        for sel in set {
            match sel {
                Sel::Field(f) => {
                    if !self.included(&f.dirs) {
                        continue;
                    }
                    match grouped.iter_mut().find(|(k, _)| k == f.key()) {
                        Some((_, same)) => same.push(f),
                        None => grouped.push((f.key().to_owned(), vec![f])),
                    }
                }
                Sel::Spread(i, dirs) => {
                    if !self.included(dirs) || visited.contains(i) {
                        continue;
                    }
                    visited.push(*i);
                    let frag = &self.op.frags[*i];
                    if frag.on == ty {
                        let inner: Vec<&Sel> = frag.sel.iter().collect();
                        self.collect_into(ty, &inner, visited, grouped);
                    }
                }
                Sel::Inline(_, dirs, inner) => {
                    if !self.included(dirs) {
                        continue;
                    }
                    let inner: Vec<&Sel> = inner.iter().collect();
                    self.collect_into(ty, &inner, visited, grouped);
                }
            }
        }
    }

    /// Executes a selection on an object. `None`: a non-null field below was null (the
    /// object itself becomes null).
    fn object(
        &self,
        obj: Obj<'a>,
        set: &[CField],
        path: &[Json],
        errors: &mut Vec<(Json, &'static str)>,
        statements: &mut usize,
    ) -> Option<Map<String, Json>> {
        let mut out = Map::new();
        let mut null = false;
        for f in set {
            let mut p = path.to_vec();
            p.push(Json::from(f.key.as_str()));
            match self.field(obj, f, &p, errors, statements) {
                Some(v) => {
                    out.insert(f.key.clone(), v);
                }
                None => null = true,
            }
        }
        (!null).then_some(out)
    }

    /// A field's completed value; `None` when it is null in a non-null position.
    fn field(
        &self,
        obj: Obj<'a>,
        f: &CField,
        path: &[Json],
        errors: &mut Vec<(Json, &'static str)>,
        statements: &mut usize,
    ) -> Option<Json> {
        let name = f.def.name;
        if name == "__typename" {
            return Some(Json::from(match obj {
                Obj::Query => "Query",
                Obj::Analytics => "Analytics",
                Obj::User(_) => "User",
                Obj::Order(_) => "Order",
                Obj::Item(_) => "OrderItem",
                Obj::Product(_) => "Product",
                Obj::Customer(..) => "CustomerRevenue",
                Obj::Daily(..) => "DailyRevenue",
                Obj::Sales(..) => "ProductSales",
            }));
        }
        let fail = |errors: &mut Vec<(Json, &'static str)>, nullable: bool| {
            errors.push((Json::Array(path.to_vec()), "BAD_USER_INPUT"));
            if nullable { Some(Json::Null) } else { None }
        };
        // A root field or report whose arguments (or whose sub-selection's edge arguments)
        // are refused fails as a whole, before any SQL.
        let root_like = matches!(obj, Obj::Query | Obj::Analytics);
        let nullable = matches!(name, "me" | "user" | "order" | "product");
        // Who may use a root field is checked first: a refused field runs nothing.
        if let (Obj::Query, Some(code)) = (obj, self.refused(name)) {
            errors.push((Json::Array(path.to_vec()), code));
            return nullable.then_some(Json::Null);
        }
        if root_like && name != "analytics" && (f.bad_args || !self.args_ok(f)) {
            return fail(errors, nullable);
        }
        let sub = |o: Obj<'a>, errors: &mut Vec<_>, statements: &mut usize| {
            self.object(o, &f.children, path, errors, statements)
                .map(Json::Object)
        };
        let list = |objs: Vec<Obj<'a>>, errors: &mut Vec<_>, statements: &mut usize| {
            let mut items = Vec::with_capacity(objs.len());
            for (i, o) in objs.into_iter().enumerate() {
                let mut p = path.to_vec();
                p.push(Json::from(i));
                items.push(
                    self.object(o, &f.children, &p, errors, statements)
                        .map(Json::Object)?,
                );
            }
            Some(Json::Array(items))
        };
        let page = |n: usize| {
            let first = int(f.arg("first")).unwrap_or(20) as usize;
            let offset = int(f.arg("offset")).unwrap_or(0) as usize;
            (offset.min(n)..n).take(first)
        };
        match obj {
            Obj::Query if name.ends_with("Connection") => {
                let list = name.trim_end_matches("Connection");
                let base = match list {
                    "users" => Base::User,
                    "orders" => Base::Order,
                    _ => Base::Product,
                };
                let rows = sorted(self.root_rows(list, f), f);
                let counted = f.children.iter().any(|c| c.def.name == "totalCount");
                let (shown, _, _) = page_of(rows.clone(), f);
                *statements +=
                    1 + usize::from(counted) + self.batches_of(&shown, &node_selections(f));
                self.connection(base, rows, f, path, errors, statements)
            }
            Obj::Query if name.ends_with("Aggregate") => {
                let (base, rows) = match name {
                    "usersAggregate" => (Base::User, self.root_rows("users", f)),
                    "ordersAggregate" => (Base::Order, self.root_rows("orders", f)),
                    _ => (Base::Product, self.root_rows("products", f)),
                };
                *statements += 1;
                Some(self.aggregate(base, &rows, f))
            }
            Obj::Query => {
                let rows: Vec<Obj<'a>> = match name {
                    "users" | "products" | "orders" => {
                        let all = sorted(self.root_rows(name, f), f);
                        page(all.len()).map(|i| all[i]).collect()
                    }
                    "user" => self
                        .user(id(f.arg("id")).unwrap_or(0))
                        .into_iter()
                        .collect(),
                    "order" => self
                        .order(id(f.arg("id")).unwrap_or(0))
                        .into_iter()
                        .collect(),
                    "product" => self
                        .product(id(f.arg("id")).unwrap_or(0))
                        .into_iter()
                        .collect(),
                    // The signed-in viewer; no statement without one.
                    "me" => match self.viewer {
                        Viewer::Admin => self.user(1).into_iter().collect(),
                        Viewer::Customer(me) => self.user(me).into_iter().collect(),
                        Viewer::Anonymous => return Some(Json::Null),
                    },
                    "analytics" => {
                        return sub(Obj::Analytics, errors, statements);
                    }
                    other => panic!("oracle: Query.{other}"),
                };
                *statements += 1 + self.batches(&rows, &f.children);
                match name {
                    "me" | "user" | "order" | "product" => match rows.into_iter().next() {
                        Some(o) => Some(sub(o, errors, statements).unwrap_or(Json::Null)),
                        None => Some(Json::Null),
                    },
                    _ => list(rows, errors, statements),
                }
            }
            Obj::Analytics => {
                let rows = self.report(f);
                *statements += 1;
                let named: Vec<Obj<'a>> = rows
                    .iter()
                    .filter_map(|r| match r {
                        Obj::Customer(u, ..) => Some(Obj::User(u)),
                        Obj::Sales(p, ..) => Some(Obj::Product(p)),
                        _ => None,
                    })
                    .collect();
                let below: Vec<&CField> = f
                    .children
                    .iter()
                    .filter(|c| matches!(c.def.name, "user" | "product"))
                    .flat_map(|c| c.children.iter())
                    .collect();
                *statements += self.batches_of(&named, &below);
                list(rows, errors, statements)
            }
            Obj::User(u) => Some(match name {
                "id" => Json::from(u.id.to_string()),
                "email" => Json::from(u.email.as_str()),
                "username" => Json::from(u.username.as_str()),
                "isActive" => Json::from(u.is_active),
                "createdAt" => Json::from(u.created_at.to_rfc3339()),
                "updatedAt" => Json::from(u.updated_at.to_rfc3339()),
                "bio" => u.bio.clone().map(Json::from).unwrap_or(Json::Null),
                "orders" => return list(self.edge(obj, f), errors, statements),
                "ordersAggregate" => self.aggregate(Base::Order, &self.edge(obj, f), f),
                "ordersConnection" => {
                    let rows = self.edge_all(obj, f);
                    return self.connection(Base::Order, rows, f, path, errors, statements);
                }
                other => panic!("oracle: User.{other}"),
            }),
            Obj::Order(o) => Some(match name {
                "id" => Json::from(o.id.to_string()),
                "status" => Json::from(status_name(o.status)),
                "totalAmount" => money(cents(o.total_amount)),
                "createdAt" => Json::from(o.created_at.to_rfc3339()),
                "user" => {
                    let u = self.user(o.user_id).expect("order has a user");
                    return sub(u, errors, statements);
                }
                "items" | "products" => return list(self.edge(obj, f), errors, statements),
                "itemsAggregate" => self.aggregate(Base::Item, &self.edge(obj, f), f),
                "productsAggregate" => self.aggregate(Base::Product, &self.edge(obj, f), f),
                "itemsConnection" | "productsConnection" => {
                    let base = if name == "itemsConnection" {
                        Base::Item
                    } else {
                        Base::Product
                    };
                    let rows = self.edge_all(obj, f);
                    return self.connection(base, rows, f, path, errors, statements);
                }
                other => panic!("oracle: Order.{other}"),
            }),
            Obj::Item(i) => Some(match name {
                "id" => Json::from(i.id.to_string()),
                "quantity" => Json::from(i.quantity),
                "unitPrice" => money(cents(i.unit_price)),
                "order" => {
                    let o = self.order(i.order_id).expect("item has an order");
                    return sub(o, errors, statements);
                }
                "product" => {
                    let p = self.product(i.product_id).expect("item has a product");
                    return sub(p, errors, statements);
                }
                other => panic!("oracle: OrderItem.{other}"),
            }),
            Obj::Product(p) => Some(match name {
                "id" => Json::from(p.id.to_string()),
                "name" => Json::from(p.name.as_str()),
                "sku" => Json::from(p.sku.as_str()),
                "price" => money(cents(p.price)),
                "stockQuantity" => Json::from(p.stock_quantity),
                "orders" | "orderItems" => return list(self.edge(obj, f), errors, statements),
                "ordersAggregate" => self.aggregate(Base::Order, &self.edge(obj, f), f),
                "orderItemsAggregate" => self.aggregate(Base::Item, &self.edge(obj, f), f),
                "ordersConnection" | "orderItemsConnection" => {
                    let base = if name == "ordersConnection" {
                        Base::Order
                    } else {
                        Base::Item
                    };
                    let rows = self.edge_all(obj, f);
                    return self.connection(base, rows, f, path, errors, statements);
                }
                other => panic!("oracle: Product.{other}"),
            }),
            Obj::Customer(u, count, c) => Some(match name {
                "user" => return sub(Obj::User(u), errors, statements),
                "orderCount" => Json::from(count),
                "totalRevenue" => money(c),
                other => panic!("oracle: CustomerRevenue.{other}"),
            }),
            Obj::Daily(day, count, c) => Some(match name {
                "day" => Json::from(day.format("%Y-%m-%d").to_string()),
                "orderCount" => Json::from(count),
                "revenue" => money(c),
                other => panic!("oracle: DailyRevenue.{other}"),
            }),
            Obj::Sales(p, units, c) => Some(match name {
                "product" => return sub(Obj::Product(p), errors, statements),
                "unitsSold" => Json::from(units),
                "revenue" => money(c),
                other => panic!("oracle: ProductSales.{other}"),
            }),
        }
    }

    /// Whether a root field's or report's arguments, and every edge argument selected below
    /// it, are accepted.
    fn args_ok(&self, f: &CField) -> bool {
        let in_range =
            |name: &str, lo: i64, hi: i64| int(f.arg(name)).is_none_or(|n| (lo..=hi).contains(&n));
        let own = match f.def.name {
            "users" | "products" | "spendingSummary" => {
                in_range("first", 0, 1000) && in_range("offset", 0, i64::MAX)
            }
            "usersConnection" | "productsConnection" => page_ok(f),
            "orders" | "ordersAggregate" | "ordersConnection" => {
                (f.def.name != "ordersConnection" || page_ok(f))
                    && in_range("first", 0, 1000)
                    && in_range("offset", 0, i64::MAX)
                    && f.arg("userId").is_none_or(|v| id(Some(v)).is_some())
                    && f.arg("minAmount").is_none_or(|v| {
                        v.as_str()
                            .and_then(|s| s.parse::<Decimal>().ok())
                            .is_some_and(|d| d.scale() <= 2 || d.normalize().scale() <= 2)
                    })
            }
            "user" | "order" | "product" => id(f.arg("id")).is_some(),
            "topCustomers" | "productSales" => {
                in_range("days", 1, 3650) && in_range("limit", 1, 100)
            }
            "revenueByDay" => in_range("days", 1, 3650),
            _ => true,
        };
        own && order_ok(f) && f.children.iter().all(edges_ok)
    }

    /// The rows a root list or aggregate over `list` reads before its page: the visible rows
    /// its filter arguments keep, in id order.
    fn root_rows(&self, list: &str, f: &CField) -> Vec<Obj<'a>> {
        let mut rows = self.root_rows_unfiltered(list, f);
        if let Some(w) = f.arg("where") {
            rows.retain(|o| self.matches(*o, w));
        }
        rows
    }

    /// The visible rows of a root list its filter arguments other than `where` keep.
    fn root_rows_unfiltered(&self, list: &str, f: &CField) -> Vec<Obj<'a>> {
        let m = self.model;
        match list {
            "users" => m
                .users
                .iter()
                .filter(|u| self.sees_user(u))
                .map(Obj::User)
                .collect(),
            "products" => m.products.iter().map(Obj::Product).collect(),
            _ => {
                let status = f.arg("status").and_then(parse_status);
                let user = id(f.arg("userId"));
                let min = f
                    .arg("minAmount")
                    .and_then(Json::as_str)
                    .and_then(|s| s.parse::<Decimal>().ok());
                m.orders
                    .iter()
                    .filter(|o| self.sees_order(o))
                    .filter(|o| status.is_none_or(|s| o.status == s))
                    .filter(|o| user.is_none_or(|u| o.user_id == u))
                    .filter(|o| min.is_none_or(|a| o.total_amount >= a))
                    .map(Obj::Order)
                    .collect()
            }
        }
    }

    /// An `XConnection` object over `rows` (the whole list, in list order), with the
    /// selection of `f`; `None` when a non-null field below was null.
    fn connection(
        &self,
        base: Base,
        rows: Vec<Obj<'a>>,
        f: &CField,
        path: &[Json],
        errors: &mut Vec<(Json, &'static str)>,
        statements: &mut usize,
    ) -> Option<Json> {
        let total = rows.len();
        let (shown, next, previous) = page_of(rows, f);
        let order = f.arg("orderBy").map(order_names).unwrap_or_default();
        let cursor = |o: Option<&Obj<'a>>| {
            o.map_or(Json::Null, |o| Json::from(encode_cursor(base, &order, o)))
        };
        let mut out = Map::new();
        for c in &f.children {
            let mut at = path.to_vec();
            at.push(Json::from(c.key.as_str()));
            let v = match c.def.name {
                "__typename" => Json::from(Ty::Conn(base).name()),
                "totalCount" => Json::from(total),
                "pageInfo" => {
                    let mut info = Map::new();
                    for p in &c.children {
                        let v = match p.def.name {
                            "hasNextPage" => Json::from(next),
                            "hasPreviousPage" => Json::from(previous),
                            "startCursor" => cursor(shown.first()),
                            "endCursor" => cursor(shown.last()),
                            _ => Json::from("PageInfo"),
                        };
                        info.insert(p.key.clone(), v);
                    }
                    Json::Object(info)
                }
                // `[X]!`: a row that fails is null in place.
                "nodes" => Json::Array(
                    shown
                        .iter()
                        .enumerate()
                        .map(|(i, o)| {
                            let mut p = at.clone();
                            p.push(Json::from(i));
                            self.object(*o, &c.children, &p, errors, statements)
                                .map_or(Json::Null, Json::Object)
                        })
                        .collect(),
                ),
                // `[XEdge!]!` of `{ node: X! }`: a row that fails nulls the connection.
                _ => {
                    let mut edges = Vec::with_capacity(shown.len());
                    for (i, o) in shown.iter().enumerate() {
                        let mut p = at.clone();
                        p.push(Json::from(i));
                        let mut edge = Map::new();
                        for e in &c.children {
                            let v = match e.def.name {
                                "node" => {
                                    let mut np = p.clone();
                                    np.push(Json::from(e.key.as_str()));
                                    Json::Object(self.object(
                                        *o,
                                        &e.children,
                                        &np,
                                        errors,
                                        statements,
                                    )?)
                                }
                                "cursor" => cursor(Some(o)),
                                _ => Json::from(Ty::EdgeOf(base).name()),
                            };
                            edge.insert(e.key.clone(), v);
                        }
                        edges.push(Json::Object(edge));
                    }
                    Json::Array(edges)
                }
            };
            out.insert(c.key.clone(), v);
        }
        Some(Json::Object(out))
    }

    /// An `XAggregate` object over `rows`, with the selection of `f`.
    fn aggregate(&self, base: Base, rows: &[Obj<'a>], f: &CField) -> Json {
        let mut out = Map::new();
        for c in &f.children {
            let v = match c.def.name {
                "__typename" => Json::from(Ty::Agg(base).name()),
                "count" => Json::from(rows.len()),
                func => {
                    let func = match func {
                        "sum" => Func::Sum,
                        "avg" => Func::Avg,
                        "min" => Func::Min,
                        _ => Func::Max,
                    };
                    let mut inner = Map::new();
                    for leaf in &c.children {
                        let v = match leaf.def.name {
                            "__typename" => Json::from(Ty::Vals(base, func).name()),
                            col => agg_value(func, rows.iter().filter_map(|o| agg_input(o, col))),
                        };
                        inner.insert(leaf.key.clone(), v);
                    }
                    Json::Object(inner)
                }
            };
            out.insert(c.key.clone(), v);
        }
        Json::Object(out)
    }

    /// The access rule of a root field, for this viewer: the code of its refusal, if any.
    fn refused(&self, name: &str) -> Option<&'static str> {
        match (name, self.viewer) {
            (_, Viewer::Admin) => None,
            (
                "users" | "user" | "orders" | "order" | "analytics" | "usersAggregate"
                | "ordersAggregate" | "usersConnection" | "ordersConnection",
                Viewer::Anonymous,
            ) => Some("UNAUTHENTICATED"),
            ("users" | "analytics" | "usersAggregate" | "usersConnection", Viewer::Customer(_)) => {
                Some("FORBIDDEN")
            }
            _ => None,
        }
    }

    fn sees_user(&self, u: &UserRow) -> bool {
        match self.viewer {
            Viewer::Admin => true,
            Viewer::Customer(me) => u.id == me,
            Viewer::Anonymous => false,
        }
    }

    fn sees_order(&self, o: &OrderRow) -> bool {
        match self.viewer {
            Viewer::Admin => true,
            Viewer::Customer(me) => o.user_id == me,
            Viewer::Anonymous => false,
        }
    }

    /// A line is visible when its order is.
    fn sees_item(&self, i: &OrderItemRow) -> bool {
        self.order(i.order_id).is_some()
    }

    fn user(&self, id: i64) -> Option<Obj<'a>> {
        let m = self.model;
        m.users
            .iter()
            .find(|u| u.id == id && self.sees_user(u))
            .map(Obj::User)
    }
    fn order(&self, id: i64) -> Option<Obj<'a>> {
        let m = self.model;
        m.orders
            .iter()
            .find(|o| o.id == id && self.sees_order(o))
            .map(Obj::Order)
    }
    fn product(&self, id: i64) -> Option<Obj<'a>> {
        self.model
            .products
            .iter()
            .find(|p| p.id == id)
            .map(Obj::Product)
    }

    /// A to-many edge's children of one parent with the edge's arguments: the first `first`
    /// in `orderBy` order.
    fn edge(&self, parent: Obj<'a>, f: &CField) -> Vec<Obj<'a>> {
        let mut out = self.edge_all(parent, f);
        if let Some(n) = int(f.arg("first")).map(|n| n.max(0) as usize) {
            out.truncate(n);
        }
        out
    }

    /// Every child of one parent its filters keep, in `orderBy` order (the edge's list, its
    /// connection's list before the page, or its aggregate's rows).
    fn edge_all(&self, parent: Obj<'a>, f: &CField) -> Vec<Obj<'a>> {
        let status = f.arg("status").and_then(parse_status);
        let base = f
            .def
            .name
            .trim_end_matches("Aggregate")
            .trim_end_matches("Connection");
        let mut out = self.related_rows(parent, base);
        out.retain(|o| match (o, status) {
            (Obj::Order(r), Some(s)) => r.status == s,
            _ => true,
        });
        if let Some(w) = f.arg("where") {
            out.retain(|o| self.matches(*o, w));
        }
        sorted(out, f)
    }

    /// The visible rows a to-many relationship of `parent` names, in id order.
    fn related_rows(&self, parent: Obj<'a>, name: &str) -> Vec<Obj<'a>> {
        let m = self.model;
        match (parent, name) {
            (Obj::User(u), "orders") => m
                .orders
                .iter()
                .filter(|o| o.user_id == u.id && self.sees_order(o))
                .map(Obj::Order)
                .collect(),
            (Obj::Order(o), "items") => m
                .items
                .iter()
                .filter(|i| i.order_id == o.id)
                .map(Obj::Item)
                .collect(),
            (Obj::Order(o), "products") => {
                let mut ids: Vec<i64> = m
                    .links
                    .iter()
                    .filter(|l| l.0 == o.id)
                    .map(|l| l.1)
                    .collect();
                ids.sort_unstable();
                ids.into_iter().filter_map(|p| self.product(p)).collect()
            }
            (Obj::Product(p), "orders") => {
                let mut ids: Vec<i64> = m
                    .links
                    .iter()
                    .filter(|l| l.1 == p.id)
                    .map(|l| l.0)
                    .collect();
                ids.sort_unstable();
                ids.into_iter().filter_map(|o| self.order(o)).collect()
            }
            (Obj::Product(p), "orderItems") => m
                .items
                .iter()
                .filter(|i| i.product_id == p.id && self.sees_item(i))
                .map(Obj::Item)
                .collect(),
            (_, other) => panic!("oracle: edge {other}"),
        }
    }

    /// Whether `o` passes the `where` value `w` (the documented semantics, row by row; the
    /// rows a relationship names are those the viewer sees).
    fn matches(&self, o: Obj<'a>, w: &Json) -> bool {
        let Json::Object(fields) = w else {
            return true;
        };
        let many = |v: &Json| -> Vec<Json> {
            match v {
                Json::Array(items) => items.clone(),
                one => vec![one.clone()],
            }
        };
        fields.iter().all(|(name, v)| match (name.as_str(), v) {
            (_, Json::Null) => true,
            ("and", v) => many(v).iter().all(|x| self.matches(o, x)),
            ("or", v) => many(v).iter().any(|x| self.matches(o, x)),
            ("not", v) => !self.matches(o, v),
            (name, v) => match (o, name) {
                (Obj::Order(_), "user") | (Obj::Item(_), "order" | "product") => {
                    self.target(o, name).is_some_and(|t| self.matches(t, v))
                }
                (Obj::User(_), "orders")
                | (Obj::Order(_), "items" | "products")
                | (Obj::Product(_), "orders" | "orderItems") => {
                    let rows = self.related_rows(o, name);
                    let Json::Object(ops) = v else {
                        panic!("oracle: a list filter is an object")
                    };
                    ops.iter().all(|(op, w)| {
                        let any = w.is_null() || rows.iter().any(|r| self.matches(*r, w));
                        match op.as_str() {
                            _ if w.is_null() => true,
                            "some" => any,
                            "none" => !any,
                            other => panic!("oracle: no list operator {other}"),
                        }
                    })
                }
                _ => ops_hold(&filter_val(&o, name), name, v),
            },
        })
    }

    /// A to-one edge's target.
    fn target(&self, parent: Obj<'a>, name: &str) -> Option<Obj<'a>> {
        match (parent, name) {
            (Obj::Order(o), "user") => self.user(o.user_id),
            (Obj::Item(i), "order") => self.order(i.order_id),
            (Obj::Item(i), "product") => self.product(i.product_id),
            _ => None,
        }
    }

    fn batches(&self, rows: &[Obj<'a>], set: &[CField]) -> usize {
        let refs: Vec<&CField> = set.iter().collect();
        self.batches_of(rows, &refs)
    }

    /// Statements of the batches below `rows` for the (merged) selection `set`: to-one edges
    /// are joined (free), each to-many edge with one argument set is one statement when
    /// there are parents, whatever their number.
    fn batches_of(&self, rows: &[Obj<'a>], set: &[&CField]) -> usize {
        // The planner merges by field name and arguments, whatever the response keys.
        let mut groups: Vec<Group<'_>> = Vec::new();
        for f in set {
            if f.def.ty.is_none() {
                continue;
            }
            // A connection given neither `first` nor `last` pages the first 20: the same page.
            let first = match (int(f.arg("first")), int(f.arg("last"))) {
                (None, None) if f.def.name.ends_with("Connection") => (Some(20), None),
                page => page,
            };
            let status = arg_set(f, &["status", "where", "after", "before"]);
            let order = order_keys(f);
            // A connection loads the rows its `edges { node }` and `nodes` select.
            let (children, counted) = if f.def.name.ends_with("Connection") {
                (
                    node_selections(f),
                    f.children.iter().any(|c| c.def.name == "totalCount"),
                )
            } else {
                (f.children.iter().collect(), false)
            };
            match groups.iter_mut().find(|g| {
                g.0.def.name == f.def.name && g.1 == first && g.2 == status && g.3 == order
            }) {
                Some(g) => {
                    g.4.extend(children);
                    g.5 |= counted;
                }
                None => groups.push((f, first, status, order, children, counted)),
            }
        }
        let mut n = 0;
        // Aggregates and connection counts are grouped statements, one per relationship and
        // filter (`status`): an `ordersAggregate` and an `ordersConnection { totalCount }`
        // of the same filter share one.
        let mut counts: Vec<(&str, Json)> = Vec::new();
        for (f, _, _, _, _, counted) in &groups {
            let status = arg_set(f, &["status", "where"]);
            let name = f.def.name;
            let edge = if name.ends_with("Aggregate") {
                name.trim_end_matches("Aggregate")
            } else if *counted {
                name.trim_end_matches("Connection")
            } else {
                continue;
            };
            if !counts.contains(&(edge, status.clone())) {
                counts.push((edge, status));
            }
        }
        if !rows.is_empty() {
            n += counts.len();
        }
        for (f, _, _, _, children, _) in groups {
            let name = f.def.name;
            // A connection is one statement for the pages of all parents; the shown rows are
            // the next parents.
            if name.ends_with("Connection") {
                if rows.is_empty() {
                    continue;
                }
                n += 1;
                let below: Vec<Obj<'a>> = rows
                    .iter()
                    .flat_map(|r| page_of(self.edge_all(*r, f), f).0)
                    .collect();
                n += self.batches_of(&below, &children);
                continue;
            }
            // An aggregate reads no row below (counted above).
            if name.ends_with("Aggregate") {
                continue;
            }
            let below: Vec<Obj<'a>> = if matches!(name, "user" | "order" | "product") {
                rows.iter().filter_map(|r| self.target(*r, name)).collect()
            } else {
                if rows.is_empty() {
                    continue;
                }
                n += 1;
                rows.iter().flat_map(|r| self.edge(*r, f)).collect()
            };
            n += self.batches_of(&below, &children);
        }
        n
    }

    /// A report's rows, computed from the raw rows.
    fn report(&self, f: &CField) -> Vec<Obj<'a>> {
        let m = self.model;
        let status = f
            .arg("status")
            .and_then(parse_status)
            .unwrap_or(OrderStatus::Completed);
        // Reports over a window always get `asOf` from the grammar (absent means "now").
        let end = f
            .arg("asOf")
            .and_then(Json::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let days = int(f.arg("days")).unwrap_or(30);
        let limit = int(f.arg("limit")).unwrap_or(10).max(0) as usize;
        let start = end - Duration::days(days);
        let in_window =
            |o: &OrderRow| o.status == status && o.created_at >= start && o.created_at < end;
        match f.def.name {
            "topCustomers" => {
                let mut by: Vec<(&UserRow, i64, i64)> = Vec::new();
                for u in m.users.iter().filter(|u| u.is_active) {
                    let mine: Vec<&OrderRow> = m
                        .orders
                        .iter()
                        .filter(|o| o.user_id == u.id && in_window(o))
                        .collect();
                    if !mine.is_empty() {
                        let c = mine.iter().map(|o| cents(o.total_amount)).sum();
                        by.push((u, mine.len() as i64, c));
                    }
                }
                by.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.id.cmp(&b.0.id)));
                by.truncate(limit);
                by.into_iter()
                    .map(|(u, n, c)| Obj::Customer(u, n, c))
                    .collect()
            }
            "spendingSummary" => {
                let mut by: Vec<(&UserRow, i64, i64)> = m
                    .users
                    .iter()
                    .filter(|u| u.is_active)
                    .map(|u| {
                        let mine: Vec<&OrderRow> =
                            m.orders.iter().filter(|o| o.user_id == u.id).collect();
                        (
                            u,
                            mine.len() as i64,
                            mine.iter().map(|o| cents(o.total_amount)).sum(),
                        )
                    })
                    .collect();
                by.sort_by(|a, b| {
                    (a.1 == 0)
                        .cmp(&(b.1 == 0))
                        .then(b.2.cmp(&a.2))
                        .then(a.0.id.cmp(&b.0.id))
                });
                let first = int(f.arg("first")).unwrap_or(20).max(0) as usize;
                let offset = int(f.arg("offset")).unwrap_or(0).max(0) as usize;
                by.into_iter()
                    .skip(offset)
                    .take(first)
                    .map(|(u, n, c)| Obj::Customer(u, n, c))
                    .collect()
            }
            "revenueByDay" => {
                let first_day = start.date_naive();
                let last_day = (end - Duration::microseconds(1)).date_naive();
                let mut out = Vec::new();
                let mut day = first_day;
                while day <= last_day {
                    let orders: Vec<&OrderRow> = m
                        .orders
                        .iter()
                        .filter(|o| in_window(o) && o.created_at.date_naive() == day)
                        .collect();
                    let c = orders.iter().map(|o| cents(o.total_amount)).sum();
                    out.push(Obj::Daily(day, orders.len() as i64, c));
                    day = day.succ_opt().expect("a next day");
                }
                out
            }
            "productSales" => {
                let mut by: Vec<(&ProductRow, i64, i64)> = Vec::new();
                for p in &m.products {
                    let mut units = 0;
                    let mut c = 0;
                    let mut any = false;
                    for i in m.items.iter().filter(|i| i.product_id == p.id) {
                        let order = m.orders.iter().find(|o| o.id == i.order_id).expect("order");
                        if in_window(order) {
                            any = true;
                            units += i64::from(i.quantity);
                            c += i64::from(i.quantity) * cents(i.unit_price);
                        }
                    }
                    if any {
                        by.push((p, units, c));
                    }
                }
                by.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.id.cmp(&b.0.id)));
                by.truncate(limit);
                by.into_iter()
                    .map(|(p, u, c)| Obj::Sales(p, u, c))
                    .collect()
            }
            other => panic!("oracle: Analytics.{other}"),
        }
    }
}

/// Fields the planner loads together: one of them, their `first` and `status`, and the
/// sub-selections of all of them.
type Group<'f> = (
    &'f CField,
    (Option<i64>, Option<i64>),
    Json,
    Vec<(String, bool)>,
    Vec<&'f CField>,
    bool,
);

/// The values of some of a field's arguments: its filters (`status`, `where`) and cursors,
/// which the planner batches by.
fn arg_set(f: &CField, names: &[&str]) -> Json {
    Json::Array(
        names
            .iter()
            .map(|n| match *n {
                "where" => filter_of(f),
                "status" => Json::Null,
                n => f.arg(n).cloned().unwrap_or(Json::Null),
            })
            .collect(),
    )
}

/// A field's filter in the one form the server plans it: `status: X` is `where: { status:
/// { eq: X } }` (an `and` of both when both are given), and an empty `where` is no filter.
fn filter_of(f: &CField) -> Json {
    let cond = f
        .arg("where")
        .filter(|w| w.as_object().is_some_and(|m| !m.is_empty()));
    let status = f.arg("status");
    match (status, cond) {
        (None, None) => Json::Null,
        (None, Some(w)) => w.clone(),
        (Some(s), None) => serde_json::json!({ "status": { "eq": s } }),
        (Some(s), Some(w)) => serde_json::json!([{ "status": { "eq": s } }, w]),
    }
}

/// The selections of a connection's rows: its `nodes { ... }` and `edges { node { ... } }`.
fn node_selections(f: &CField) -> Vec<&CField> {
    let mut out = Vec::new();
    for c in &f.children {
        match c.def.name {
            "nodes" => out.extend(c.children.iter()),
            "edges" => {
                for e in c.children.iter().filter(|e| e.def.name == "node") {
                    out.extend(e.children.iter());
                }
            }
            _ => {}
        }
    }
    out
}

/// A connection's page of `rows` (in list order): the rows shown, and whether more follow
/// (`first`) or precede (`last`). Neither given: the first 20.
fn page_of<'a>(mut rows: Vec<Obj<'a>>, f: &CField) -> (Vec<Obj<'a>>, bool, bool) {
    // The slice between the cursors, then the page of it.
    let keys = order_keys(f);
    for (name, keep) in [
        ("after", std::cmp::Ordering::Greater),
        ("before", std::cmp::Ordering::Less),
    ] {
        if let Some((_, _, vals, id)) = f.arg(name).and_then(Json::as_str).and_then(decode_cursor) {
            rows.retain(|o| cmp_cursor(o, &keys, &vals, id) == keep);
        }
    }
    let n = rows.len();
    match (int(f.arg("first")), int(f.arg("last"))) {
        (None, Some(last)) => {
            let k = (last.max(0) as usize).min(n);
            (rows[n - k..].to_vec(), false, n > k)
        }
        (first, _) => {
            let k = (first.unwrap_or(20).max(0) as usize).min(n);
            (rows[..k].to_vec(), n > k, false)
        }
    }
}

/// Whether a connection's page arguments are accepted: `first` or `last` (not both), each
/// within the cap.
fn page_ok(f: &CField) -> bool {
    let ok = |name: &str| int(f.arg(name)).is_none_or(|n| (0..=1000).contains(&n));
    let Some(Ty::Conn(base)) = f.def.ty else {
        return false;
    };
    let order = f
        .arg("orderBy")
        .map(order_names)
        .unwrap_or_default()
        .join(",");
    // A cursor is of this type, made under this order, with a value per key.
    let cursor_ok = |name: &str| {
        f.arg(name).is_none_or(|c| {
            c.as_str()
                .and_then(decode_cursor)
                .is_some_and(|(ty, by, vals, _)| {
                    ty == base.ty().name() && by == order && vals.len() == order_keys(f).len()
                })
        })
    };
    ok("first")
        && ok("last")
        && !(f.arg("first").is_some() && f.arg("last").is_some())
        && cursor_ok("after")
        && cursor_ok("before")
}

/// A value an aggregate reads.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AggIn {
    Cents(i64),
    Int(i64),
    Time(DateTime<Utc>),
}

/// The value of column `field` of a row, as aggregates read it.
fn agg_input(o: &Obj<'_>, field: &str) -> Option<AggIn> {
    Some(match (o, field) {
        (Obj::User(u), "createdAt") => AggIn::Time(u.created_at),
        (Obj::User(u), "updatedAt") => AggIn::Time(u.updated_at),
        (Obj::Order(o), "totalAmount") => AggIn::Cents(cents(o.total_amount)),
        (Obj::Order(o), "createdAt") => AggIn::Time(o.created_at),
        (Obj::Item(i), "quantity") => AggIn::Int(i64::from(i.quantity)),
        (Obj::Item(i), "unitPrice") => AggIn::Cents(cents(i.unit_price)),
        (Obj::Product(p), "price") => AggIn::Cents(cents(p.price)),
        (Obj::Product(p), "stockQuantity") => AggIn::Int(i64::from(p.stock_quantity)),
        _ => return None,
    })
}

/// An aggregate's value over some values: null over none.
fn agg_value(func: Func, values: impl Iterator<Item = AggIn>) -> Json {
    let values: Vec<AggIn> = values.collect();
    let picked = match func {
        Func::Sum => {
            let total: i64 = values
                .iter()
                .map(|v| match v {
                    AggIn::Cents(n) | AggIn::Int(n) => *n,
                    AggIn::Time(_) => 0,
                })
                .sum();
            values.first().map(|v| match v {
                AggIn::Cents(_) => AggIn::Cents(total),
                _ => AggIn::Int(total),
            })
        }
        Func::Avg => {
            // The exact mean, written as a float.
            use rust_decimal::prelude::ToPrimitive as _;
            let total: Decimal = values
                .iter()
                .map(|v| match v {
                    AggIn::Cents(c) => Decimal::new(*c, 2),
                    AggIn::Int(n) => Decimal::from(*n),
                    AggIn::Time(_) => Decimal::ZERO,
                })
                .sum();
            return match values.len() {
                0 => Json::Null,
                n => serde_json::Number::from_f64(
                    (total / Decimal::from(n as i64))
                        .to_f64()
                        .unwrap_or(f64::NAN),
                )
                .map_or(Json::Null, Json::Number),
            };
        }
        Func::Min => values.iter().min().copied(),
        Func::Max => values.iter().max().copied(),
    };
    match picked {
        None => Json::Null,
        Some(AggIn::Cents(c)) => money(c),
        Some(AggIn::Int(n)) => Json::from(n),
        Some(AggIn::Time(t)) => Json::from(t.to_rfc3339()),
    }
}

/// The `(field, descending)` keys of a field's `orderBy` (empty: by id).
fn order_keys(f: &CField) -> Vec<(String, bool)> {
    keys_of(&f.arg("orderBy").map(order_names).unwrap_or_default())
}

/// Whether a field's `orderBy` is accepted: no field twice.
fn order_ok(f: &CField) -> bool {
    let keys = order_keys(f);
    keys.iter()
        .enumerate()
        .all(|(i, (field, _))| keys[..i].iter().all(|(other, _)| other != field))
}

/// A row's value of a sort key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(i64),
    Dec(Decimal),
    Time(DateTime<Utc>),
    Text(String),
}

fn sort_key(o: &Obj<'_>, field: &str) -> SortKey {
    match (o, field) {
        (Obj::User(u), "id") => SortKey::Int(u.id),
        (Obj::User(u), "username") => SortKey::Text(u.username.clone()),
        (Obj::User(u), "email") => SortKey::Text(u.email.clone()),
        (Obj::User(u), "createdAt") => SortKey::Time(u.created_at),
        (Obj::Order(r), "id") => SortKey::Int(r.id),
        (Obj::Order(r), "createdAt") => SortKey::Time(r.created_at),
        (Obj::Order(r), "totalAmount") => SortKey::Dec(r.total_amount),
        (Obj::Order(r), "status") => SortKey::Text(r.status.as_db().to_owned()),
        (Obj::Item(i), "id") => SortKey::Int(i.id),
        (Obj::Item(i), "quantity") => SortKey::Int(i64::from(i.quantity)),
        (Obj::Item(i), "unitPrice") => SortKey::Dec(i.unit_price),
        (Obj::Product(p), "id") => SortKey::Int(p.id),
        (Obj::Product(p), "price") => SortKey::Dec(p.price),
        (Obj::Product(p), "name") => SortKey::Text(p.name.clone()),
        (Obj::Product(p), "sku") => SortKey::Text(p.sku.clone()),
        (Obj::Product(p), "stockQuantity") => SortKey::Int(i64::from(p.stock_quantity)),
        (_, other) => panic!("oracle: no sort key {other}"),
    }
}

/// `rows` in the order of `f`'s `orderBy`, the id breaking ties (stable for equal ids).
fn sorted<'a>(mut rows: Vec<Obj<'a>>, f: &CField) -> Vec<Obj<'a>> {
    let keys = order_keys(f);
    if keys.is_empty() {
        return rows;
    }
    rows.sort_by(|a, b| {
        for (field, desc) in &keys {
            let o = sort_key(a, field).cmp(&sort_key(b, field));
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        sort_key(a, "id").cmp(&sort_key(b, "id"))
    });
    rows
}

/// Whether every to-many edge argument in a sub-selection is accepted.
fn edges_ok(f: &CField) -> bool {
    let own = match f.def.name {
        "orders" => int(f.arg("first")).is_none_or(|n| (0..=1000).contains(&n)),
        name if name.ends_with("Connection") => page_ok(f),
        _ => true,
    };
    own && order_ok(f) && !f.bad_args && f.children.iter().all(edges_ok)
}

// ---------------------------------------------------------------------------------------------
// Filters and cursors: the documented semantics, row by row.

/// How a `where` field of a type is filtered.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum FKind {
    Id,
    Text,
    Int,
    Dec,
    Time,
    Bool,
    Status,
    /// A to-one relationship: a filter of its target.
    One(Ty),
    /// A to-many relationship: `some`/`none` of its rows.
    Many(Ty),
}

/// The fields of `XWhere` the grammar draws (`statusChangedAt` and `role` are not in the
/// rows the oracle reads).
fn filter_fields(ty: Ty) -> &'static [(&'static str, FKind)] {
    match ty {
        Ty::User => &[
            ("id", FKind::Id),
            ("email", FKind::Text),
            ("username", FKind::Text),
            ("isActive", FKind::Bool),
            ("createdAt", FKind::Time),
            ("bio", FKind::Text),
            ("updatedAt", FKind::Time),
            ("orders", FKind::Many(Ty::Order)),
        ],
        Ty::Item => &[
            ("id", FKind::Id),
            ("quantity", FKind::Int),
            ("unitPrice", FKind::Dec),
            ("order", FKind::One(Ty::Order)),
            ("product", FKind::One(Ty::Product)),
        ],
        Ty::Product => &[
            ("id", FKind::Id),
            ("name", FKind::Text),
            ("sku", FKind::Text),
            ("price", FKind::Dec),
            ("stockQuantity", FKind::Int),
            ("orders", FKind::Many(Ty::Order)),
            ("orderItems", FKind::Many(Ty::Item)),
        ],
        _ => &[
            ("id", FKind::Id),
            ("status", FKind::Status),
            ("totalAmount", FKind::Dec),
            ("createdAt", FKind::Time),
            ("user", FKind::One(Ty::User)),
            ("items", FKind::Many(Ty::Item)),
            ("products", FKind::Many(Ty::Product)),
        ],
    }
}

fn base_of(ty: Ty) -> Base {
    match ty {
        Ty::User => Base::User,
        Ty::Item => Base::Item,
        Ty::Product => Base::Product,
        _ => Base::Order,
    }
}

/// Every row of a type.
fn rows_of(m: &Model, base: Base) -> Vec<Obj<'_>> {
    match base {
        Base::User => m.users.iter().map(Obj::User).collect(),
        Base::Order => m.orders.iter().map(Obj::Order).collect(),
        Base::Item => m.items.iter().map(Obj::Item).collect(),
        Base::Product => m.products.iter().map(Obj::Product).collect(),
    }
}

/// The enum names of an `orderBy` value (a list, or one value coerced to a list).
fn order_names(v: &Json) -> Vec<String> {
    match v {
        Json::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Json::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

impl SortKey {
    /// The value as a cursor or a filter literal writes it.
    fn text(&self) -> String {
        match self {
            SortKey::Int(n) => n.to_string(),
            SortKey::Dec(d) => d.to_string(),
            SortKey::Time(t) => t.to_rfc3339(),
            SortKey::Text(t) => t.clone(),
        }
    }
}

/// The `(field, descending)` keys of an order given by its enum names, as the schema
/// names them: `TOTAL_AMOUNT_DESC` is `totalAmount`, descending.
fn keys_of(names: &[String]) -> Vec<(String, bool)> {
    names
        .iter()
        .map(|name| {
            let (base, desc) = match name.strip_suffix("_DESC") {
                Some(b) => (b, true),
                None => (name.strip_suffix("_ASC").unwrap_or(name), false),
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
        })
        .collect()
}

/// A cursor as documented: URL-safe base64 of `[type, orderBy, [key values], id]`.
fn encode_cursor(base: Base, order: &[String], o: &Obj<'_>) -> String {
    use base64::Engine as _;
    let keys = keys_of(order);
    let vals: Vec<Json> = keys
        .iter()
        .map(|(field, _)| match sort_key(o, field) {
            SortKey::Int(n) => Json::from(n),
            SortKey::Text(t) if *field == "status" => Json::from(t.to_uppercase()),
            other => Json::from(other.text()),
        })
        .collect();
    let id = match sort_key(o, "id") {
        SortKey::Int(n) => n,
        _ => 0,
    };
    let text = Json::Array(vec![
        Json::from(base.ty().name()),
        Json::from(order.join(",")),
        Json::Array(vals),
        Json::from(id),
    ])
    .to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A cursor's type, order, key values and id; `None` when it is malformed.
fn decode_cursor(c: &str) -> Option<(String, String, Vec<Json>, i64)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let json: Json = serde_json::from_slice(&bytes).ok()?;
    Some((
        json.get(0)?.as_str()?.to_owned(),
        json.get(1)?.as_str()?.to_owned(),
        json.get(2)?.as_array()?.clone(),
        json.get(3)?.as_i64()?,
    ))
}

/// Where `o` is relative to a cursor's row in the order `keys`.
fn cmp_cursor(o: &Obj<'_>, keys: &[(String, bool)], vals: &[Json], id: i64) -> std::cmp::Ordering {
    for ((field, desc), v) in keys.iter().zip(vals) {
        let mine = sort_key(o, field);
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let theirs = match &mine {
            SortKey::Int(_) => SortKey::Int(v.as_i64().unwrap_or_default()),
            SortKey::Dec(_) => SortKey::Dec(text.parse().unwrap_or_default()),
            SortKey::Time(_) => SortKey::Time(
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
            ),
            SortKey::Text(_) if *field == "status" => SortKey::Text(text.to_lowercase()),
            SortKey::Text(_) => SortKey::Text(text),
        };
        let ord = mine.cmp(&theirs);
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    sort_key(o, "id").cmp(&SortKey::Int(id))
}

/// A field's value as a filter sees it.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum FVal {
    Null,
    Bool(bool),
    Sort(SortKey),
}

fn filter_val(o: &Obj<'_>, field: &str) -> FVal {
    match (o, field) {
        (Obj::User(u), "isActive") => FVal::Bool(u.is_active),
        (Obj::User(u), "updatedAt") => FVal::Sort(SortKey::Time(u.updated_at)),
        (Obj::User(u), "bio") => u
            .bio
            .clone()
            .map_or(FVal::Null, |b| FVal::Sort(SortKey::Text(b))),
        _ => FVal::Sort(sort_key(o, field)),
    }
}

/// The literal `v` as a value of the same type as `like` (of field `field`).
fn lit_like(like: &FVal, field: &str, v: &Json) -> FVal {
    let text = match v {
        Json::String(s) if field == "status" => s.to_lowercase(),
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => return FVal::Bool(*b),
        other => panic!("oracle: a filter value, got {other}"),
    };
    FVal::Sort(match like {
        FVal::Sort(SortKey::Int(_)) => SortKey::Int(text.parse().expect("an integer")),
        FVal::Sort(SortKey::Dec(_)) => SortKey::Dec(text.parse().expect("a decimal")),
        FVal::Sort(SortKey::Time(_)) => SortKey::Time(
            DateTime::parse_from_rfc3339(&text)
                .expect("a time")
                .with_timezone(&Utc),
        ),
        _ => SortKey::Text(text),
    })
}

/// Whether every operator of a field filter holds for `val`.
fn ops_hold(val: &FVal, field: &str, ops: &Json) -> bool {
    let Json::Object(ops) = ops else {
        panic!("oracle: a field filter is an object")
    };
    ops.iter().all(|(op, v)| {
        if v.is_null() {
            return true;
        }
        if op == "isNull" {
            return (*val == FVal::Null) == (*v == Json::Bool(true));
        }
        if *val == FVal::Null {
            return false;
        }
        let lower = |f: &FVal| match f {
            FVal::Sort(SortKey::Text(t)) => t.to_ascii_lowercase(),
            _ => String::new(),
        };
        let like = |v: &Json| lit_like(val, field, v);
        match op.as_str() {
            "eq" => *val == like(v),
            "gt" => *val > like(v),
            "gte" => *val >= like(v),
            "lt" => *val < like(v),
            "lte" => *val <= like(v),
            "in" => match v {
                Json::Array(items) => items.iter().any(|i| *val == like(i)),
                one => *val == like(one),
            },
            "contains" => lower(val).contains(&lower(&like(v))),
            "startsWith" => lower(val).starts_with(&lower(&like(v))),
            other => panic!("oracle: no operator {other}"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Documents written by hand: the examples and the statement-count shapes are read into the
// grammar's tree and evaluated like a drawn operation.

/// Reads a query document (its first operation) with `variables` into an operation of
/// `viewer`: each field looked up by name in the schema above, arguments and directive
/// conditions resolved to their values (variables and their defaults), fragments inlined.
pub fn read(query: &str, variables: &Json, viewer: Viewer) -> Op {
    use async_graphql::parser::types::DocumentOperations;
    let doc = async_graphql::parser::parse_query(query).expect("oracle: the document parses");
    let op = match &doc.operations {
        DocumentOperations::Single(op) => &op.node,
        DocumentOperations::Multiple(ops) => &ops.values().next().expect("an operation").node,
    };
    let mut vars = variables.as_object().cloned().unwrap_or_default();
    for def in &op.variable_definitions {
        let name = def.node.name.node.to_string();
        if let (false, Some(default)) = (vars.contains_key(&name), &def.node.default_value) {
            vars.insert(name, default.node.clone().into_json().unwrap_or(Json::Null));
        }
    }
    let reader = Reader { doc: &doc, vars };
    Op {
        vars: Vec::new(),
        frags: Vec::new(),
        sel: reader.set(Ty::Query, &op.selection_set.node),
        viewer,
    }
}

struct Reader<'d> {
    doc: &'d async_graphql::parser::types::ExecutableDocument,
    vars: Map<String, Json>,
}

impl Reader<'_> {
    /// A variable's value (null when it is not sent and has no default).
    fn var(&self, name: &async_graphql::Name) -> Result<async_graphql::Value, ()> {
        let value = self.vars.get(name.as_str()).cloned().unwrap_or(Json::Null);
        async_graphql::Value::from_json(value).map_err(|_| ())
    }

    fn dirs(
        &self,
        dirs: &[async_graphql::Positioned<async_graphql::parser::types::Directive>],
    ) -> Vec<Dir> {
        dirs.iter()
            .filter_map(|d| {
                let skip = match d.node.name.node.as_str() {
                    "skip" => true,
                    "include" => false,
                    _ => return None,
                };
                let cond = d
                    .node
                    .get_argument("if")
                    .and_then(|v| v.node.clone().into_const_with(|n| self.var(&n)).ok())
                    .and_then(|v| v.into_json().ok())
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                Some(Dir {
                    skip,
                    cond: Val::Lit(Lit::Bool(cond)),
                })
            })
            .collect()
    }

    fn set(&self, ty: Ty, set: &async_graphql::parser::types::SelectionSet) -> Vec<Sel> {
        use async_graphql::parser::types::Selection;
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    let name = f.name.node.as_str();
                    let def = fields(ty)
                        .iter()
                        .find(|d| d.name == name)
                        .unwrap_or_else(|| panic!("oracle: no field {}.{name}", ty.name()));
                    let args = f
                        .arguments
                        .iter()
                        .map(|(n, v)| {
                            let (arg, kind) = def
                                .args
                                .iter()
                                .find(|(a, _)| *a == n.node.as_str())
                                .unwrap_or_else(|| {
                                    panic!("oracle: no argument {name}({})", n.node)
                                });
                            let value = v
                                .node
                                .clone()
                                .into_const_with(|n| self.var(&n))
                                .ok()
                                .and_then(|v| v.into_json().ok())
                                .unwrap_or(Json::Null);
                            (*arg, *kind, Val::Lit(Lit::Input(value)))
                        })
                        .collect();
                    Sel::Field(FieldSel {
                        alias: f.alias.as_ref().map(|a| a.node.to_string()),
                        def,
                        args,
                        dirs: self.dirs(&f.directives),
                        sel: def
                            .ty
                            .map(|t| self.set(t, &f.selection_set.node))
                            .unwrap_or_default(),
                    })
                }
                Selection::FragmentSpread(s) => {
                    let frag = &self.doc.fragments[&s.node.fragment_name.node];
                    let inner = self.set(ty, &frag.node.selection_set.node);
                    Sel::Inline(None, self.dirs(&s.node.directives), inner)
                }
                Selection::InlineFragment(i) => {
                    let inner = self.set(ty, &i.node.selection_set.node);
                    Sel::Inline(None, self.dirs(&i.node.directives), inner)
                }
            })
            .collect()
    }
}
