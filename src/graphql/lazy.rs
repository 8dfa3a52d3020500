//! Relationships that no plan loaded (lazy mode, `EAGERQL_PLAN=lazy`, which shows what the
//! planner saves): the renderer asks for each level's missing children of all its parents at
//! once, through a per-request DataLoader, so an unplanned edge costs one statement per level,
//! relationship and argument set, never one per parent. The DataLoader also caches, so a row
//! asked for twice in one request is loaded once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};

use super::preload::{build, build_batch};
use super::types::{Obj, Objs};
use crate::db::Session;
use crate::db::load::{self, Parents, RootQuery};
use crate::entities::Rel;
use crate::error::{AppError, AppResult};
use crate::planner::{Batch, EdgeArgs, Node};

/// One parent's children over one edge, with the children's plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManyKey {
    edge: Rel,
    args: EdgeArgs,
    node: Arc<Node>,
    parent: i64,
}

/// One row by id, with its plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OneKey {
    node: Arc<Node>,
    id: i64,
}

/// Runs the batched statements in the request's session.
pub struct EdgeLoader {
    session: Session,
}

impl Loader<ManyKey> for EdgeLoader {
    type Value = Objs;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[ManyKey]) -> Result<HashMap<ManyKey, Objs>, Arc<AppError>> {
        let mut groups: HashMap<(Rel, EdgeArgs, Arc<Node>), Vec<i64>> = HashMap::new();
        for k in keys {
            groups
                .entry((k.edge, k.args.clone(), k.node.clone()))
                .or_default()
                .push(k.parent);
        }
        let mut out = HashMap::new();
        for ((edge, args, node), mut parents) in groups {
            parents.sort_unstable();
            parents.dedup();
            let batch = Batch {
                edge,
                args: args.clone(),
                node: (*node).clone(),
            };
            let rows =
                load::fetch_batch(&self.session, &batch, parents.clone(), Parents::Many).await?;
            let batched = build_batch(&self.session, &batch, rows).await?;
            for parent in parents {
                let key = ManyKey {
                    edge,
                    args: args.clone(),
                    node: node.clone(),
                    parent,
                };
                out.insert(key, batched.of(parent));
            }
        }
        Ok(out)
    }
}

impl Loader<OneKey> for EdgeLoader {
    type Value = Obj;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[OneKey]) -> Result<HashMap<OneKey, Obj>, Arc<AppError>> {
        let mut groups: HashMap<Arc<Node>, Vec<i64>> = HashMap::new();
        for k in keys {
            groups.entry(k.node.clone()).or_default().push(k.id);
        }
        let mut out = HashMap::new();
        for (node, mut ids) in groups {
            ids.sort_unstable();
            ids.dedup();
            let loaded = load::fetch_root(&self.session, &node, RootQuery::ByIds(ids)).await?;
            let objs = build(&self.session, &node, loaded).await?;
            for obj in objs {
                let key = OneKey {
                    node: node.clone(),
                    id: obj.id(),
                };
                out.insert(key, obj);
            }
        }
        Ok(out)
    }
}

/// The request's loader of unplanned relationships, as request data.
pub type LazyLoader = Arc<RequestLoader>;

/// A per-request DataLoader over the request's session.
pub struct RequestLoader {
    loader: DataLoader<EdgeLoader>,
}

impl RequestLoader {
    /// A loader for one request's session. Callers hand it whole levels at once, so it
    /// batches without waiting on a timer, and never splits a level.
    pub fn new(session: Session) -> Self {
        RequestLoader {
            loader: DataLoader::new(EdgeLoader { session }, tokio::spawn)
                .delay(Duration::ZERO)
                .max_batch_size(usize::MAX),
        }
    }

    /// The children of every parent in `parents` over `edge`, by parent.
    pub async fn many(
        &self,
        edge: Rel,
        args: EdgeArgs,
        node: Arc<Node>,
        parents: Vec<i64>,
    ) -> AppResult<HashMap<i64, Objs>> {
        let keys = parents.into_iter().map(|parent| ManyKey {
            edge,
            args: args.clone(),
            node: node.clone(),
            parent,
        });
        let found = self.loader.load_many(keys).await.map_err(unshare)?;
        Ok(found.into_iter().map(|(k, v)| (k.parent, v)).collect())
    }

    /// The rows with the ids `ids`, by id.
    pub async fn one(&self, node: Arc<Node>, ids: Vec<i64>) -> AppResult<HashMap<i64, Obj>> {
        let keys = ids.into_iter().map(|id| OneKey {
            node: node.clone(),
            id,
        });
        let found = self.loader.load_many(keys).await.map_err(unshare)?;
        Ok(found.into_iter().map(|(k, v)| (k.id, v)).collect())
    }
}

fn unshare(err: Arc<AppError>) -> AppError {
    Arc::try_unwrap(err).unwrap_or_else(|shared| shared.replicate())
}
