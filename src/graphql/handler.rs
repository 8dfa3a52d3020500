//! One GraphQL request, whatever carries it: its document (trusted, persisted or sent in
//! full), the prepared operation, the plan made ahead when the request needs one (statement
//! budget, an asserted count, `extensions.plan`), the execution in the request's session, and
//! the outcome, recorded once (metrics, the span's fields, one log line). The transport
//! (`crate::server::http`) reads the request into [`Incoming`] and writes the [`Outcome`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Request;
use async_graphql::parser::types::OperationType;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value as Json, json};

use super::execution::{ensure_error_codes, execution_started};
use super::lazy::{LazyLoader, RequestLoader};
use super::operation::{self, Prepared, Refused};
use crate::db::{Session, StatementLog};
use crate::documents::persisted::ApqError;
use crate::documents::predict::{Who, request_context};
use crate::json;
use crate::model::Viewer;
use crate::server::state::AppState;

/// The request header that asks for the executed SQL (`sql`) or the plan (`plan`) in the
/// response's `extensions`.
pub const DEBUG_HEADER: &str = "x-eagerql-debug";
/// The request header that asserts a query's planned statement count: a query whose plans
/// need another number is refused before any SQL runs (`STATEMENT_COUNT_MISMATCH`).
pub const EXPECT_HEADER: &str = "x-eagerql-expect-statements";

/// A GraphQL request as the transport read it (no `Debug`: its variables may hold passwords).
pub struct Incoming {
    /// Who sends it (from the access token alone).
    pub viewer: Viewer,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// Its parameters.
    pub params: Params,
    /// What it asks besides its answer.
    pub asks: DebugAsks,
    /// The transport takes queries only (HTTP GET: caches and prefetchers take it as safe).
    pub queries_only: bool,
    /// The status a request error (no `data`) is answered with: 400 under
    /// `application/graphql-response+json`, 200 under `application/json`.
    pub request_error_status: StatusCode,
    /// When the transport began serving it (its duration is measured from here).
    pub started: Instant,
}

/// What became of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Its persisted or trusted document cannot be used.
    Document(ApqError),
    /// A mutation on a transport that takes queries only.
    QueriesOnly,
    /// Its answer (or its request errors).
    Answered(Answered),
    /// A subscription: valid, to be followed by a transport that streams (see
    /// [`crate::live`]).
    Subscription(crate::live::Operation),
}

/// A request's answer.
#[derive(Debug)]
pub struct Answered {
    /// The status it is answered with: 503 when no database connection could be had for it,
    /// [`Incoming::request_error_status`] for a request error, else 200.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The statements it ran.
    pub statements: usize,
    /// The `retryAfter` of a `RATE_LIMITED` error, in seconds.
    pub retry_after: Option<u64>,
}

/// Serves one request (see the module documentation).
pub async fn handle(state: &AppState, incoming: Incoming) -> Outcome {
    let Incoming {
        viewer,
        client,
        params,
        asks,
        queries_only,
        request_error_status,
        started,
    } = incoming;
    let capture = asks.sql && state.config.debug_sql_allowed();
    let log = StatementLog::new(state.config.budget())
        .with_row_budget(state.config.row_budget())
        .with_hook(state.statement_hook.clone());
    let log = Arc::new(if capture { log.capturing() } else { log });
    let query = match document(state, &params).await {
        Ok(q) => q,
        Err(e) => return Outcome::Document(e),
    };
    let variables = params
        .variables
        .map(operation::variables)
        .unwrap_or_default();
    // A trusted document's manifest may name its operation: the default when none is asked for.
    let operation_name = params
        .operation_name
        .as_deref()
        .or_else(|| state.trusted.operation_of(&query));
    let prepared = state.preparer.prepare(&query, operation_name, &variables);
    let mut unavailable = false;
    // For the request's log line.
    let mut operation: (Option<String>, &'static str) = (operation_name.map(str::to_owned), "");
    let mut response = match prepared {
        Err(Refused(errors)) => async_graphql::Response::from_errors(errors),
        Ok(prepared) => {
            operation = (prepared.name.clone(), operation_type(prepared.ty));
            if queries_only && prepared.ty == OperationType::Mutation {
                return Outcome::QueriesOnly;
            }
            if prepared.ty == OperationType::Subscription {
                let stream = crate::live::stream::rewrite(&query, operation_name, &variables)
                    .and_then(|stream| stream_prepares(state, stream, operation_name, &variables));
                match stream {
                    Ok(stream) => {
                        let (query, stream) = match stream {
                            Some((text, spec)) => (Arc::from(text), Some(Arc::new(spec))),
                            None => (query, None),
                        };
                        return Outcome::Subscription(crate::live::Operation {
                            query,
                            operation_name: operation_name.map(str::to_owned),
                            variables,
                            stream,
                        });
                    }
                    Err(message) => request_error(message, "BAD_USER_INPUT", &[]),
                }
            } else {
                let who = Who { viewer, client };
                let query = query.to_string();
                match run(
                    state,
                    &log,
                    who,
                    prepared,
                    query,
                    (params.extensions, asks),
                    None,
                )
                .await
                {
                    Ok(response) => response,
                    Err(errors) => {
                        unavailable = true;
                        async_graphql::Response::from_errors(errors)
                    }
                }
            }
        }
    };
    let executed = execution_started(&response);
    ensure_error_codes(&mut response, executed);
    if asks.sql {
        let value = sql_extension(state, &log);
        if let Ok(value) = async_graphql::Value::from_json(value) {
            response.extensions.insert("sql".to_owned(), value);
        }
    }
    // A request error (execution never began) has no `data` entry at all.
    let body = response_body(executed.then_some(&response.data), &response);
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if !executed {
        request_error_status
    } else {
        StatusCode::OK
    };
    record(
        state,
        &Served {
            operation: (operation.0.as_deref().unwrap_or(""), operation.1),
            viewer,
            status,
            executed,
            response: &response,
            log: &log,
            started,
        },
    );
    Outcome::Answered(Answered {
        status,
        body,
        statements: log.count(),
        retry_after: retry_after(&response),
    })
}

/// The operation type's name, for the log line and metrics.
fn operation_type(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The GraphQL request parameters, checked for their JSON types.
pub struct Params {
    /// Absent when an automatic persisted query names its document by hash alone, or a
    /// `documentId` names a trusted document.
    pub query: Option<String>,
    /// A trusted document's id (the GraphQL-over-HTTP persisted documents proposal).
    pub document_id: Option<String>,
    /// The operation to run, when the document has several.
    pub operation_name: Option<String>,
    /// The variables' values.
    pub variables: Option<Map<String, Json>>,
    /// The request's extensions (`persistedQuery`, ...).
    pub extensions: Option<Map<String, Json>>,
}

/// Reads a request's parameters from its JSON object (a POST body, or a GET query string
/// made into one); `Err`: what is wrong with them.
pub fn params_from_json(body: Json) -> Result<Params, String> {
    let Json::Object(mut obj) = body else {
        return Err(
            "the request body must be a JSON object (batching is not supported)".to_owned(),
        );
    };
    let query = match obj.remove("query") {
        Some(Json::String(q)) => Some(q),
        None | Some(Json::Null) => None,
        Some(_) => return Err("`query` must be a string".to_owned()),
    };
    let document_id = match obj.remove("documentId") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err("`documentId` must be a string".to_owned()),
    };
    if document_id.is_some() && query.is_some() {
        return Err("send either `documentId` or `query`, not both".to_owned());
    }
    let persisted_too = obj
        .get("extensions")
        .and_then(Json::as_object)
        .is_some_and(|e| e.contains_key("persistedQuery"));
    if document_id.is_some() && persisted_too {
        return Err("send either `documentId` or `extensions.persistedQuery`, not both".to_owned());
    }
    let operation_name = match obj.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err("`operationName` must be a string".to_owned()),
    };
    let object = |v: Option<Json>, what: &str| match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("`{what}` must be an object")),
    };
    let variables = object(obj.remove("variables"), "variables")?;
    let extensions = object(obj.remove("extensions"), "extensions")?;
    if let Some(key) = obj.keys().next() {
        return Err(format!("unknown request parameter `{key}`"));
    }
    let persisted = extensions
        .as_ref()
        .is_some_and(|e| e.contains_key("persistedQuery"));
    if query.is_none() && !persisted && document_id.is_none() {
        return Err("the request has no `query`".to_owned());
    }
    Ok(Params {
        query,
        document_id,
        operation_name,
        variables,
        extensions,
    })
}

/// What a request asks of the server besides its answer: the SQL it ran (`x-eagerql-debug:
/// sql`), its plan (`x-eagerql-debug: plan`), and a statement count to assert
/// (`x-eagerql-expect-statements`).
#[derive(Copy, Clone, Debug, Default)]
pub struct DebugAsks {
    /// `extensions.sql`.
    pub sql: bool,
    /// `extensions.plan`.
    pub plan: bool,
    /// The statement count the request asserts.
    pub expect: Option<usize>,
}

impl DebugAsks {
    /// Reads the request's headers; `None`: a malformed expectation (refused before
    /// anything runs).
    pub fn read(headers: &HeaderMap) -> Option<DebugAsks> {
        // Names made once: a `&str` name is checked and lowercased on every lookup.
        const DEBUG: header::HeaderName = header::HeaderName::from_static(DEBUG_HEADER);
        const EXPECT: header::HeaderName = header::HeaderName::from_static(EXPECT_HEADER);
        let (mut sql, mut plan) = (false, false);
        if let Some(v) = headers.get(&DEBUG).and_then(|v| v.to_str().ok()) {
            for part in v.split(',').map(str::trim) {
                sql |= part.eq_ignore_ascii_case("sql");
                plan |= part.eq_ignore_ascii_case("plan");
            }
        }
        let mut expect_values = headers.get_all(&EXPECT).iter();
        let first = expect_values.next();
        let repeated = expect_values.next().is_some();
        let expect = match first.map(|v| v.to_str().map(str::trim)) {
            None => None,
            Some(Ok(v)) if !repeated && v.parse::<usize>().is_ok() => v.parse::<usize>().ok(),
            Some(_) => return None,
        };
        Some(DebugAsks { sql, plan, expect })
    }
}

/// `extensions.sql` (`x-eagerql-debug: sql`): the statements with their text, unless the
/// server keeps SQL text to itself (`EAGERQL_DEBUG_SQL`).
fn sql_extension(state: &AppState, log: &StatementLog) -> Json {
    let statements = log.count();
    if state.config.debug_sql_allowed() {
        json!({
            "count": statements,
            "totalDurationUs": log.total_duration().as_micros() as u64,
            "connectionWaitUs": log.total_wait().as_micros() as u64,
            "statements": log.records(),
            "transactionControl": log.control(),
            "server": log.server(),
        })
    } else {
        json!({ "count": statements, "statements": null,
                "note": "SQL text is disabled on this server (EAGERQL_DEBUG_SQL)" })
    }
}

/// A served GraphQL request, as metrics, the trace and the log line see it.
struct Served<'a> {
    /// The operation's name (`""`: anonymous) and type (`""`: none was selected).
    operation: (&'a str, &'static str),
    viewer: crate::model::Viewer,
    status: StatusCode,
    executed: bool,
    response: &'a async_graphql::Response,
    log: &'a StatementLog,
    started: Instant,
}

/// Records a served request: its metrics, its span's fields and its one log line (never the
/// document or the variables: they may hold passwords and tokens).
fn record(state: &AppState, served: &Served<'_>) {
    let Served {
        operation,
        viewer,
        status,
        executed,
        response,
        log,
        started,
    } = served;
    let statements = log.count();
    let codes: Vec<&str> = response
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    if state.config.observe.metrics {
        state.metrics.record(&crate::observe::metrics::Outcome {
            operation_type: if operation.1.is_empty() {
                "unknown"
            } else {
                operation.1
            },
            outcome: if !executed {
                "refused"
            } else if response.errors.is_empty() {
                "ok"
            } else {
                "error"
            },
            duration: started.elapsed(),
            statements,
            rows: log.rows(),
            db_time: log.total_duration(),
            codes: &codes,
        });
    }
    if crate::observe::telemetry::traces_on() {
        let span = tracing::Span::current();
        span.record("graphql.operation.name", operation.0);
        span.record("graphql.operation.type", operation.1);
        span.record("eagerql.statements", statements);
    }
    // One line per request; its id comes from the request's context. Its target stays the
    // one operators filter on (`EAGERQL_LOG=eagerql::http=warn` silences it).
    tracing::info!(
        target: "eagerql::http",
        operation = operation.0,
        operation_type = operation.1,
        status = status.as_u16(),
        viewer = viewer.user_id(),
        statements,
        rows = log.rows(),
        db_us = log.total_duration().as_micros() as u64,
        wait_us = log.total_wait().as_micros() as u64,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        errors = response.errors.len(),
        error_codes = codes.join(","),
        "graphql request"
    );
}

/// The `retryAfter` of a `RATE_LIMITED` error, as the response's `Retry-After`.
fn retry_after(response: &async_graphql::Response) -> Option<u64> {
    response.errors.iter().find_map(|e| {
        let ext = e.extensions.as_ref()?;
        match (ext.get("code"), ext.get("retryAfter")) {
            (Some(async_graphql::Value::String(code)), Some(async_graphql::Value::Number(n)))
                if code == "RATE_LIMITED" =>
            {
                n.as_u64()
            }
            _ => None,
        }
    })
}

/// An event stream's rewritten operation, when it prepares as a query (it is checked once,
/// at subscribe time, rather than found wanting at its first refresh).
fn stream_prepares(
    state: &AppState,
    stream: Option<(String, crate::live::stream::Spec)>,
    operation_name: Option<&str>,
    variables: &apollo_compiler::response::JsonMap,
) -> Result<Option<(String, crate::live::stream::Spec)>, String> {
    let Some((text, spec)) = stream else {
        return Ok(None);
    };
    let vars = spec.variables(variables, crate::live::stream::PAGE);
    match state.preparer.prepare(&text, operation_name, &vars) {
        Ok(_) => Ok(Some((text, spec))),
        Err(Refused(errors)) => Err(errors.first().map_or_else(
            || "the subscription cannot run".to_owned(),
            |e| e.message.clone(),
        )),
    }
}

/// A request-level error (no `data`) with `extensions.code` and more extensions.
fn request_error(
    message: String,
    code: &str,
    more: &[(&str, async_graphql::Value)],
) -> async_graphql::Response {
    let mut e = async_graphql::ServerError::new(message, None);
    let ext = e.extensions.get_or_insert_with(Default::default);
    ext.set("code", code);
    for (k, v) in more {
        ext.set(*k, v.clone());
    }
    async_graphql::Response::from_errors(vec![e])
}

/// An automatic persisted query's document: from this instance's bounded store, else from
/// the database, where every instance registers what clients send it, so a document
/// registered through one instance is found through any other. The database is asked only
/// on a local miss (and written only on a registration); when it cannot answer, the client
/// is asked for the document, which the protocol handles.
async fn shared_document(
    state: &AppState,
    hash: crate::documents::persisted::Hash,
    query: Option<&str>,
) -> Result<Arc<str>, ApqError> {
    use crate::db::persisted_queries as shared;
    let session = Session::unmetered(state.db.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let hex = hex::encode(hash);
    match query {
        Some(q) => {
            let doc = state.persisted.register(hash, q)?;
            if let Err(e) = shared::register(&session, &hex, &doc, now).await {
                tracing::warn!(error = %e.detail(), "sharing a persisted query failed");
            }
            Ok(doc)
        }
        None => {
            if let Some(doc) = state.persisted.get(&hash) {
                return Ok(doc);
            }
            match shared::take(&session, &hex, now).await {
                Ok(Some(doc)) if crate::documents::persisted::hash_of(&doc) == hash => {
                    Ok(state.persisted.register(hash, &doc)?)
                }
                Ok(_) => Err(ApqError::NotFound),
                Err(e) => {
                    tracing::warn!(error = %e.detail(), "reading a shared persisted query failed");
                    Err(ApqError::NotFound)
                }
            }
        }
    }
}

/// The request's document: the trusted document its `documentId` names; for an automatic
/// persisted query (`extensions.persistedQuery`), the trusted or stored document its hash
/// names; or its `query`. With `EAGERQL_TRUSTED_ONLY` only trusted documents are returned.
async fn document(state: &AppState, params: &Params) -> Result<Arc<str>, ApqError> {
    let trusted_only = state.config.documents.trusted_only;
    if let Some(id) = &params.document_id {
        return state
            .trusted
            .by_document_id(id)
            .ok_or(ApqError::UnknownDocument);
    }
    let pq = params
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"));
    match pq {
        None => {
            let query = params.query.as_deref().unwrap_or_default();
            if trusted_only && !state.trusted.contains_text(query) {
                return Err(ApqError::NotInList);
            }
            Ok(query.into())
        }
        Some(Json::Object(pq)) => {
            let hex = pq.get("sha256Hash").and_then(Json::as_str).ok_or_else(|| {
                ApqError::Malformed("persistedQuery.sha256Hash must be a string".to_owned())
            })?;
            let version = pq.get("version").and_then(Json::as_i64);
            let hash = crate::documents::persisted::requested_hash(version, hex)?;
            if let Some(doc) = state.trusted.by_hash(&hash) {
                return match &params.query {
                    Some(q) if **q != *doc => Err(ApqError::Mismatch),
                    _ => Ok(doc),
                };
            }
            if trusted_only {
                // A client that registers a document it was not built with is refused; one
                // that only sent the hash learns the server does not know it.
                return Err(if params.query.is_some() {
                    ApqError::NotInList
                } else {
                    ApqError::NotFound
                });
            }
            shared_document(state, hash, params.query.as_deref()).await
        }
        Some(_) => Err(ApqError::Malformed(
            "extensions.persistedQuery must be an object".to_owned(),
        )),
    }
}

/// The statements a query needs and its plans, made ahead when the request needs them
/// before anything runs: under the statement budget with several root fields (each root field
/// reserves before its first statement, but an earlier one could run before a later one finds
/// the budget spent), for `x-eagerql-expect-statements`, and for `extensions.plan`. Only
/// queries are planned ahead (a mutation's statements depend on what it writes). `Err`: the
/// request's answer, refused before any SQL.
async fn plan_ahead(
    state: &AppState,
    who: Who,
    prepared: &Prepared,
    asks: DebugAsks,
) -> Result<Option<(usize, Vec<Json>)>, async_graphql::Response> {
    let budget = state.config.budget();
    let several_roots = prepared.shape.len() > 1;
    let needed = asks.expect.is_some()
        || asks.plan
        || (budget.is_some() && several_roots && prepared.ty == OperationType::Query);
    if !needed {
        return Ok(None);
    }
    if prepared.ty != OperationType::Query {
        return match asks.expect {
            Some(_) => Err(request_error(
                format!("{EXPECT_HEADER} applies to queries; this operation is a mutation"),
                "BAD_USER_INPUT",
                &[],
            )),
            None => Ok(None),
        };
    }
    // Boxed: a run of the executor that plans only, on the rarer path.
    let (planned, plans) = Box::pin(crate::documents::predict::planned(state, who, prepared)).await;
    if let Some(budget) = budget
        && planned > budget
    {
        return Err(request_error(
            format!(
                "this request needs {planned} SQL statements, more than the budget of \
                 {budget}; nothing ran"
            ),
            "LIMIT_EXCEEDED",
            &[("planned", async_graphql::Value::from(planned as u64))],
        ));
    }
    if let Some(expected) = asks.expect
        && expected != planned
    {
        return Err(request_error(
            format!(
                "this query's plan needs {planned} SQL statements, not the {expected} of \
                 {EXPECT_HEADER}; nothing ran"
            ),
            "STATEMENT_COUNT_MISMATCH",
            &[
                ("expected", async_graphql::Value::from(expected as u64)),
                ("planned", async_graphql::Value::from(planned as u64)),
            ],
        ));
    }
    Ok(Some((planned, plans)))
}

/// `extensions.plan`: the planned statements (`null` for a mutation) and each root field's
/// plan.
fn plan_extension(planned: Option<(usize, Vec<Json>)>) -> async_graphql::Value {
    let (statements, roots) = match planned {
        Some((n, roots)) => (async_graphql::Value::from(n as u64), roots),
        None => (async_graphql::Value::Null, Vec::new()),
    };
    let mut plan = async_graphql::indexmap::IndexMap::new();
    plan.insert(async_graphql::Name::new("statements"), statements);
    plan.insert(
        async_graphql::Name::new("roots"),
        async_graphql::Value::from_json(Json::Array(roots)).unwrap_or_default(),
    );
    async_graphql::Value::Object(plan)
}

/// A live subscriber's answer now.
#[derive(Debug)]
pub enum LiveAnswer {
    /// The JSON body, as a query's, and what it read.
    Answer(Vec<u8>, crate::db::changes::Reads),
    /// The database could not be reached: nothing to tell the subscriber yet (the change
    /// feed reports everything as changed once it is back).
    Unavailable,
}

/// A live subscriber's answer now: `live` run as its query twin by `viewer`, its statements
/// run by `mux` together with the other subscribers' (see [`crate::db::multiplex`]).
/// `Err`: the operation no longer runs (its errors).
pub async fn live_answer(
    state: &AppState,
    mux: &Arc<crate::db::multiplex::Multiplexer>,
    who: Who,
    live: &crate::live::Operation,
) -> Result<LiveAnswer, Json> {
    let log = Arc::new(
        StatementLog::new(state.config.budget()).with_row_budget(state.config.row_budget()),
    );
    let prepared =
        match state
            .preparer
            .prepare(&live.query, live.operation_name.as_deref(), &live.variables)
        {
            Ok(p) => p,
            Err(Refused(errors)) => return Err(serde_json::to_value(errors).unwrap_or_default()),
        };
    let query = live.query.to_string();
    let response = match run(
        state,
        &log,
        who,
        prepared,
        query,
        (None, DebugAsks::default()),
        Some(mux),
    )
    .await
    {
        Ok(r) => r,
        Err(errors) => async_graphql::Response::from_errors(errors),
    };
    let mut response = response;
    ensure_error_codes(&mut response, true);
    let unavailable = response.errors.iter().any(|e| {
        e.extensions.as_ref().and_then(|x| x.get("code"))
            == Some(&async_graphql::Value::from("SERVICE_UNAVAILABLE"))
    });
    if unavailable {
        return Ok(LiveAnswer::Unavailable);
    }
    Ok(LiveAnswer::Answer(
        response_body(Some(&response.data), &response),
        log.take_reads(),
    ))
}

/// Executes a prepared operation in the request's session (or, for a live subscriber, on
/// `shared`), and completes the response (key order, null propagation). `Err`: no database
/// connection could be had for it.
async fn run(
    state: &AppState,
    log: &Arc<StatementLog>,
    who: Who,
    prepared: Prepared,
    query: String,
    (extensions, asks): (Option<Map<String, Json>>, DebugAsks),
    shared: Option<&Arc<crate::db::multiplex::Multiplexer>>,
) -> Result<async_graphql::Response, Vec<async_graphql::ServerError>> {
    let planned = match plan_ahead(state, who, &prepared, asks).await {
        Ok(planned) => planned,
        Err(refused) => return Ok(refused),
    };
    // One session per request. A query reads one snapshot on one connection; a mutation's
    // fields each run their own write transaction; a live subscriber's statements run with
    // the other subscribers' of its operation.
    // Every load of the request reads only what its viewer may see.
    let session = match shared {
        Some(mux) => Session::shared(mux.clone(), log.clone()).as_viewer(who.viewer),
        None => {
            let base = Session::new(state.db.clone(), log.clone()).as_viewer(who.viewer);
            if prepared.ty == OperationType::Query && state.config.execution.read_snapshot {
                base.begin_read()
            } else {
                base
            }
        }
    };
    // The whole request takes its connection now, or fails whole.
    if prepared.reads_data
        && shared.is_none()
        && let Err(err) = session.open().await
    {
        tracing::warn!(error = %err.detail(), "no database connection for the request");
        let code = err.code();
        let mut e = async_graphql::ServerError::new(err.message(), None);
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
        return Err(vec![e]);
    }
    let rc = request_context(state, &session, who, &prepared.form);
    let lazy = (!rc.strict).then(|| {
        let loader: LazyLoader = Arc::new(RequestLoader::new(session.clone()));
        loader
    });
    let mut request = Request::new(query).variables(prepared.variables).data(rc);
    if let Some(lazy) = lazy {
        request = request.data(lazy);
    }
    request.set_parsed_query(prepared.document);
    if let Some(ext) = extensions {
        for (k, v) in ext {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                request.extensions.insert(k, v);
            }
        }
    }
    let mut response = state.schema.execute(request).await;
    // Ends the read snapshot and gives the connection back. (On a panic, a disconnect or a
    // timeout this line is never reached: dropping the session rolls back instead.)
    if let Err(err) = session.end_read().await {
        tracing::warn!(error = %err.detail(), "ending the request's transaction failed");
    }
    // A mutation that could not reach the database wrote nothing: like a query, it is one
    // 503 for the whole request, not a 200 with `data: null` (once a field committed, its
    // answer stands and the others' errors travel beside it).
    let unavailable = |e: &async_graphql::ServerError| {
        e.extensions.as_ref().and_then(|x| x.get("code"))
            == Some(&async_graphql::Value::from("SERVICE_UNAVAILABLE"))
    };
    if prepared.ty == OperationType::Mutation
        && !response.errors.is_empty()
        && response.errors.iter().all(unavailable)
        && !log.control().contains(&"commit")
    {
        let mut first = response.errors.swap_remove(0);
        first.path.clear();
        first.locations.clear();
        return Err(vec![first]);
    }
    operation::finish(&mut response.data, &prepared.shape);
    if asks.plan {
        response
            .extensions
            .insert("plan".to_owned(), plan_extension(planned));
    }
    Ok(response)
}

/// The JSON body of a GraphQL response. `data` is written by [`json::write_value`], which
/// splices in the JSON text the renderer wrote; errors and extensions by serde.
fn response_body(
    data: Option<&async_graphql::Value>,
    response: &async_graphql::Response,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, json::size_hint) + 1024);
    match write_body(&mut out, data, response) {
        Ok(()) => out,
        Err(_) => br#"{"errors":[{"message":"an internal error occurred","extensions":{"code":"INTERNAL"}}]}"#
            .to_vec(),
    }
}

fn write_body(
    out: &mut Vec<u8>,
    data: Option<&async_graphql::Value>,
    response: &async_graphql::Response,
) -> serde_json::Result<()> {
    let mut sep = "{";
    if let Some(data) = data {
        out.extend_from_slice(b"{\"data\":");
        json::write_value(out, data);
        sep = ",";
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(b"\"errors\":");
        serde_json::to_writer(&mut *out, &response.errors)?;
        sep = ",";
    }
    if !response.extensions.is_empty() {
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(b"\"extensions\":");
        serde_json::to_writer(&mut *out, &response.extensions)?;
        sep = ",";
    }
    // An empty body is still an object.
    if sep == "{" {
        out.push(b'{');
    }
    out.push(b'}');
    Ok(())
}
