//! The database's floor for a request: `pgbench` running the statements one GraphQL request
//! ran (as reported under `x-eagerql-debug: sql`), with their parameters written in as
//! literals, in the same read snapshot the server opens, on as many connections as the
//! server's clients. No client library, no GraphQL, no HTTP: what PostgreSQL itself can
//! serve of this request on this machine.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::Res;
use super::direct::Statement;

/// A parameter as a SQL literal (PostgreSQL infers its type from where it stands, as it does
/// for the server's bound parameters).
fn literal(v: &Value) -> String {
    fn quoted(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => format!("\"{}\"", s.replace('"', "\\\"")),
                    other => other.to_string(),
                })
                .collect();
            quoted(&format!("{{{}}}", inner.join(",")))
        }
        Value::Object(_) => quoted(&v.to_string()),
    }
}

/// `sql` with each `$n` replaced by the literal of `params[n - 1]`.
fn inline(sql: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 0 {
                let n: usize = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
                if let Some(p) = n.checked_sub(1).and_then(|k| params.get(k)) {
                    out.push_str(&literal(p));
                    i += 1 + digits;
                    continue;
                }
            }
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `line` up to its `--` comment, if it has one outside a string literal.
fn without_comment(line: &str) -> &str {
    let mut quoted = false;
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            b'-' if !quoted && bytes.get(i + 1) == Some(&b'-') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The pgbench script of one request: its statements, inside `begin_read` (the server's read
/// snapshot, when it opened one) and `commit`.
pub fn script(statements: &[Statement], begin_read: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(begin) = begin_read {
        s.push_str(begin);
        s.push_str(";\n");
    }
    for st in statements {
        // pgbench reads one statement per line: comments go first (on one line a comment
        // would swallow the rest of the statement).
        let one_line: String = inline(&st.sql, &st.params)
            .lines()
            .map(without_comment)
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&one_line);
        s.push_str(";\n");
    }
    if begin_read.is_some() {
        s.push_str("commit;\n");
    }
    s
}

/// Runs `script` with pgbench (`-M prepared`, `clients` connections and threads) for `secs`
/// seconds against `url`; the transactions (requests) per second.
pub fn pgbench(url: &str, script: &str, clients: usize, secs: f64, dir: &Path) -> Res<f64> {
    let file = dir.join(format!("eagerql-floor-{}.sql", std::process::id()));
    std::fs::write(&file, script)?;
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c"])
        .arg(clients.to_string())
        .arg("-j")
        .arg(clients.min(8).to_string())
        .arg("-T")
        .arg(format!("{}", secs.ceil().max(1.0) as u64))
        .arg("-f")
        .arg(&file)
        .arg(url)
        .output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| format!("pgbench could not run ({e}); install postgresql-client"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| format!("no tps in pgbench's output: {text}").into())
}
