//! Statement counts known before any SQL runs.
//!
//! A query's plans are pure: each root field plans what it loads (its root statement, its
//! joins, one batch per to-many edge and argument set) before its first statement runs. A
//! *planning-only* run executes the operation's own resolvers against a planning-only
//! [`StatementLog`]: each root field checks its access and arguments, plans (or takes the plan
//! its canonical form keeps) and reserves its statements exactly as it does for real, and the
//! reservation tells it to answer without running them (`Reserved::PlanOnly`). No connection
//! is taken and nothing touches the database, so the same pass serves
//! `x-eagerql-expect-statements`, `extensions.plan`, `eagerql check` and the start-up check of
//! trusted documents, and its errors are the ones the real run gives.

use std::net::IpAddr;
use std::sync::Arc;

use async_graphql::Request;
use serde_json::Value as Json;

use crate::config::PlanMode;
use crate::db::{Session, StatementLog};
use crate::graphql::operation::{Form, Prepared};
use crate::graphql::{OutputBudget, RequestContext};
use crate::model::Viewer;
use crate::server::state::AppState;

/// Who sent a request.
#[derive(Copy, Clone, Debug)]
pub struct Who {
    /// The signed-in account, if any.
    pub viewer: Viewer,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
}

/// What a query's plans need.
#[derive(Debug)]
pub struct Prediction {
    /// SQL statements the query runs.
    pub statements: usize,
    /// Each planned root field with its statements and plan tree, in order.
    pub roots: Vec<Json>,
    /// Errors the query's fields give before any SQL (`FORBIDDEN`, `BAD_USER_INPUT` from the
    /// planner, a refused cursor...): the same the real run gives.
    pub errors: Vec<async_graphql::ServerError>,
}

/// The request's context for `session` (the one place it is built, for real and
/// planning-only runs).
pub fn request_context(
    state: &AppState,
    session: &Session,
    who: Who,
    form: &Form,
) -> RequestContext {
    RequestContext {
        session: session.clone(),
        limits: state.config.limits(),
        strict: state.config.execution.strict,
        eager: state.config.execution.plan == PlanMode::Eager,
        hasher: state.hasher.clone(),
        viewer: who.viewer,
        client: who.client,
        keys: state.keys.clone(),
        limiter: state.limiter.clone(),
        // Every answer, whatever its root, is bounded: a mutation writes its answer inside
        // its transaction, so one over the budget rolls the write back (render::Written).
        output: Arc::new(OutputBudget::new(state.config.response_cap())),
        form: Some(form.clone()),
    }
}

/// The statements a prepared query needs and its plans per root field: kept from an earlier
/// request of the same form, variables and viewer, or planned now (see [`predict`]).
pub async fn planned(state: &AppState, who: Who, prepared: &Prepared) -> (usize, Vec<Json>) {
    let variables = serde_json::to_string(&prepared.variables).unwrap_or_default();
    if let Some(kept) = state.plans.get(&prepared.form, who.viewer, &variables) {
        return kept;
    }
    let prediction = predict(state, who, prepared).await;
    state.plans.keep(
        &prepared.form,
        who.viewer,
        variables,
        prediction.statements,
        &prediction.roots,
    );
    (prediction.statements, prediction.roots)
}

/// Plans a prepared query (see the module documentation). Only queries are planned ahead: a
/// mutation's statements depend on what it writes.
pub async fn predict(state: &AppState, who: Who, prepared: &Prepared) -> Prediction {
    let log = Arc::new(StatementLog::planning_only());
    let session = Session::new(state.db.clone(), log.clone()).as_viewer(who.viewer);
    let rc = request_context(state, &session, who, &prepared.form);
    let mut request = Request::new(String::new())
        .variables(prepared.variables.clone())
        .data(rc);
    request.set_parsed_query(prepared.document.clone());
    let response = state.schema.execute(request).await;
    Prediction {
        statements: log.reserved(),
        roots: log.plans(),
        errors: response.errors,
    }
}
