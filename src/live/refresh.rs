//! The refresher: one task per instance that answers joining subscribers and, after every
//! set of committed changes, refreshes the groups whose statements read a changed table.
//!
//! A group's refresh runs every member's operation as its query twin, by the member's viewer,
//! through the same pipeline as a query, on sessions whose statements a
//! [`Multiplexer`] sends together: the refresh costs the operation's planned statements, once
//! per [`crate::config::LimitsConfig::live_batch`] members, whatever their number. All of
//! them read one snapshot on the primary (a replica may not have the change yet). A member is
//! sent its answer only when it differs from the last one it was sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::broadcast::error::RecvError;

use super::{Delivery, GroupKey, Refresh, Subscriber};
use crate::db::changes::Reads;
use crate::db::multiplex::Multiplexer;
use crate::db::{Session, StatementLog};
use crate::documents::predict::Who;
use crate::graphql::handler;
use crate::model::Viewer;
use crate::server::state::AppState;

/// Starts the refresher of `state`'s live subscriptions, once.
pub fn start(state: &AppState) {
    if !state.live.started.swap(true, Ordering::AcqRel) {
        tokio::spawn(run(state.clone()));
    }
}

async fn run(state: AppState) {
    let live = state.live.clone();
    let mut changes = state.db.changes().subscribe();
    let mut followed = false;
    loop {
        tokio::select! {
            biased;
            () = live.joined.notified() => {
                if !followed {
                    // From now on PostgreSQL announces every write to the model's tables.
                    if let Err(e) = state.db.follow(&crate::db::changes::TABLES).await {
                        tracing::warn!(error = %e, "following the tables failed; retried in the background");
                    }
                    followed = true;
                }
                refresh_grouped(&state, live.take_joining()).await;
            }
            set = changes.recv() => {
                let (groups, since, seq) = match set {
                    Ok(set) => {
                        let since = set.since.unwrap_or_else(Instant::now);
                        (live.touched(Some(&set)), since, Some(set.seq))
                    }
                    // Sets were missed: anything may have changed.
                    Err(RecvError::Lagged(_)) => (live.touched(None), Instant::now(), None),
                    Err(RecvError::Closed) => return,
                };
                for (key, members) in groups {
                    refresh(&state, &key, members, (since, seq)).await;
                }
                if let Some(seq) = seq {
                    live.counts().handled.store(seq, Ordering::Release);
                }
            }
            // Event streams with events still to send, once their transports have written
            // the last page.
            () = tokio::time::sleep(FOLLOW_UP), if live.has_backlog() => {
                refresh_grouped(&state, live.take_backlog()).await;
            }
            // Members the database could not be reached for (it restarted, or dropped the
            // pool's connections): a change made meanwhile may have no later one to follow.
            () = tokio::time::sleep(RETRY_UNREACHED), if live.has_unreached() => {
                refresh_grouped(&state, live.take_unreached()).await;
            }
        }
    }
}

/// How soon an event stream whose page was full is refreshed again.
const FOLLOW_UP: std::time::Duration = std::time::Duration::from_millis(20);

/// How soon a member whose refresh could not reach the database is refreshed again.
const RETRY_UNREACHED: std::time::Duration = std::time::Duration::from_millis(250);

/// Refreshes `subs` (joining, or following up), by group.
async fn refresh_grouped(state: &AppState, subs: Vec<Arc<Subscriber>>) {
    let mut by_group: HashMap<GroupKey, Vec<Arc<Subscriber>>> = HashMap::new();
    for sub in subs {
        let key = (
            sub.operation.query.clone(),
            sub.operation.operation_name.clone(),
        );
        by_group.entry(key).or_default().push(sub);
    }
    for (key, members) in by_group {
        refresh(state, &key, members, (Instant::now(), None)).await;
    }
}

/// What one member's refresh gave.
enum Answer {
    Body(Vec<u8>, Reads),
    /// An event stream's new events (see [`super::stream`]); `more`: its page was full.
    Events(Vec<Vec<u8>>, Reads, bool),
    /// The database could not be reached: nothing is sent, and the member is refreshed again
    /// after [`RETRY_UNREACHED`] (or by the next set of changes, whatever it touches).
    Unavailable,
    Errors(serde_json::Value),
    Expired,
}

/// Refreshes `members` of group `key` (see the module documentation).
async fn refresh(
    state: &AppState,
    key: &GroupKey,
    members: Vec<Arc<Subscriber>>,
    (since, seq): (Instant, Option<u64>),
) {
    let members: Vec<Arc<Subscriber>> = members.into_iter().filter(|m| !m.gone()).collect();
    let batch = usize::try_from(state.config.limits.live_batch).unwrap_or(usize::MAX);
    for chunk in members.chunks(batch.max(1)) {
        refresh_chunk(state, key, chunk, (since, seq)).await;
    }
}

/// Refreshes `chunk` (one multiplexed run) and hands on what changed.
async fn refresh_chunk(
    state: &AppState,
    key: &GroupKey,
    chunk: &[Arc<Subscriber>],
    (since, seq): (Instant, Option<u64>),
) {
    let live = &state.live;
    let log = Arc::new(StatementLog::new(None).with_hook(state.statement_hook.clone()));
    let session = Session::new(state.db.clone(), log)
        .as_viewer(Viewer::OPERATOR)
        .begin_read_primary();
    let mux = Multiplexer::new(session.clone());
    let answers = mux
        .run_all(chunk.iter().map(|m| answer(state, &mux, m)).collect())
        .await;
    if let Err(e) = session.end_read().await {
        tracing::warn!(error = %e.detail(), "ending a refresh's snapshot failed");
    }
    live.learned(key, &mux.tables());
    let mut report = Refresh {
        group: chunk.len(),
        statements: mux.statements(),
        rows: mux.rows(),
        sent: 0,
        micros: 0,
        seq,
    };
    // A message, with what the refresh did when its subscriber asked.
    let next = |member: &Subscriber, body: Vec<u8>| Delivery::Next {
        op: member.op.clone(),
        body: if member.debug {
            report.annotate(body, since)
        } else {
            body
        },
    };
    let mut sent = 0usize;
    for (member, answer) in chunk.iter().zip(answers) {
        if member.gone() {
            continue;
        }
        let kept = match answer {
            Answer::Body(body, reads) => {
                member.read(reads);
                if !member.changed(&body) {
                    continue;
                }
                sent += 1;
                (member.deliver)(next(member, body))
            }
            Answer::Events(bodies, reads, more) => {
                member.read(reads);
                let mut kept = true;
                for body in bodies {
                    sent += 1;
                    kept &= (member.deliver)(next(member, body));
                }
                if more && kept {
                    live.follow_up(member.clone());
                }
                kept
            }
            Answer::Unavailable => {
                member.forget_reads();
                live.retry_later(member.clone());
                continue;
            }
            Answer::Errors(errors) => {
                (member.deliver)(Delivery::Errors {
                    op: member.op.clone(),
                    errors,
                });
                false
            }
            Answer::Expired => {
                (member.deliver)(Delivery::Expired(
                    "Forbidden: the access token is invalid or expired".to_owned(),
                ));
                false
            }
        };
        if !kept {
            live.leave(member.id);
        }
    }
    report.sent = sent;
    report.micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(
        group = report.group,
        statements = report.statements,
        rows = report.rows,
        sent,
        micros = report.micros,
        "live refresh"
    );
    state.metrics.record_refresh(&report);
    live.counts().record(report);
}

/// One member's answer now, by its viewer (its token checked again).
async fn answer(state: &AppState, mux: &Arc<Multiplexer>, member: &Subscriber) -> Answer {
    let viewer = match &member.token {
        None => Viewer::Anonymous,
        Some(token) => match state.keys.verify(token).await {
            Ok(viewer) => viewer,
            Err(e) if e.unavailable => return Answer::Unavailable,
            Err(_) => return Answer::Expired,
        },
    };
    let who = Who {
        viewer,
        client: member.client,
    };
    // An event stream reads the page after its position.
    let stream = member.operation.stream.as_deref();
    let paged = stream.map(|stream| crate::live::Operation {
        variables: stream.variables(
            &member.operation.variables,
            super::stream::PAGE.min(state.config.limits.max_page_size),
        ),
        ..member.operation.clone()
    });
    let op = paged.as_ref().unwrap_or(&member.operation);
    match handler::live_answer(state, mux, who, op).await {
        Ok(handler::LiveAnswer::Answer(body, reads)) => match stream.map(|s| s.page(&body)) {
            None => Answer::Body(body, reads),
            Some(super::stream::Page::Events { bodies, more }) => {
                Answer::Events(bodies, reads, more)
            }
            Some(super::stream::Page::Errors(errors)) => Answer::Errors(errors),
        },
        Ok(handler::LiveAnswer::Unavailable) => Answer::Unavailable,
        Err(errors) => Answer::Errors(errors),
    }
}
