//! `order_items`: the lines of an order, each one product at the price paid.

/// Writes an order's lines with ONE statement into `order_items` (the unit price is read from
/// `products` inside the statement, never taken from a client) and ONE into `order_products`.
pub async fn insert_lines(
    s: &super::Session,
    order_id: i64,
    lines: &[(i64, i64)],
) -> crate::error::AppResult<()> {
    use super::session::Arg;
    let (items, links, args) = match s.backend() {
        super::Backend::Postgres => (
            "insert into order_items (order_id, product_id, quantity, unit_price) \
             select $1, p.id, x.quantity, p.price \
             from unnest($2::int8[], $3::int8[]) as x(id, quantity) join products p on p.id = x.id \
             order by p.id",
            "insert into order_products (order_id, product_id, quantity) \
             select $1, x.id, x.quantity from unnest($2::int8[], $3::int8[]) as x(id, quantity)",
            vec![
                Arg::I64(order_id),
                Arg::Ids(lines.iter().map(|l| l.0).collect()),
                Arg::Ids(lines.iter().map(|l| l.1).collect()),
            ],
        ),
        super::Backend::Sqlite => (
            "insert into order_items (order_id, product_id, quantity, unit_price) \
             select $1, p.id, json_extract(j.value, '$[1]'), p.price \
             from json_each($2) j join products p on p.id = json_extract(j.value, '$[0]') \
             order by p.id",
            "insert into order_products (order_id, product_id, quantity) \
             select $1, json_extract(value, '$[0]'), json_extract(value, '$[1]') from json_each($2)",
            vec![
                Arg::I64(order_id),
                Arg::Text(super::products::pairs_json(lines)),
            ],
        ),
    };
    s.execute("order_items.insert_lines", items.to_owned(), args.clone())
        .await?;
    s.execute("order_products.insert_lines", links.to_owned(), args)
        .await?;
    Ok(())
}
