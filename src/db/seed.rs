//! Deterministic demo data, written with bulk statements: `COPY` on PostgreSQL, and on SQLite
//! one `insert ... select ... from json_each($1)` per batch (one parameter, any row count).
//! Never a statement per row.
//!
//! Every value is a pure function of the row's position (a SplitMix64 hash), so the same
//! arguments give the same data, apart from timestamps, which are spread over the 90 days before
//! the anchor (midnight UTC of the day of seeding) so that date-window analytics find data.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::Backend;
use super::money::from_cents;
use super::session::{Arg, Session, sqlite_ts};
use crate::entities::Entity;
use crate::error::{AppError, AppResult};

/// How much to generate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SeedSpec {
    /// Users to create.
    pub users: u64,
    /// Orders per user.
    pub orders_per_user: u64,
    /// Items per order (each a distinct product; at most `products`).
    pub items_per_order: u64,
    /// Products to create.
    pub products: u64,
}

impl SeedSpec {
    /// The small data set loaded into an empty development database.
    pub const DEMO: SeedSpec = SeedSpec {
        users: 50,
        orders_per_user: 4,
        items_per_order: 3,
        products: 40,
    };

    /// Orders in total.
    pub fn orders(&self) -> u64 {
        self.users * self.orders_per_user
    }

    /// Rows written in total (users, products, orders, items, order_products).
    pub fn total_rows(&self) -> u64 {
        self.users + self.products + self.orders() * (1 + 2 * self.items_per_order)
    }
}

/// What was written.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Users written.
    pub users: u64,
    /// Products written.
    pub products: u64,
    /// Orders written.
    pub orders: u64,
    /// Order items written (and as many `order_products` rows).
    pub items: u64,
}

/// SplitMix64: a fast, well-mixed hash of a position.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The price of product `id`, in cents: 1.00 to 499.99.
fn product_price(id: u64) -> i64 {
    100 + (mix(id) % 49_900) as i64
}

fn order_status(order_id: u64) -> &'static str {
    match mix(order_id ^ 0x5157) % 100 {
        0..=59 => "completed",
        60..=74 => "shipped",
        75..=89 => "pending",
        _ => "cancelled",
    }
}

/// Rows being written for one bulk statement, in the backend's format.
struct Rows {
    backend: Backend,
    out: String,
    count: u64,
    fields: usize,
}

impl Rows {
    fn new(backend: Backend) -> Self {
        Rows {
            backend,
            out: String::with_capacity(1 << 20),
            count: 0,
            fields: 0,
        }
    }

    fn sep(&mut self) {
        if self.fields == 0 {
            if self.backend == Backend::Sqlite {
                self.out.push(if self.count == 0 { '[' } else { ',' });
                self.out.push('[');
            }
        } else {
            self.out.push(if self.backend == Backend::Postgres {
                '\t'
            } else {
                ','
            });
        }
        self.fields += 1;
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.out, "{v}");
        self
    }

    fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        match self.backend {
            Backend::Postgres => {
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '\t' => self.out.push_str("\\t"),
                        '\n' => self.out.push_str("\\n"),
                        '\r' => self.out.push_str("\\r"),
                        c => self.out.push(c),
                    }
                }
            }
            Backend::Sqlite => {
                let _ = write!(self.out, "{}", serde_json::Value::from(v));
            }
        }
        self
    }

    fn money(&mut self, cents: i64) -> &mut Self {
        match self.backend {
            Backend::Postgres => {
                self.sep();
                let _ = write!(self.out, "{}", from_cents(cents));
                self
            }
            Backend::Sqlite => self.int(cents),
        }
    }

    fn ts(&mut self, t: DateTime<Utc>) -> &mut Self {
        let s = sqlite_ts(t);
        match self.backend {
            Backend::Postgres => {
                self.sep();
                self.out.push_str(&s);
                self
            }
            Backend::Sqlite => self.text(&s),
        }
    }

    fn end(&mut self) {
        match self.backend {
            Backend::Postgres => self.out.push('\n'),
            Backend::Sqlite => self.out.push(']'),
        }
        self.fields = 0;
        self.count += 1;
    }

    /// Writes the rows into `table` and starts a new batch.
    async fn flush(&mut self, s: &Session, table: &'static str, columns: &[&str]) -> AppResult<()> {
        if self.count == 0 {
            return Ok(());
        }
        let cols = columns.join(", ");
        match self.backend {
            Backend::Postgres => {
                let data = std::mem::take(&mut self.out).into_bytes();
                s.copy_in(table, format!("copy {table} ({cols}) from stdin"), data)
                    .await?;
            }
            Backend::Sqlite => {
                self.out.push(']');
                let picks: Vec<String> = (0..columns.len())
                    .map(|i| format!("json_extract(value, '$[{i}]')"))
                    .collect();
                let sql = format!(
                    "insert into {table} ({cols}) select {} from json_each($1)",
                    picks.join(", ")
                );
                s.execute(table, sql, vec![Arg::Text(std::mem::take(&mut self.out))])
                    .await?;
            }
        }
        self.out.reserve(1 << 20);
        self.count = 0;
        Ok(())
    }
}

const USER_COLS: &[&str] = &[
    "id",
    "email",
    "username",
    "password_hash",
    "created_at",
    "updated_at",
    "bio",
];
const PRODUCT_COLS: &[&str] = &["id", "name", "sku", "price", "stock_quantity"];
const ORDER_COLS: &[&str] = &["id", "user_id", "status", "total_amount", "created_at"];
const ITEM_COLS: &[&str] = &["id", "order_id", "product_id", "quantity", "unit_price"];
const LINK_COLS: &[&str] = &["order_id", "product_id", "quantity"];

/// Rows per bulk statement.
const BATCH_ROWS: u64 = 50_000;

async fn join_copy(handle: tokio::task::JoinHandle<AppResult<()>>) -> AppResult<()> {
    handle.await.map_err(AppError::internal)?
}

/// Whether the database has no users, products or orders yet.
pub async fn is_empty(s: &Session) -> AppResult<bool> {
    let n = s
        .fetch(
            "seed.is_empty",
            "select (select count(*) from (select 1 from users limit 1) u) \
             + (select count(*) from (select 1 from products limit 1) p) \
             + (select count(*) from (select 1 from orders limit 1) o)"
                .to_owned(),
            vec![],
            |r| r.i64(0),
        )
        .await?;
    Ok(n.first().copied().unwrap_or(0) == 0)
}

/// Writes the data set described by `spec` into an empty database. `progress` is called with
/// the number of rows written so far.
pub async fn seed(
    s: &Session,
    spec: SeedSpec,
    mut progress: impl FnMut(u64),
) -> AppResult<SeedReport> {
    check_spec(&spec)?;
    if !is_empty(s).await? {
        return Err(AppError::bad_input(
            "the database already has data; seed an empty database",
        ));
    }
    let anchor = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    let mut written = write_products(s, &spec, &mut progress).await?;
    written += write_users(s, &spec, anchor, written, &mut progress).await?;
    write_orders(s, &spec, anchor, written, &mut progress).await?;
    if s.backend() == Backend::Postgres {
        settle_postgres(s).await?;
    }
    Ok(SeedReport {
        users: spec.users,
        products: spec.products,
        orders: spec.orders(),
        items: spec.orders() * spec.items_per_order,
    })
}

/// Refuses a data set that cannot be written.
fn check_spec(spec: &SeedSpec) -> AppResult<()> {
    if spec.items_per_order > spec.products {
        return Err(AppError::bad_input(format!(
            "--items-per-order ({}) cannot exceed --products ({}): an order's items are distinct products",
            spec.items_per_order, spec.products
        )));
    }
    if spec.orders_per_user > 0 && spec.items_per_order == 0 {
        return Err(AppError::bad_input("an order needs at least one item"));
    }
    Ok(())
}

/// Writes the products; gives how many rows it wrote.
async fn write_products(
    s: &Session,
    spec: &SeedSpec,
    progress: &mut impl FnMut(u64),
) -> AppResult<u64> {
    let backend = s.backend();
    let mut written = 0u64;
    let mut rows = Rows::new(backend);
    for id in 1..=spec.products {
        rows.int(id as i64)
            .text(&format!("Product {id}"))
            .text(&format!("SKU-{id:07}"))
            .money(product_price(id))
            .int(1_000 + (mix(id ^ 0xA11) % 9_000) as i64)
            .end();
        if rows.count == BATCH_ROWS {
            written += rows.count;
            rows.flush(s, "products", PRODUCT_COLS).await?;
            progress(written);
        }
    }
    written += rows.count;
    rows.flush(s, "products", PRODUCT_COLS).await?;

    Ok(written)
}

/// Writes the users (`before` rows were written before them, for `progress`); gives how many
/// rows it wrote.
async fn write_users(
    s: &Session,
    spec: &SeedSpec,
    anchor: DateTime<Utc>,
    before: u64,
    progress: &mut impl FnMut(u64),
) -> AppResult<u64> {
    let mut rows = Rows::new(s.backend());
    let mut written = 0u64;
    for id in 1..=spec.users {
        let created = anchor - Duration::seconds((mix(id ^ 0xC0FFEE) % (365 * 86_400)) as i64);
        // "!" is not a valid password hash: demo users cannot log in.
        rows.int(id as i64)
            .text(&format!("user{id}@example.com"))
            .text(&format!("user{id}"))
            .text("!")
            .ts(created)
            .ts(created)
            .text(&format!("Demo customer number {id}."))
            .end();
        if rows.count == BATCH_ROWS {
            written += rows.count;
            rows.flush(s, "users", USER_COLS).await?;
            progress(before + written);
        }
    }
    written += rows.count;
    rows.flush(s, "users", USER_COLS).await?;
    progress(before + written);

    Ok(written)
}

/// Writes the orders with their items and links (`written` rows were written before them,
/// for `progress`).
async fn write_orders(
    s: &Session,
    spec: &SeedSpec,
    anchor: DateTime<Utc>,
    mut written: u64,
    progress: &mut impl FnMut(u64),
) -> AppResult<()> {
    let backend = s.backend();
    let mut rows = Rows::new(backend);
    // Orders first, then their items and links, a chunk of users at a time: the rows of a
    // chunk reference only orders already written.
    let mut items = Rows::new(backend);
    let mut links = Rows::new(backend);
    let users_per_chunk = (BATCH_ROWS / spec.orders_per_user.max(1)).max(1);
    let mut in_flight: Option<tokio::task::JoinHandle<AppResult<()>>> = None;
    let mut user = 1;
    while user <= spec.users {
        let last = (user + users_per_chunk - 1).min(spec.users);
        for u in user..=last {
            for k in 0..spec.orders_per_user {
                let order_id = (u - 1) * spec.orders_per_user + k + 1;
                let start = mix(order_id) % spec.products.max(1);
                let mut total = 0i64;
                for m in 0..spec.items_per_order {
                    let product = (start + m) % spec.products + 1;
                    let quantity = 1 + (mix(order_id ^ (m << 40)) % 3) as i64;
                    let price = product_price(product);
                    total += price * quantity;
                    let item_id = (order_id - 1) * spec.items_per_order + m + 1;
                    items
                        .int(item_id as i64)
                        .int(order_id as i64)
                        .int(product as i64)
                        .int(quantity)
                        .money(price)
                        .end();
                    links
                        .int(order_id as i64)
                        .int(product as i64)
                        .int(quantity)
                        .end();
                }
                let created =
                    anchor - Duration::seconds((mix(order_id ^ 0xDA7E) % (90 * 86_400)) as i64);
                rows.int(order_id as i64)
                    .int(u as i64)
                    .text(order_status(order_id))
                    .money(total)
                    .ts(created)
                    .end();
            }
        }
        written += rows.count + items.count + links.count;
        rows.flush(s, "orders", ORDER_COLS).await?;
        if backend == Backend::Postgres {
            // Pipelined: this chunk's items and links are copied on two more connections
            // while the next chunk is generated and its orders copied (items reference
            // orders, so the orders of a chunk always land first).
            if let Some(previous) = in_flight.take() {
                join_copy(previous).await?;
            }
            let mut it = std::mem::replace(&mut items, Rows::new(backend));
            let mut li = std::mem::replace(&mut links, Rows::new(backend));
            let s2 = s.clone();
            in_flight = Some(tokio::spawn(async move {
                let s3 = s2.clone();
                tokio::try_join!(
                    it.flush(&s2, "order_items", ITEM_COLS),
                    li.flush(&s3, "order_products", LINK_COLS)
                )
                .map(|_| ())
            }));
        } else {
            items.flush(s, "order_items", ITEM_COLS).await?;
            links.flush(s, "order_products", LINK_COLS).await?;
        }
        progress(written);
        user = last + 1;
    }
    if let Some(previous) = in_flight.take() {
        join_copy(previous).await?;
    }

    Ok(())
}

/// On PostgreSQL, after explicit ids were written: the sequences moved past them, and the
/// tables vacuumed and analysed.
async fn settle_postgres(s: &Session) -> AppResult<()> {
    // Explicit ids were written: move the sequences past them; then vacuum, so hint bits
    // and the visibility map are set (no first-read writes, index-only scans possible),
    // and refresh the planner's statistics so the first queries get good plans.
    for entity in Entity::ALL {
        let table = entity.desc().table;
        s.fetch(
            "seed.setval",
            format!(
                "select setval(pg_get_serial_sequence('{table}', 'id'), \
                     coalesce((select max(id) from {table}), 0) + 1, false)"
            ),
            vec![],
            |r| r.i64(0),
        )
        .await?;
    }
    // One table per connection, side by side: the big three take about as long as the
    // largest alone.
    let vacuums = Entity::tables().into_iter().map(|t| {
        // VACUUM cannot run inside a transaction, and behind a transaction pooler every
        // statement gets one: there, the planner statistics only.
        let sql = if s.db().pooled() {
            format!("analyze {t}")
        } else {
            format!("vacuum (analyze) {t}")
        };
        s.execute("seed.vacuum", sql, vec![])
    });
    futures_util::future::try_join_all(vacuums).await?;
    Ok(())
}
