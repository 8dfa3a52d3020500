//! Live queries: the subscribers of each subscription operation, and who is told what.
//!
//! A subscriber is one `subscribe` of a transport (a WebSocket's operation, a Server-Sent
//! Events stream): its operation, its access token (checked again before every message) and
//! where its messages go. Subscribers of the same document and operation form a [`Group`],
//! refreshed together by [`refresh`] whenever a committed write touches a table the group's
//! statements read; each subscriber is sent a message only when its answer changed.

pub mod refresh;
pub mod stream;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A valid subscription operation, as the live engine runs it again and again.
#[derive(Clone)]
pub struct Operation {
    /// The document's text.
    pub query: Arc<str>,
    /// The operation to run.
    pub operation_name: Option<String>,
    /// Its variables.
    pub variables: apollo_compiler::response::JsonMap,
    /// It is an event stream, not a live query: where the subscriber stands in it.
    pub stream: Option<Arc<stream::Spec>>,
}

// No `Debug` for the variables: they may hold secrets.
impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("operation_name", &self.operation_name)
            .finish_non_exhaustive()
    }
}

/// What the live engine tells a subscriber's transport.
#[derive(Debug)]
pub enum Delivery {
    /// The operation `op`'s answer changed: its new answer (a JSON body like a query's).
    Next {
        /// The client's id of the operation.
        op: Arc<str>,
        /// The answer.
        body: Vec<u8>,
    },
    /// The operation `op` ended with these errors (JSON array).
    Errors {
        /// The client's id of the operation.
        op: Arc<str>,
        /// The GraphQL errors.
        errors: serde_json::Value,
    },
    /// The subscriber's access token is no longer valid: the connection ends (graphql-ws
    /// 4403; an `UNAUTHENTICATED` error on a stream).
    Expired(String),
}

/// Hands a delivery to the subscriber's transport without waiting; `false`: its queue is full
/// (a client that does not read), and it is being closed.
pub type Deliver = Arc<dyn Fn(Delivery) -> bool + Send + Sync>;

/// One live subscription.
pub struct Subscriber {
    /// Unique in this instance.
    pub id: u64,
    /// The client's id of the operation (graphql-ws `id`).
    pub op: Arc<str>,
    /// What it runs.
    pub operation: Operation,
    /// Its access token (`None`: anonymous), checked before every message; shared by the
    /// subscriptions of one connection.
    pub token: Option<Arc<str>>,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// Where its messages go.
    pub deliver: Deliver,
    /// A hash of the last answer sent (0: none yet).
    last: AtomicU64,
    /// What its last answer read (`None`: not answered yet): only a change to those rows
    /// refreshes it.
    reads: Mutex<Option<crate::db::changes::Reads>>,
    /// It left (or was ended): nothing more is sent.
    gone: AtomicBool,
    /// Its messages carry `extensions.refresh` (the client sent `x-eagerql-debug`).
    debug: bool,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscriber of `operation`.
    pub fn new(
        op: &str,
        operation: Operation,
        token: Option<Arc<str>>,
        client: Option<IpAddr>,
        deliver: Deliver,
    ) -> Subscriber {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Subscriber {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            op: Arc::from(op),
            operation,
            token,
            client,
            deliver,
            last: AtomicU64::new(0),
            reads: Mutex::new(None),
            gone: AtomicBool::new(false),
            debug: false,
        }
    }

    /// The same, its messages carrying what each refresh did (`extensions.refresh`).
    pub fn debugged(self, debug: bool) -> Self {
        Subscriber { debug, ..self }
    }

    /// Whether it left.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Records what its latest answer read.
    fn read(&self, reads: crate::db::changes::Reads) {
        *self.reads.lock().unwrap_or_else(|e| e.into_inner()) = Some(reads.compact());
    }

    /// Forgets what it read: any set of changes refreshes it next.
    fn forget_reads(&self) {
        *self.reads.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether `set` may change its answer.
    fn may_change(&self, set: &crate::db::changes::ChangeSet) -> bool {
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|r| r.may_change(set))
    }

    /// Records `body` as its latest answer; `true` when it differs from the last one sent.
    fn changed(&self, body: &[u8]) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(body)
            | 1;
        self.last.swap(hash, Ordering::AcqRel) != hash
    }
}

/// Subscribers of the same document and operation.
#[derive(Debug, Default)]
pub struct Group {
    /// Groups are refreshed in the order they were formed.
    seq: u64,
    members: Vec<Arc<Subscriber>>,
    /// The tables its statements read (learned from its refreshes).
    tables: BTreeSet<&'static str>,
}

type GroupKey = (Arc<str>, Option<String>);

/// Every live subscription of this instance.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Wakes the refresher when subscribers join.
    joined: Notify,
    /// The refresher task was started.
    started: AtomicBool,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<GroupKey, Group>,
    /// Joined, not answered yet.
    joining: Vec<Arc<Subscriber>>,
    /// Event streams with events still to send: refreshed again soon.
    backlog: Vec<Arc<Subscriber>>,
    /// Members whose last refresh could not reach the database: refreshed again after a
    /// while, not left until the next change (there may be none).
    unreached: Vec<Arc<Subscriber>>,
    /// Subscribers in all.
    subscribers: usize,
    /// Groups formed so far.
    formed: u64,
}

/// What `/metrics` reports.
#[derive(Debug, Default)]
pub struct Counts {
    /// Refreshes of a group (or of joining subscribers).
    pub refreshes: AtomicU64,
    /// Statements they sent.
    pub statements: AtomicU64,
    /// Rows they read.
    pub rows: AtomicU64,
    /// Messages sent to subscribers.
    pub messages: AtomicU64,
    /// Subscribers refreshed (summed over refreshes).
    pub refreshed: AtomicU64,
    /// The latest refreshes, newest last (at most [`HISTORY`]).
    last: Mutex<std::collections::VecDeque<Refresh>>,
    /// The number of the latest set of changes whose refreshes are all done.
    handled: AtomicU64,
}

/// What one refresh did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Subscribers refreshed together.
    pub group: usize,
    /// Statements sent for all of them.
    pub statements: usize,
    /// Rows those returned.
    pub rows: usize,
    /// Subscribers whose answer changed (each sent a message).
    pub sent: usize,
    /// From the change set's arrival (or the join) to the last message handed on.
    pub micros: u64,
    /// The set of changes it followed ([`crate::db::changes::ChangeSet::seq`]; `None`: it
    /// answered joining subscribers, or followed missed sets).
    pub seq: Option<u64>,
}

impl Refresh {
    /// `body` (a JSON answer) with `extensions.refresh`: the refresh's subscribers,
    /// statements, rows, and the milliseconds from the change's arrival to now.
    fn annotate(&self, body: Vec<u8>, since: std::time::Instant) -> Vec<u8> {
        let Ok(serde_json::Value::Object(mut answer)) = serde_json::from_slice(&body) else {
            return body;
        };
        let ext = answer
            .entry("extensions")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(ext) = ext {
            ext.insert(
                "refresh".to_owned(),
                serde_json::json!({
                    "subscribers": self.group,
                    "statements": self.statements,
                    "rows": self.rows,
                    "sinceChangeMs": since.elapsed().as_secs_f64() * 1000.0,
                }),
            );
        }
        serde_json::to_vec(&answer).unwrap_or(body)
    }
}

/// Refreshes kept for [`Counts::recent`].
const HISTORY: usize = 64;

impl Counts {
    /// The number ([`crate::db::changes::ChangeSet::seq`]) of the latest set of changes whose
    /// refreshes are all done: every message it caused has been handed to its connection.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// The latest refresh.
    pub fn last(&self) -> Option<Refresh> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .back()
            .copied()
    }

    /// The latest refreshes (up to 64), oldest first.
    pub fn recent(&self) -> Vec<Refresh> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn record(&self, r: Refresh) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.statements
            .fetch_add(r.statements as u64, Ordering::Relaxed);
        self.rows.fetch_add(r.rows as u64, Ordering::Relaxed);
        self.refreshed.fetch_add(r.group as u64, Ordering::Relaxed);
        self.messages.fetch_add(r.sent as u64, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() == HISTORY {
            last.pop_front();
        }
        last.push_back(r);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber, to be sent its first answer soon; `false` when this instance
    /// already follows `max` subscriptions.
    pub fn join(&self, sub: Arc<Subscriber>, max: usize) -> bool {
        let mut inner = self.lock();
        if inner.subscribers >= max {
            return false;
        }
        inner.subscribers += 1;
        inner.joining.push(sub);
        drop(inner);
        self.joined.notify_one();
        true
    }

    /// Removes subscriber `id` (it left, or its connection closed).
    pub fn leave(&self, id: u64) {
        let mut inner = self.lock();
        let mut found = None;
        if let Some(at) = inner.joining.iter().position(|s| s.id == id) {
            found = Some(inner.joining.swap_remove(at));
        } else {
            for (key, group) in &mut inner.groups {
                if let Some(at) = group.members.iter().position(|s| s.id == id) {
                    found = Some(group.members.swap_remove(at));
                    if group.members.is_empty() {
                        let key = key.clone();
                        inner.groups.remove(&key);
                    }
                    break;
                }
            }
        }
        if let Some(sub) = found {
            sub.gone.store(true, Ordering::Release);
            inner.subscribers -= 1;
        }
    }

    /// Gives `operation` the document text of the group it will join, when there is one:
    /// one copy of a text per group, however many subscribers follow it.
    pub fn share_text(&self, operation: &mut Operation) {
        let key = (operation.query.clone(), operation.operation_name.clone());
        if let Some(((text, _), _)) = self.lock().groups.get_key_value(&key) {
            operation.query = text.clone();
        }
    }

    /// Refreshes the event stream `sub` again soon: its page was full.
    fn follow_up(&self, sub: Arc<Subscriber>) {
        let mut inner = self.lock();
        if !inner.backlog.iter().any(|s| s.id == sub.id) {
            inner.backlog.push(sub);
        }
    }

    /// Refreshes `sub` again after a while: the database could not be reached for it.
    fn retry_later(&self, sub: Arc<Subscriber>) {
        let mut inner = self.lock();
        if !inner.unreached.iter().any(|s| s.id == sub.id) {
            inner.unreached.push(sub);
        }
    }

    fn has_unreached(&self) -> bool {
        !self.lock().unreached.is_empty()
    }

    fn take_unreached(&self) -> Vec<Arc<Subscriber>> {
        std::mem::take(&mut self.lock().unreached)
    }

    fn has_backlog(&self) -> bool {
        !self.lock().backlog.is_empty()
    }

    fn take_backlog(&self) -> Vec<Arc<Subscriber>> {
        std::mem::take(&mut self.lock().backlog)
    }

    /// Subscriptions followed now.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers
    }

    /// Groups now.
    pub fn groups(&self) -> usize {
        self.lock().groups.len()
    }

    /// What the refreshes did so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Takes the subscribers that joined since the last call, now members of their groups.
    fn take_joining(&self) -> Vec<Arc<Subscriber>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let joining = std::mem::take(&mut inner.joining);
        for sub in &joining {
            let key = (
                sub.operation.query.clone(),
                sub.operation.operation_name.clone(),
            );
            let formed = &mut inner.formed;
            let group = inner.groups.entry(key).or_insert_with(|| {
                *formed += 1;
                Group {
                    seq: *formed,
                    ..Group::default()
                }
            });
            group.members.push(sub.clone());
        }
        joining
    }

    /// The members whose answers `set` may change (`None`: anything may have changed), by
    /// group, in the order the groups were formed.
    fn touched(
        &self,
        set: Option<&crate::db::changes::ChangeSet>,
    ) -> Vec<(GroupKey, Vec<Arc<Subscriber>>)> {
        let inner = self.lock();
        let mut groups: Vec<(u64, GroupKey, Vec<Arc<Subscriber>>)> = inner
            .groups
            .iter()
            // A group's tables say at once when none of its members can change.
            .filter(|(_, g)| match set {
                None => true,
                Some(_) if g.tables.is_empty() => true,
                Some(set) => g.tables.iter().any(|t| set.touches(t)),
            })
            .map(|(k, g)| {
                let members = g
                    .members
                    .iter()
                    .filter(|m| set.is_none_or(|set| m.may_change(set)))
                    .cloned()
                    .collect();
                (g.seq, k.clone(), members)
            })
            .filter(|(_, _, members): &(u64, GroupKey, Vec<Arc<Subscriber>>)| !members.is_empty())
            .collect();
        drop(inner);
        groups.sort_unstable_by_key(|g| g.0);
        groups.into_iter().map(|(_, k, m)| (k, m)).collect()
    }

    /// Adds `tables` to what group `key` reads.
    fn learned(&self, key: &GroupKey, tables: &BTreeSet<&'static str>) {
        if let Some(g) = self.lock().groups.get_mut(key) {
            g.tables.extend(tables.iter().copied());
        }
    }
}
