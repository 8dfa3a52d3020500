//! The custom scalars: `Decimal` (exact money, as a string) and `DateTime` (RFC 3339, UTC).
//! Both validate their input during validation, so a bad literal or variable is a request
//! error (400), not a field error.

use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::Utc;

/// An exact decimal number, such as an amount of money. Always serialised as a string
/// (`"12.50"`), never as a float; accepted as a string or an integer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub rust_decimal::Decimal);

fn parse_decimal(value: &Value) -> Option<rust_decimal::Decimal> {
    match value {
        Value::String(s) => rust_decimal::Decimal::from_str_exact(s.trim()).ok(),
        Value::Number(n) => n.as_i64().map(rust_decimal::Decimal::from),
        _ => None,
    }
}

/// An exact decimal number, such as an amount of money. Serialised as a string ("12.50") so
/// that no precision is lost; accepted as a string or an integer.
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_decimal(&value).map(Decimal).ok_or_else(|| {
            InputValueError::custom(format!(
                "{value} is not a decimal number; send it as a string such as \"12.50\""
            ))
        })
    }

    fn is_valid(value: &Value) -> bool {
        parse_decimal(value).is_some()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A point in time.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

fn parse_datetime(value: &Value) -> Option<chrono::DateTime<Utc>> {
    match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

/// A point in time, as an RFC 3339 string (`"2024-05-01T12:00:00+00:00"`), in UTC on output.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_datetime(&value)
            .map(DateTime)
            .ok_or_else(|| InputValueError::custom(format!("{value} is not an RFC 3339 date-time")))
    }

    fn is_valid(value: &Value) -> bool {
        parse_datetime(value).is_some()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

impl FromStr for Decimal {
    type Err = rust_decimal::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        rust_decimal::Decimal::from_str_exact(s).map(Decimal)
    }
}

/// A calendar date.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Date(pub chrono::NaiveDate);

/// A calendar date in ISO 8601 (`"2024-05-01"`), in UTC.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("{value} is not a YYYY-MM-DD date"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// Checks an input value of the custom scalar `name` (`None`: not one of ours). The request's
/// preparation calls this for every literal and variable value of a custom scalar type, so a
/// bad value is a request error, as for the built-in scalars.
pub fn check_input(name: &str, value: &Value) -> Option<Result<(), String>> {
    fn run<T: ScalarType + async_graphql::InputType>(value: &Value) -> Result<(), String> {
        <T as ScalarType>::parse(value.clone())
            .map(|_| ())
            .map_err(|e| e.into_server_error(async_graphql::Pos::default()).message)
    }
    Some(match name {
        "Decimal" => run::<Decimal>(value),
        "DateTime" => run::<DateTime>(value),
        "Date" => run::<Date>(value),
        _ => return None,
    })
}
