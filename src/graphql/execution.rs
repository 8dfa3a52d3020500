//! Around execution: variable defaults for directives, the operation's type, telling request
//! errors from execution errors, and an `extensions.code` on every error.

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

/// Adds the operation's variable defaults to the request's variables.
///
/// async-graphql evaluates `@skip(if: $v)` / `@include(if: $v)` against the variables sent,
/// ignoring `$v: Boolean = true` defaults, so a default-driven directive would be read as
/// `false`. Filling in the defaults first makes directives follow the specification.
pub fn apply_variable_defaults(request: &mut async_graphql::Request) {
    use async_graphql::parser::types::DocumentOperations;
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return;
    };
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => operation_name.as_deref().and_then(|n| ops.get(n)),
    };
    let Some(op) = op else {
        return;
    };
    let defaults: Vec<_> = op
        .node
        .variable_definitions
        .iter()
        .filter_map(|d| {
            d.node
                .default_value
                .as_ref()
                .map(|v| (d.node.name.node.clone(), v.node.clone()))
        })
        .collect();
    for (name, value) in defaults {
        request.variables.entry(name).or_insert(value);
    }
}

/// Gives every error an `extensions.code`: errors raised by async-graphql itself (parse,
/// validation, limits, argument coercion) carry none.
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
        } else if !executed && msg.trim_start().starts_with("-->") {
            "GRAPHQL_PARSE_FAILED"
        } else if !executed {
            "GRAPHQL_VALIDATION_FAILED"
        } else if msg.starts_with("Failed to parse") || msg.starts_with("Invalid value") {
            "BAD_USER_INPUT"
        } else {
            "INTERNAL"
        };
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// The type of the operation a request will run (`None` when it does not parse or names no
/// operation: execution reports that).
pub fn operation_type(
    request: &mut async_graphql::Request,
) -> Option<async_graphql::parser::types::OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    let operation_name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    match &doc.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        DocumentOperations::Multiple(ops) => operation_name
            .as_deref()
            .and_then(|n| ops.get(n))
            .map(|op| op.node.ty),
    }
}
