//! The log line: one per event, as text or as one JSON object, written field by field.
//!
//! Every line written while a request is served carries its `request_id`, read from the
//! request's task-local context ([`in_request`]) rather than from a span, so that serving a
//! request creates, enters and leaves no span when traces are off. Values are written
//! directly (numbers by `itoa`/`ryu`, strings escaped in one pass), not through
//! `tracing-subscriber`'s generic field formatting, which was the larger part of a request's
//! logging cost. Control characters are always escaped, so no value can split a line or send
//! a terminal escape sequence.
//!
//! Text: `2026-12-02T07:30:00.123456Z  INFO eagerql::http: graphql request request_id=ab12
//! operation="Shelf" status=200 ...` (strings quoted, the message first, colours only on a
//! terminal). JSON: `{"timestamp":...,"level":"INFO","target":"eagerql::http",
//! "request_id":"ab12","message":"graphql request","operation":"Shelf","status":200,...}`.
//! Spans are not written: they are what traces are for.

use std::fmt::{self, Write as _};
use std::future::Future;

use axum::http::HeaderValue;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

tokio::task_local! {
    /// The id of the request being served on this task.
    static REQUEST_ID: HeaderValue;
}

/// Runs `fut` as the request `id`: every line it logs carries the id.
pub fn in_request<F: Future>(id: HeaderValue, fut: F) -> InRequest<F> {
    REQUEST_ID.scope(id, fut)
}

/// The future of [`in_request`].
pub type InRequest<F> = tokio::task::futures::TaskLocalFuture<HeaderValue, F>;

/// Log line format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Formats each event as one line of `format`; with colours (text only) when `ansi`.
pub(super) struct Line {
    pub format: LogFormat,
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut stamp = [0u8; 27];
        let stamp = timestamp(std::time::SystemTime::now(), &mut stamp);
        match self.format {
            LogFormat::Text => {
                let ansi = self.ansi;
                let level = match *meta.level() {
                    Level::ERROR => ("ERROR", "\x1b[31m"),
                    Level::WARN => (" WARN", "\x1b[33m"),
                    Level::INFO => (" INFO", "\x1b[32m"),
                    Level::DEBUG => ("DEBUG", "\x1b[34m"),
                    Level::TRACE => ("TRACE", "\x1b[35m"),
                };
                if ansi {
                    write!(
                        w,
                        "\x1b[2m{stamp}\x1b[0m {}{}\x1b[0m \x1b[2m{}:\x1b[0m",
                        level.1,
                        level.0,
                        meta.target()
                    )?;
                } else {
                    w.write_str(stamp)?;
                    w.write_char(' ')?;
                    w.write_str(level.0)?;
                    w.write_char(' ')?;
                    w.write_str(meta.target())?;
                    w.write_char(':')?;
                }
                let mut text = Fields {
                    w: &mut w,
                    format: LogFormat::Text,
                    message: true,
                    result: Ok(()),
                };
                event.record(&mut text);
                // Outside a request there is no id.
                let _ = REQUEST_ID.try_with(|id| text.pair("request_id", id_str(id)));
                text.message = false;
                event.record(&mut text);
                text.result?;
            }
            LogFormat::Json => {
                w.write_str("{\"timestamp\":\"")?;
                w.write_str(stamp)?;
                w.write_str("\",\"level\":\"")?;
                w.write_str(meta.level().as_str())?;
                w.write_str("\",\"target\":")?;
                json_str(&mut w, meta.target())?;
                // Outside a request there is no id.
                if let Ok(written) = REQUEST_ID.try_with(|id| -> fmt::Result {
                    w.write_str(",\"request_id\":")?;
                    json_str(&mut w, id_str(id))
                }) {
                    written?;
                }
                let mut json = Fields {
                    w: &mut w,
                    format: LogFormat::Json,
                    message: false,
                    result: Ok(()),
                };
                event.record(&mut json);
                json.result?;
                w.write_char('}')?;
            }
        }
        w.write_char('\n')
    }
}

/// Span fields are not part of log lines (see the module's note), so they are not formatted
/// when a span is made either.
pub(super) struct NoSpanFields;

impl<'w> FormatFields<'w> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'w>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }

    fn add_fields(
        &self,
        _current: &'w mut FormattedFields<Self>,
        _fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        Ok(())
    }
}

/// A request id as text: always visible ASCII (see `http::headers`), so this never fails.
fn id_str(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("?")
}

/// Writes an event's fields in `format`. Text: the message alone in the first pass
/// (`message: true`), the other fields as ` name=value` in the second. JSON: `,"name":value`
/// each, in the order they were given, in one pass.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    format: LogFormat,
    message: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// A text `name=value` pair that is not a field of the event (the request id).
    fn pair(&mut self, name: &str, value: &str) {
        if self.result.is_ok() {
            self.result = (|| {
                self.w.write_char(' ')?;
                self.w.write_str(name)?;
                self.w.write_char('=')?;
                escaped(self.w, value)
            })();
        }
    }

    /// Writes one field's name and, with `put`, its value, if this pass writes it.
    fn field(&mut self, field: &Field, put: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let is_message = field.name() == "message";
        if self.format == LogFormat::Text && is_message != self.message {
            return;
        }
        self.result = (|| {
            match self.format {
                LogFormat::Text => {
                    self.w.write_char(' ')?;
                    if !is_message {
                        self.w.write_str(field.name())?;
                        self.w.write_char('=')?;
                    }
                }
                LogFormat::Json => {
                    self.w.write_char(',')?;
                    // Field names are Rust identifiers or dotted paths: nothing to escape,
                    // but escaped all the same, since `tracing` does not promise it.
                    json_str(self.w, field.name())?;
                    self.w.write_char(':')?;
                }
            }
            put(self.w)
        })();
    }

    /// A `%` or `?` value (and the message), formatted straight into the line: escaped as
    /// text, or as a JSON string.
    fn formatted(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let json = self.format == LogFormat::Json;
        self.field(field, |w| {
            if !json {
                return Escape { w, chunk: escaped }.write_fmt(value);
            }
            w.write_char('"')?;
            Escape {
                w,
                chunk: json_chars,
            }
            .write_fmt(value)?;
            w.write_char('"')
        });
    }
}

impl Visit for Fields<'_, '_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let non_finite = match self.format {
            LogFormat::Text => "NaN",
            LogFormat::Json => "null",
        };
        self.field(field, |w| float(w, value, non_finite));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match self.format {
            LogFormat::Json => self.field(field, |w| json_str(w, value)),
            LogFormat::Text if field.name() == "message" => {
                self.field(field, |w| escaped(w, value))
            }
            LogFormat::Text => self.field(field, |w| quoted(w, value)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.formatted(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.formatted(field, format_args!("{value:?}"));
    }
}

/// A float as its shortest exact decimal; `non_finite` for NaN and the infinities.
fn float(w: &mut Writer<'_>, value: f64, non_finite: &str) -> fmt::Result {
    if value.is_finite() {
        w.write_str(ryu::Buffer::new().format_finite(value))
    } else {
        w.write_str(non_finite)
    }
}

/// Formats a value (what `%` and `?` fields and messages are) straight into the line, each
/// piece escaped by `chunk` on its way.
struct Escape<'a, 'w> {
    w: &'a mut Writer<'w>,
    chunk: fn(&mut Writer<'_>, &str) -> fmt::Result,
}

impl fmt::Write for Escape<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        (self.chunk)(self.w, s)
    }
}

/// Text with its control characters escaped (`\n`, `\t`, `\r`, `\u{1b}`...).
fn escaped(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    escape_where(w, s, char::is_control)
}

/// A quoted text value: `"` and `\` escaped as well as control characters.
fn quoted(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    escape_where(w, s, |c| c == '"' || c == '\\' || c.is_control())?;
    w.write_char('"')
}

/// `s` with the characters `special` picks written as Rust escapes.
fn escape_where(w: &mut Writer<'_>, s: &str, special: impl Fn(char) -> bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if !special(c) {
            continue;
        }
        w.write_str(&s[start..i])?;
        write!(w, "{}", c.escape_default())?;
        start = i + c.len_utf8();
    }
    w.write_str(&s[start..])
}

/// A JSON string.
fn json_str(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    json_chars(w, s)?;
    w.write_char('"')
}

/// The characters of a JSON string, escaped, without its quotes.
fn json_chars(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped, so `i` is a character boundary.
        w.write_str(&s[start..i])?;
        if escape.is_empty() {
            write!(w, "\\u{b:04x}")?;
        } else {
            w.write_str(escape)?;
        }
        start = i + 1;
    }
    w.write_str(&s[start..])
}

/// `now` as RFC 3339 in UTC with microseconds (`2026-12-02T07:30:00.123456Z`), in `buf`.
fn timestamp(now: std::time::SystemTime, buf: &mut [u8; 27]) -> &str {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        buf[at] = c;
    }
    buf[26] = b'Z';
    std::str::from_utf8(buf).unwrap_or("")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let t = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_micros(micros);
            let mut buf = [0u8; 27];
            timestamp(t, &mut buf).to_owned()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_795_851_000, 123_456), "2026-11-28T07:30:00.123456Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }
}
