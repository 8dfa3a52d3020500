//! `products`: what can be ordered, with its current price and stock.

/// A product's price and stock, as an order sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockRow {
    /// Product id.
    pub id: i64,
    /// Its SKU, for messages.
    pub sku: String,
    /// Current price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// Reads (and on PostgreSQL row-locks, in id order, so concurrent orders cannot deadlock)
/// the products of an order. On SQLite the transaction's `BEGIN IMMEDIATE` already excludes
/// other writers.
pub async fn lock_for_order(
    s: &super::Session,
    ids: Vec<i64>,
) -> crate::error::AppResult<Vec<StockRow>> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => {
            "select id, sku, (price * 100)::int8, stock_quantity::int8 from products \
             where id = any($1) order by id for update"
        }
        super::Backend::Sqlite => {
            "select id, sku, price, stock_quantity from products \
             where id in (select value from json_each($1)) order by id"
        }
    };
    s.fetch(
        "products.lock_for_order",
        sql.to_owned(),
        vec![Arg::Ids(ids)],
        |r| {
            Ok(StockRow {
                id: r.i64(0)?,
                sku: r.text(1)?,
                price_cents: r.i64(2)?,
                stock: r.i64(3)?,
            })
        },
    )
    .await
}

/// `[[a, b], ...]` as JSON text, for SQLite's `json_each`.
pub(crate) fn pairs_json(pairs: &[(i64, i64)]) -> String {
    serde_json::Value::from(pairs.iter().map(|(a, b)| vec![*a, *b]).collect::<Vec<_>>()).to_string()
}

/// Takes `quantity` units of each `(product, quantity)` line, only where enough stock is left;
/// gives the number of products updated (fewer than the lines means some stock ran out).
pub async fn take_stock(s: &super::Session, lines: &[(i64, i64)]) -> crate::error::AppResult<u64> {
    use super::session::Arg;
    let (sql, args) = match s.backend() {
        super::Backend::Postgres => (
            "update products p set stock_quantity = p.stock_quantity - x.quantity \
             from unnest($1::int8[], $2::int8[]) as x(id, quantity) \
             where p.id = x.id and p.stock_quantity >= x.quantity",
            vec![
                Arg::Ids(lines.iter().map(|l| l.0).collect()),
                Arg::Ids(lines.iter().map(|l| l.1).collect()),
            ],
        ),
        super::Backend::Sqlite => (
            "with x(id, quantity) as ( \
                 select json_extract(value, '$[0]'), json_extract(value, '$[1]') from json_each($1)) \
             update products set stock_quantity = stock_quantity - \
                 (select x.quantity from x where x.id = products.id) \
             where id in (select id from x) \
               and stock_quantity >= (select x.quantity from x where x.id = products.id)",
            vec![Arg::Text(pairs_json(lines))],
        ),
    };
    s.execute("products.take_stock", sql.to_owned(), args).await
}

/// Puts the stock of an order's items back (when it is cancelled).
pub async fn return_stock(s: &super::Session, order_id: i64) -> crate::error::AppResult<u64> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => {
            "update products p set stock_quantity = p.stock_quantity + i.quantity \
             from order_items i where i.order_id = $1 and i.product_id = p.id"
        }
        super::Backend::Sqlite => {
            "update products set stock_quantity = stock_quantity + \
                 (select sum(i.quantity) from order_items i where i.order_id = $1 and i.product_id = products.id) \
             where id in (select product_id from order_items where order_id = $1)"
        }
    };
    s.execute(
        "products.return_stock",
        sql.to_owned(),
        vec![Arg::I64(order_id)],
    )
    .await
}

/// A product to insert or update, by SKU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductUpsert {
    /// Display name.
    pub name: String,
    /// Unique SKU: the key of the upsert.
    pub sku: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// Inserts or updates (by SKU) a batch of products with ONE statement; gives
/// `(inserted, updated)`. Run inside a transaction: on SQLite the pre-count of existing SKUs
/// is exact because `BEGIN IMMEDIATE` excludes other writers.
pub async fn upsert(
    s: &super::Session,
    rows: &[ProductUpsert],
) -> crate::error::AppResult<(u64, u64)> {
    use super::session::Arg;
    match s.backend() {
        super::Backend::Postgres => {
            // `xmax = 0` holds for a freshly inserted row version, not for an updated one. The
            // flags are counted in the statement: one row back per batch, not one per product.
            let counts = s
                .fetch(
                    "products.upsert",
                    "with up as (\
                         insert into products (name, sku, price, stock_quantity) \
                         select x.name, x.sku, x.cents::numeric / 100, x.stock \
                         from unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) as x(name, sku, cents, stock) \
                         on conflict (sku) do update set name = excluded.name, price = excluded.price, \
                             stock_quantity = excluded.stock_quantity \
                         returning (xmax = 0) as inserted) \
                     select count(*) filter (where inserted), count(*) filter (where not inserted) from up"
                        .to_owned(),
                    vec![
                        Arg::Texts(rows.iter().map(|r| r.name.clone()).collect()),
                        Arg::Texts(rows.iter().map(|r| r.sku.clone()).collect()),
                        Arg::Ids(rows.iter().map(|r| r.price_cents).collect()),
                        Arg::Ids(rows.iter().map(|r| r.stock).collect()),
                    ],
                    |r| Ok((r.i64(0)?, r.i64(1)?)),
                )
                .await?;
            let (inserted, updated) = counts.first().copied().unwrap_or((0, 0));
            Ok((inserted as u64, updated as u64))
        }
        super::Backend::Sqlite => {
            let json = serde_json::Value::from(
                rows.iter()
                    .map(|r| serde_json::json!([r.name, r.sku, r.price_cents, r.stock]))
                    .collect::<Vec<_>>(),
            )
            .to_string();
            let existing = s
                .fetch(
                    "products.count_by_skus",
                    "select count(*) from products \
                     where sku in (select json_extract(value, '$[1]') from json_each($1))"
                        .to_owned(),
                    vec![Arg::Text(json.clone())],
                    |r| r.i64(0),
                )
                .await?;
            let existing = existing.first().copied().unwrap_or(0) as u64;
            // `where true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
            let written = s
                .execute(
                    "products.upsert",
                    "insert into products (name, sku, price, stock_quantity) \
                     select json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                            json_extract(value, '$[2]'), json_extract(value, '$[3]') \
                     from json_each($1) where true \
                     on conflict (sku) do update set name = excluded.name, price = excluded.price, \
                         stock_quantity = excluded.stock_quantity"
                        .to_owned(),
                    vec![Arg::Text(json)],
                )
                .await?;
            Ok((written.saturating_sub(existing), existing))
        }
    }
}
