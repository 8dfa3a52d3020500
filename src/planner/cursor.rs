//! Connection pages and their keyset cursors.
//!
//! A cursor names a position in a list ordered by an `orderBy` of an entity: the values of
//! the row's sort keys and its id (the final tie-breaker), so a page after it is
//! `WHERE (keys, id) > (values)` in that order, never an `OFFSET`, and stays stable while rows
//! are inserted. The text is opaque to clients: URL-safe base64 of a JSON array
//! `[type, order, [sort key values], id]`, where `order` is the `orderBy` values joined by
//! commas (empty for the default order). A cursor is valid only for lists of the same type in
//! the same order; anything else is refused.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{PlanError, SortKeys};
use crate::entities::{Entity, Kind, Row, Val};

/// Page size of a connection given neither `first` nor `last`.
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// A decoded cursor: the sort key values of a row, then its id. Equal and hashed by its text.
#[derive(Clone, Debug)]
pub struct Cursor {
    raw: Arc<str>,
    /// The values of the sort keys, in key order, then [`Val::Int`] of the id.
    pub values: Arc<[Val]>,
}

impl PartialEq for Cursor {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Cursor {}

impl std::hash::Hash for Cursor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

/// Which slice of a list a connection asks for (the Relay cursor connections algorithm):
/// the rows after `after` and before `before`, then the first `size` of them, or the last
/// `size` when `backward` (`last`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    /// `first` or `last`.
    pub size: i64,
    /// `last` was given: the page is the end of the slice.
    pub backward: bool,
    /// Only rows after this one.
    pub after: Option<Cursor>,
    /// Only rows before this one.
    pub before: Option<Cursor>,
}

impl Page {
    /// The rows a page's statement reads (per parent, in a batch): the page's, and one more,
    /// the look-ahead row that tells whether more rows follow in the page's direction
    /// (`hasNextPage`, or `hasPreviousPage` for `last`). The look-ahead row is never shown and
    /// nothing below it is loaded ([`Page::shows`]).
    pub fn rows_read(&self) -> i64 {
        self.size.saturating_add(1)
    }

    /// Whether the `n`th row read (from 0) is shown: rows past the page's size are the
    /// look-ahead row.
    pub fn shows(&self, n: usize) -> bool {
        n < self.shown_of(n.saturating_add(1))
    }

    /// Of `read` rows read for the page, how many are shown (the page's size at most).
    pub fn shown_of(&self, read: usize) -> usize {
        read.min(usize::try_from(self.size).unwrap_or(0))
    }

    /// Whether more rows follow the page in its direction, `read` rows having been read.
    pub fn more(&self, read: usize) -> bool {
        read > self.shown_of(read)
    }

    /// Reads `first`, `last`, `after` and `before` (each `None` when absent) of a list of
    /// `entity` ordered by `order`; `what` names the field in messages.
    pub fn read(
        entity: Entity,
        order: SortKeys,
        first: Option<i64>,
        last: Option<i64>,
        after: Option<&str>,
        before: Option<&str>,
        what: &str,
    ) -> Result<Page, PlanError> {
        let (size, backward) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(PlanError(format!(
                    "{what}: give `first` or `last`, not both"
                )));
            }
            (Some(n), None) => (n, false),
            (None, Some(n)) => (n, true),
            (None, None) => (DEFAULT_PAGE_SIZE, false),
        };
        if size < 0 {
            let arg = if backward { "last" } else { "first" };
            return Err(PlanError(format!(
                "{what}: `{arg}` must not be negative, got {size}"
            )));
        }
        let decode = |raw: Option<&str>, arg: &str| {
            raw.map(|raw| Cursor::decode(entity, order, raw, &format!("{what}: `{arg}`")))
                .transpose()
        };
        Ok(Page {
            size,
            backward,
            after: decode(after, "after")?,
            before: decode(before, "before")?,
        })
    }
}

/// The text of `order`'s keys: `CREATED_AT_DESC,ID_ASC` (empty: by id).
pub fn order_text(entity: Entity, order: SortKeys) -> String {
    let values = entity.sort_values();
    order
        .keys()
        .filter_map(|(col, desc)| {
            values
                .iter()
                .find(|(_, c, d)| *c == col && *d == desc)
                .map(|(name, _, _)| name.as_str())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn val_json(v: &Val) -> Json {
    match v {
        Val::Int(n) => Json::from(*n),
        Val::Text(s) => Json::from(&**s),
        Val::Time(t) => Json::from(t.to_rfc3339()),
        Val::Money(d) => Json::from(d.to_string()),
        Val::Enum(e, i) => Json::from(e.values[usize::from(*i)].0),
        Val::Bool(b) => Json::from(*b),
        _ => Json::Null,
    }
}

fn json_val(kind: Kind, v: &Json) -> Option<Val> {
    Some(match (kind, v) {
        (Kind::Id | Kind::Int, Json::Number(n)) => Val::Int(n.as_i64()?),
        (Kind::Text, Json::String(s)) if !s.contains('\0') => Val::Text(s.as_str().into()),
        (Kind::DateTime, Json::String(s)) => {
            Val::Time(DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc))
        }
        (Kind::Money, Json::String(s)) => {
            let d = s.parse().ok()?;
            crate::money::to_cents(d)?;
            Val::Money(d)
        }
        (Kind::Enum(e), Json::String(s)) => Val::Enum(e, e.by_name(s)?),
        _ => return None,
    })
}

/// The cursor of `row` in a list of its entity ordered by `order`, whose text is `order_text`
/// (of [`order_text`], computed once per list). The row must hold the sort columns:
/// connection loads always read them.
pub fn encode(order: SortKeys, order_text: &str, row: &Row) -> String {
    let entity = row.entity;
    let keys: Vec<Json> = order
        .keys()
        .map(|(col, _)| val_json(row.get(col)))
        .collect();
    let text = Json::Array(vec![
        Json::from(entity.desc().name),
        Json::from(order_text),
        Json::Array(keys),
        Json::from(row.id()),
    ])
    .to_string();
    URL_SAFE_NO_PAD.encode(text)
}

/// The cursor of the row `id` in a list of `entity` in the default order (by id).
pub fn of_id(entity: Entity, id: i64) -> String {
    let text = Json::Array(vec![
        Json::from(entity.desc().name),
        Json::from(""),
        Json::Array(Vec::new()),
        Json::from(id),
    ])
    .to_string();
    URL_SAFE_NO_PAD.encode(text)
}

impl Cursor {
    /// Reads a cursor of a list of `entity` ordered by `order`.
    pub fn decode(
        entity: Entity,
        order: SortKeys,
        raw: &str,
        what: &str,
    ) -> Result<Cursor, PlanError> {
        let bad = |why: &str| PlanError(format!("{what} is not a valid cursor here: {why}"));
        if raw.len() > 4096 {
            return Err(bad("it is too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| bad("it is malformed"))?;
        let json: Json = serde_json::from_slice(&bytes).map_err(|_| bad("it is malformed"))?;
        let Some([ty, ord, keys, id]) = json
            .as_array()
            .map(Vec::as_slice)
            .and_then(|a| <&[Json; 4]>::try_from(a).ok())
        else {
            return Err(bad("it is malformed"));
        };
        if ty.as_str() != Some(entity.desc().name) {
            return Err(bad(&format!(
                "it was made for another type, not for {} lists",
                entity.desc().name
            )));
        }
        let expected = order_text(entity, order);
        if ord.as_str() != Some(expected.as_str()) {
            return Err(bad(&format!(
                "it was made under another `orderBy` ({}), not under this one ({})",
                ord.as_str().filter(|s| !s.is_empty()).unwrap_or("by id"),
                if expected.is_empty() {
                    "by id"
                } else {
                    &expected
                }
            )));
        }
        let cols = entity.desc().columns;
        let keys = keys.as_array().ok_or_else(|| bad("it is malformed"))?;
        let wanted: Vec<(usize, bool)> = order.keys().collect();
        if keys.len() != wanted.len() {
            return Err(bad("it is malformed"));
        }
        let mut values = Vec::with_capacity(keys.len() + 1);
        for ((col, _), v) in wanted.iter().zip(keys) {
            values.push(json_val(cols[*col].kind, v).ok_or_else(|| bad("it is malformed"))?);
        }
        values.push(Val::Int(id.as_i64().ok_or_else(|| bad("it is malformed"))?));
        Ok(Cursor {
            raw: raw.into(),
            values: values.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_is_refused_under_another_order() {
        let order = SortKeys::parse(Entity::Order, ["CREATED_AT_DESC"], "t").expect("order");
        let at = Entity::Order.column("createdAt").expect("column");
        let time = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123456+00:00")
            .expect("time")
            .with_timezone(&Utc);
        let row = Row {
            entity: Entity::Order,
            mask: 1 | (1 << at),
            vals: vec![Val::Int(42), Val::Time(time)].into_boxed_slice(),
        };
        let text = encode(order, &order_text(Entity::Order, order), &row);
        let c = Cursor::decode(Entity::Order, order, &text, "t").expect("decodes");
        assert_eq!(&*c.values, &[Val::Time(time), Val::Int(42)]);
        let other = SortKeys::parse(Entity::Order, ["TOTAL_AMOUNT_ASC"], "t").expect("order");
        assert!(Cursor::decode(Entity::Order, other, &text, "t").is_err());
        assert!(Cursor::decode(Entity::User, order, &text, "t").is_err());
        assert!(Cursor::decode(Entity::Order, order, "not a cursor", "t").is_err());
        assert!(Cursor::decode(Entity::Order, order, &URL_SAFE_NO_PAD.encode("[1]"), "t").is_err());
    }
}
