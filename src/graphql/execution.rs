//! Around execution: telling request errors from execution errors, and an `extensions.code`
//! on every error.

use async_graphql::Response;

/// Whether execution began: a response whose errors all lack a path and that has no data
/// failed before execution (parse, validation, variable coercion, unknown operation), and
/// must have no `data` entry. Field errors always carry the path of their field.
///
/// (An async-graphql extension could mark the start of execution, but any extension makes the
/// executor call it around every single field.)
pub fn execution_started(response: &Response) -> bool {
    !(matches!(response.data, async_graphql::Value::Null)
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty()))
}

/// Gives every error an `extensions.code`: errors raised by async-graphql itself (its depth
/// and complexity limits, argument coercion) carry none.
pub fn ensure_error_codes(response: &mut Response, executed: bool) {
    for err in &mut response.errors {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let msg = err.message.as_str();
        let code = if msg.contains("nested too deep") || msg.contains("too complex") {
            "LIMIT_EXCEEDED"
        } else if !executed {
            "GRAPHQL_VALIDATION_FAILED"
        } else if ["Failed to parse", "Invalid value", "Expected input type"]
            .iter()
            .any(|p| msg.starts_with(p))
        {
            "BAD_USER_INPUT"
        } else {
            "INTERNAL"
        };
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}
