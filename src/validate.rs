//! Pure input checks for mutations: each returns the cleaned value or a client-safe message.

use crate::db::money::{MAX_CENTS, to_cents};

/// A checked e-mail address, lower-cased so that `Ann@x.io` and `ann@x.io` are one account.
pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let bad = || format!("email: {raw:?} is not a valid e-mail address");
    // Control characters (U+0000 above all, which PostgreSQL cannot store) are refused on
    // both backends alike.
    if email.len() < 3
        || email.len() > 255
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(bad());
    }
    Ok(email)
}

/// A checked user name: 3 to 100 characters of letters, digits, `_`, `.` and `-`.
pub fn username(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let len = name.chars().count();
    if !(3..=100).contains(&len) {
        return Err(format!("username: must be 3 to 100 characters, got {len}"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "username: {c:?} is not allowed (letters, digits, '_', '.', '-')"
        ));
    }
    Ok(name.to_owned())
}

/// A password's length: 8 to 128 characters.
pub fn password(raw: &str) -> Result<(), String> {
    let len = raw.chars().count();
    if !(8..=128).contains(&len) {
        return Err(format!("password: must be 8 to 128 characters, got {len}"));
    }
    Ok(())
}

/// An optional biography: at most 2000 characters, any text but NUL (PostgreSQL text cannot
/// hold U+0000; both backends refuse it alike).
pub fn bio(raw: Option<&str>) -> Result<Option<String>, String> {
    match raw {
        Some(b) if b.chars().count() > 2000 => {
            Err("bio: must be at most 2000 characters".to_owned())
        }
        Some(b) if b.contains('\0') => {
            Err("bio: must not contain the NUL character (U+0000)".to_owned())
        }
        Some(b) => Ok(Some(b.to_owned())),
        None => Ok(None),
    }
}

/// A product row of an import, checked: `row` is its index in the input list.
pub fn product(
    row: usize,
    name: &str,
    sku: &str,
    price: rust_decimal::Decimal,
    stock: i32,
) -> Result<(String, String, i64, i64), String> {
    let at = |msg: String| format!("products[{row}]: {msg}");
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(at("name must be 1 to 255 characters".to_owned()));
    }
    if name.contains('\0') {
        return Err(at(
            "name must not contain the NUL character (U+0000)".to_owned()
        ));
    }
    let sku = sku.trim();
    if sku.is_empty()
        || sku.len() > 100
        || !sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(at(format!(
            "sku {sku:?} must be 1 to 100 letters, digits, '_', '.' or '-'"
        )));
    }
    let cents = to_cents(price)
        .filter(|c| (0..=MAX_CENTS).contains(c))
        .ok_or_else(|| {
            at(format!(
                "price {price} must be 0 to 99999999.99 with at most 2 decimals"
            ))
        })?;
    if stock < 0 {
        return Err(at(format!(
            "stockQuantity must not be negative, got {stock}"
        )));
    }
    Ok((name.to_owned(), sku.to_owned(), cents, i64::from(stock)))
}

/// The lines of an order, checked: not empty, quantities positive, no product twice.
pub fn order_lines(lines: &[(i64, i32)]) -> Result<Vec<(i64, i64)>, String> {
    if lines.is_empty() {
        return Err("items: an order needs at least one item".to_owned());
    }
    if lines.len() > 1000 {
        return Err(format!("items: at most 1000 lines, got {}", lines.len()));
    }
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(lines.len());
    for (i, (product, quantity)) in lines.iter().enumerate() {
        if *quantity <= 0 {
            return Err(format!(
                "items[{i}]: quantity must be at least 1, got {quantity}"
            ));
        }
        if let Some(first) = lines[..i].iter().position(|(p, _)| p == product) {
            return Err(format!(
                "items[{i}]: product {product} is already in items[{first}]; combine the quantities"
            ));
        }
        out.push((*product, i64::from(*quantity)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM "), Ok("ann@example.com".to_owned()));
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.io",
            "a b@x.io",
            "a@x",
            "a@@x.io",
            "a@x..io",
            "a@.x.io",
            "a\0b@x.io",
            "a@x\u{7}.io",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_and_passwords() {
        assert!(username("ann_1.b-c").is_ok());
        assert!(username("an").is_err());
        assert!(username("ann smith").is_err());
        assert!(password("short").is_err());
        assert!(password("long enough").is_ok());
        assert!(bio(Some(&"x".repeat(2001))).is_err());
        assert_eq!(
            bio(Some("a\0b")),
            Err("bio: must not contain the NUL character (U+0000)".to_owned())
        );
        assert!(bio(Some("tab\t \u{1b} é 😀")).is_ok());
    }

    #[test]
    fn order_lines_are_checked() {
        assert!(order_lines(&[]).is_err());
        assert_eq!(order_lines(&[(1, 2), (3, 1)]), Ok(vec![(1, 2), (3, 1)]));
        assert_eq!(
            order_lines(&[(1, 0)]),
            Err("items[0]: quantity must be at least 1, got 0".to_owned())
        );
        assert_eq!(
            order_lines(&[(1, 1), (2, 1), (1, 3)]),
            Err("items[2]: product 1 is already in items[0]; combine the quantities".to_owned())
        );
    }

    #[test]
    fn product_rows_name_their_index() {
        let ok = product(0, "Pen", "PEN-1", rust_decimal::Decimal::new(150, 2), 3);
        assert_eq!(ok, Ok(("Pen".into(), "PEN-1".into(), 150, 3)));
        let err = product(7, "Pen", "PEN 1", rust_decimal::Decimal::new(150, 2), 3);
        assert!(err.is_err_and(|e| e.starts_with("products[7]: sku")));
        assert!(product(1, "Pen", "P", rust_decimal::Decimal::new(1, 3), 0).is_err());
        assert!(product(1, "Pen", "P", rust_decimal::Decimal::new(-1, 0), 0).is_err());
        assert!(product(1, "Pen", "P", rust_decimal::Decimal::ONE, -1).is_err());
        assert!(
            product(2, "P\0n", "P", rust_decimal::Decimal::ONE, 0).is_err_and(
                |e| e == "products[2]: name must not contain the NUL character (U+0000)"
            )
        );
    }
}
