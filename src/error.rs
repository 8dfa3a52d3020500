//! One error type for the whole server.
//!
//! Every variant's [`AppError::message`] is safe to show a client. Internal causes (database errors, I/O) are
//! logged once, where they are turned into a GraphQL error, and never returned: a client sees
//! `INTERNAL` and a generic message, never SQL text.

use async_graphql::ErrorExtensions;

use crate::entities::Violation;

/// What can go wrong while serving a request.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error without
/// an `extensions.code`, so every conversion goes through our `From` impl instead.
#[derive(Debug)]
pub enum AppError {
    /// The client sent something the API does not accept (`BAD_USER_INPUT`).
    BadInput(String),
    /// A referenced object does not exist (`NOT_FOUND`).
    NotFound(String),
    /// A unique value is already taken (`CONFLICT`); names the field.
    Conflict {
        /// The GraphQL input field that conflicts.
        field: &'static str,
    },
    /// The request would exceed a configured limit (`LIMIT_EXCEEDED`).
    LimitExceeded(String),
    /// No valid credentials: no token where one is needed, or a failed login
    /// (`UNAUTHENTICATED`).
    Unauthenticated(String),
    /// The viewer's role may not do this (`FORBIDDEN`).
    Forbidden(String),
    /// Too many failed attempts; retry after this many seconds (`RATE_LIMITED`).
    RateLimited {
        /// What was limited.
        message: String,
        /// Seconds until the next attempt may succeed.
        retry_after: u64,
    },
    /// Strict mode: a relationship was read that no plan or loader prepared (`UNPLANNED_LOAD`).
    Unplanned(String),
    /// The database is unreachable or the pool is exhausted (`SERVICE_UNAVAILABLE`).
    Unavailable(sqlx::Error),
    /// A bounded resource other than the database is at capacity (`SERVICE_UNAVAILABLE`).
    Busy(String),
    /// Anything else: the cause is logged, the client sees a generic message (`INTERNAL`).
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// The machine-readable code put into `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            AppError::Unplanned(_) => "UNPLANNED_LOAD",
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Unavailable(_) | AppError::Busy(_) => "SERVICE_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The client-safe message.
    pub fn message(&self) -> String {
        match self {
            AppError::BadInput(m)
            | AppError::NotFound(m)
            | AppError::LimitExceeded(m)
            | AppError::Unplanned(m)
            | AppError::Unauthenticated(m)
            | AppError::Forbidden(m)
            | AppError::RateLimited { message: m, .. }
            | AppError::Busy(m) => m.clone(),
            AppError::Conflict { field } => format!("{field} is already taken"),
            AppError::Unavailable(_) => "the database is unavailable, try again later".to_owned(),
            AppError::Internal(_) => "an internal error occurred".to_owned(),
        }
    }

    /// The message with the internal cause, for logs and command-line output only.
    pub fn detail(&self) -> String {
        match self {
            AppError::Unavailable(cause) => format!("{}: {cause}", self.message()),
            AppError::Internal(cause) => format!("{}: {cause}", self.message()),
            _ => self.message(),
        }
    }

    /// A copy for a second receiver of the same failure (an error shared by a batch): the
    /// same code and client message; internal causes become their logged detail.
    pub fn replicate(&self) -> AppError {
        match self {
            AppError::BadInput(m) => AppError::BadInput(m.clone()),
            AppError::NotFound(m) => AppError::NotFound(m.clone()),
            AppError::Conflict { field } => AppError::Conflict { field },
            AppError::LimitExceeded(m) => AppError::LimitExceeded(m.clone()),
            AppError::Unplanned(m) => AppError::Unplanned(m.clone()),
            AppError::Unauthenticated(m) => AppError::Unauthenticated(m.clone()),
            AppError::Forbidden(m) => AppError::Forbidden(m.clone()),
            AppError::RateLimited {
                message,
                retry_after,
            } => AppError::RateLimited {
                message: message.clone(),
                retry_after: *retry_after,
            },
            AppError::Unavailable(_) | AppError::Busy(_) => AppError::Busy(self.message()),
            AppError::Internal(_) => AppError::internal(self.detail()),
        }
    }

    /// Shorthand for [`AppError::BadInput`].
    pub fn bad_input(message: impl Into<String>) -> Self {
        AppError::BadInput(message.into())
    }

    /// Wraps any error as [`AppError::Internal`].
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AppError::Internal(err.into())
    }
}

/// A selection the planner refuses is the client's to fix (`BAD_USER_INPUT`).
impl From<crate::planner::PlanError> for AppError {
    fn from(e: crate::planner::PlanError) -> Self {
        AppError::BadInput(e.0)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            // A described constraint, by its name (PostgreSQL) or SQLite's report of it.
            if (db.is_unique_violation() || db.is_check_violation())
                && let Some(c) = crate::entities::violated_constraint(db.constraint(), db.message())
            {
                return match c.means {
                    Violation::Taken(field) => AppError::Conflict { field },
                    Violation::Refused(why) => AppError::bad_input(why),
                };
            }
            // The server is shutting down or restarting, the connection broke, the server is
            // out of a resource (connections, memory, disk), or the database takes no new
            // connection now: retryable.
            if let Some(code) = db.code()
                && (code.starts_with("57P")
                    || code.starts_with("08")
                    || code.starts_with("53")
                    || (code == "55000" && db.message().contains("accepting connections")))
            {
                return AppError::Unavailable(err);
            }
            // Text the database cannot store (PostgreSQL: U+0000 or an unconvertible
            // character): the client's input, not a server fault.
            if matches!(db.code().as_deref(), Some("22021" | "22P05")) {
                return AppError::bad_input("text contains a character the database cannot store");
            }
            if db.code().as_deref() == Some("57014") {
                return AppError::LimitExceeded(
                    "a statement ran longer than the statement timeout".to_owned(),
                );
            }
        }
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                AppError::Unavailable(err)
            }
            other => AppError::Internal(Box::new(other)),
        }
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        match &err {
            AppError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
            }
            AppError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
            }
            _ => {}
        }
        let code = err.code();
        let extra = match &err {
            AppError::Conflict { field } => Some(*field),
            _ => None,
        };
        let retry_after = match &err {
            AppError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, e| {
            e.set("code", code);
            if let Some(field) = extra {
                e.set("field", field);
            }
            if let Some(secs) = retry_after {
                e.set("retryAfter", secs);
            }
        })
    }
}

/// Result alias used across the crate.
pub type AppResult<T> = Result<T, AppError>;
