//! The model: the whole database read naively into memory, one plain `select` per table. The
//! oracle (`oracle.rs`) answers from these rows alone, row by row (the lesson's lazy loading,
//! with no SQL at all): every statement-count test, every example written by hand and the
//! differential test compare the server's answer with the oracle's, so batching can never
//! change an answer unnoticed.

use crate::rows::order_items::{self, OrderItemRow};
use crate::rows::orders::{self, OrderRow};
use crate::rows::products::{self, ProductRow};
use crate::rows::users::{self, UserRow};
use eagerql::db::columns::Cols;
use eagerql::db::{Backend, Db, Session};
use serde_json::Value as Json;

/// Every row of the database.
#[derive(Clone)]
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

    /// Answers `query` with `variables`, as `data`: the oracle's answer for the viewer this
    /// model is of (a customer's own rows after [`Model::as_customer`], else an
    /// administrator).
    pub fn eval(&self, query: &str, variables: &Json) -> Json {
        self.expect(query, variables).data
    }

    /// The oracle's whole expectation for `query`: data, errors and the statement count the
    /// plan rules predict.
    pub fn expect(&self, query: &str, variables: &Json) -> crate::oracle::Expected {
        let viewer = self.me.map_or(
            crate::oracle::Viewer::Admin,
            crate::oracle::Viewer::Customer,
        );
        crate::oracle::evaluate(&crate::oracle::read(query, variables, viewer), self)
    }
}

fn must<T>(r: Result<T, eagerql::error::AppError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("reading the rows of {what}: {}", e.detail()))
}
