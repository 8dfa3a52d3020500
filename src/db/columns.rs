//! The columns of a table's load list (how each is read on each backend, and which GraphQL
//! field needs it) and the reader that decodes a row's selected columns in order. The table
//! modules describe their columns with these; the load builder selects and decodes them.

use super::Backend;
use super::session::DbRow;
use crate::model::OrderStatus;

/// How a column is read, so that both backends hand Rust the same types.
#[derive(Copy, Clone, Debug)]
enum Kind {
    /// Read as stored.
    Plain,
    /// Money: PostgreSQL `numeric(10,2)` -> cents (`int8`); SQLite stores cents already.
    Money,
    /// A 32-bit integer, widened to `int8` on PostgreSQL.
    Int4,
}

/// A column of a table's load list.
#[derive(Copy, Clone, Debug)]
pub struct Column {
    name: &'static str,
    kind: Kind,
    /// The GraphQL field that reads it; `None` for keys, which every load reads.
    field: Option<&'static str>,
}

impl Column {
    /// The GraphQL field that reads it; `None` for keys.
    pub(crate) fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// A key column (primary or foreign), read by every load.
    pub const fn key(name: &'static str) -> Self {
        Column {
            name,
            kind: Kind::Plain,
            field: None,
        }
    }
    /// A column read as stored, only when the GraphQL field `field` is selected.
    pub const fn plain(name: &'static str, field: &'static str) -> Self {
        Column {
            name,
            kind: Kind::Plain,
            field: Some(field),
        }
    }
    /// A money column, read as integer cents, only when `field` is selected.
    pub const fn money(name: &'static str, field: &'static str) -> Self {
        Column {
            name,
            kind: Kind::Money,
            field: Some(field),
        }
    }
    /// A 32-bit integer column, read as a 64-bit one, only when `field` is selected.
    pub const fn int4(name: &'static str, field: &'static str) -> Self {
        Column {
            name,
            kind: Kind::Int4,
            field: Some(field),
        }
    }

    /// The select-list expression reading this column of the table aliased `alias`.
    pub(crate) fn expr(&self, backend: Backend, alias: &str) -> String {
        match (backend, self.kind) {
            (Backend::Postgres, Kind::Money) => format!("({alias}.{} * 100)::int8", self.name),
            (Backend::Postgres, Kind::Int4) => format!("{alias}.{}::int8", self.name),
            _ => format!("{alias}.{}", self.name),
        }
    }
}

/// Reads a row's columns in load-list order, giving defaults for the columns the load did
/// not select (whose fields the query did not ask for, so no resolver reads them).
pub struct Cols<'a> {
    row: &'a dyn DbRow,
    mask: u32,
    /// Index in the load list of the next column.
    next: u32,
    /// Position in the result row of the next selected column.
    at: usize,
}

impl<'a> Cols<'a> {
    /// The columns of a load whose selected columns are the bits of `mask`, starting at
    /// position `at` of the result row.
    pub(crate) fn masked(row: &'a dyn DbRow, mask: u32, at: usize) -> Self {
        Cols {
            row,
            mask,
            next: 0,
            at,
        }
    }

    /// Every column of the load list, from the row's first column on (a full-row read).
    pub fn all(row: &'a dyn DbRow) -> Self {
        Cols {
            row,
            mask: u32::MAX,
            next: 0,
            at: 0,
        }
    }

    /// The position in the result row after the columns read so far.
    pub(crate) fn position(&self) -> usize {
        self.at
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
