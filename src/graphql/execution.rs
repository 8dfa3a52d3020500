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

/// Gives every error an `extensions.code`, by where it arose. Every error the server makes
/// carries its code; what async-graphql makes itself does not. Its validation refuses nothing
/// the preparer let through (every limit is checked there), so an error without a code before
/// execution is a validation error; during execution, async-graphql makes errors only while it
/// reads a field's arguments (a custom scalar's text it cannot parse), which is the client's
/// input.
pub fn ensure_error_codes(response: &mut Response, executed: bool) {
    let code = if executed {
        "BAD_USER_INPUT"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    };
    for err in &mut response.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", code);
        }
    }
}
