//! How a described column is read on each backend (so that both hand Rust the same types),
//! and how a row of selected columns is decoded by the columns' kinds.

use super::Backend;
use super::money::from_cents;
use super::session::DbRow;
use crate::entities::{Column, Entity, Kind, Row, Val};
use crate::model::OrderStatus;

/// Writes the select-list expression reading `col` of the table aliased `alias` to `out`:
/// money as integer cents (`numeric(10,2) * 100` on PostgreSQL; SQLite stores cents), 32-bit
/// integers widened.
pub(crate) fn expr(out: &mut String, col: &Column, backend: Backend, alias: &str) {
    let (before, after) = match (backend, col.kind) {
        (Backend::Postgres, Kind::Money) => ("(", " * 100)::int8"),
        (Backend::Postgres, Kind::Int) => ("", "::int8"),
        _ => ("", ""),
    };
    out.push_str(before);
    out.push_str(alias);
    out.push('.');
    out.push_str(col.name);
    out.push_str(after);
}

/// Decodes the columns of `entity` selected by `mask` (bit `i`: column `i`), read from
/// position `*at` of the result row on; `*at` moves past them. Only the selected columns are
/// kept (see [`Row::get`]).
pub(crate) fn decode_row(
    entity: Entity,
    mask: u32,
    r: &dyn DbRow,
    at: &mut usize,
) -> Result<Row, sqlx::Error> {
    let cols = entity.desc().columns;
    let mask = mask & (u32::MAX >> (32 - cols.len().min(32)));
    // One allocation of the exact size (a `collect` through `Result` cannot know it), holding
    // only the columns read.
    let mut vals = Vec::with_capacity(mask.count_ones() as usize);
    for (i, col) in cols.iter().enumerate() {
        if mask & (1 << i) != 0 {
            let p = *at;
            *at += 1;
            vals.push(read(col, r, p)?);
        }
    }
    Ok(Row {
        entity,
        mask,
        vals: vals.into_boxed_slice(),
    })
}

/// Reads a stored enum value (text at position `p`, of column `column`) with `parse`; a value
/// it does not know is a decoding error naming the column.
pub fn stored<T>(
    r: &dyn DbRow,
    p: usize,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    let text = r.text(p)?;
    parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("unknown {column} {text:?}").into(),
    })
}

/// Reads column `col` at position `p` of the result row.
#[inline]
fn read(col: &Column, r: &dyn DbRow, p: usize) -> Result<Val, sqlx::Error> {
    Ok(match col.kind {
        Kind::Id | Kind::Int => Val::Int(r.i64(p)?),
        Kind::Text => Val::Text(r.text(p)?.into_boxed_str()),
        Kind::OptText => r
            .opt_text(p)?
            .map_or(Val::Null, |t| Val::Text(t.into_boxed_str())),
        Kind::Bool => Val::Bool(r.bool(p)?),
        Kind::DateTime => Val::Time(r.ts(p)?),
        Kind::OptDateTime => r.opt_ts(p)?.map_or(Val::Null, Val::Time),
        Kind::Money => Val::Money(from_cents(r.i64(p)?)),
        Kind::Enum(e) => Val::Enum(e, stored(r, p, col.name, |t| e.by_stored(t))?),
        Kind::OptEnum(e) => match r.opt_text(p)? {
            None => Val::Null,
            Some(t) => Val::Enum(
                e,
                e.by_stored(&t).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: col.name.into(),
                    source: format!("unknown {} {t:?}", col.name).into(),
                })?,
            ),
        },
    })
}

/// Reads a full row's columns one after another, typed (for plain `select`s outside the
/// plan, such as a test's independent reading of whole tables).
pub struct Cols<'a> {
    row: &'a dyn DbRow,
    mask: u32,
    /// Index in the load list of the next column.
    next: u32,
    /// Position in the result row of the next selected column.
    at: usize,
}

impl<'a> Cols<'a> {
    /// Every column of the load list, from the row's first column on (a full-row read).
    pub fn all(row: &'a dyn DbRow) -> Self {
        Cols {
            row,
            mask: u32::MAX,
            next: 0,
            at: 0,
        }
    }

    fn take(&mut self) -> Option<usize> {
        let selected = self.mask & (1 << self.next) != 0;
        self.next += 1;
        selected.then(|| {
            self.at += 1;
            self.at - 1
        })
    }

    /// An integer column.
    pub fn i64(&mut self) -> Result<i64, sqlx::Error> {
        self.take().map_or(Ok(0), |i| self.row.i64(i))
    }
    /// A 32-bit integer column (read as 64 bits), narrowed back, failing loudly rather than
    /// wrapping.
    pub fn i32(&mut self) -> Result<i32, sqlx::Error> {
        let v = self.i64()?;
        i32::try_from(v).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
    /// A text column.
    pub fn text(&mut self) -> Result<String, sqlx::Error> {
        self.take().map_or(Ok(String::new()), |i| self.row.text(i))
    }
    /// A nullable text column.
    pub fn opt_text(&mut self) -> Result<Option<String>, sqlx::Error> {
        self.take().map_or(Ok(None), |i| self.row.opt_text(i))
    }
    /// A boolean column.
    pub fn bool(&mut self) -> Result<bool, sqlx::Error> {
        self.take().map_or(Ok(false), |i| self.row.bool(i))
    }
    /// A timestamp column.
    pub fn ts(&mut self) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
        self.take()
            .map_or(Ok(chrono::DateTime::UNIX_EPOCH), |i| self.row.ts(i))
    }
    /// An order status column.
    pub fn status(&mut self) -> Result<OrderStatus, sqlx::Error> {
        let Some(i) = self.take() else {
            return Ok(OrderStatus::Pending);
        };
        let status = self.row.text(i)?;
        OrderStatus::from_db(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown order status {status:?}").into(),
        })
    }
}
