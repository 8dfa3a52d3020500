//! Relationships that no plan loaded, in non-strict mode: a per-request DataLoader batches
//! them, so an unplanned edge costs one statement per batch of parents (per level, edge and
//! argument set), never one per parent. The DataLoader batches on a short timer, so how many
//! batches a level takes can vary with load; planned loads, which are the default, never do.
//!
//! With `EAGERQL_PLAN=lazy` every relationship goes this way (the lesson's `selectinload`
//! without lookahead), which shows what the planner saves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use futures_util::future::BoxFuture;

use super::preload::build;
use super::types::{Lazy, Obj};
use crate::db::Session;
use crate::db::load::{self, RootQuery};
use crate::error::{AppError, AppResult};
use crate::planner::{self, Batch, EdgeArgs, Entity, Field, Limits, Node, ToMany};

/// The DataLoader's batching window.
const DELAY: Duration = Duration::from_millis(10);

/// One parent's children over one edge, with the children's plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManyKey {
    edge: ToMany,
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
    type Value = Vec<Obj>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[ManyKey]) -> Result<HashMap<ManyKey, Vec<Obj>>, Arc<AppError>> {
        let mut groups: HashMap<(ToMany, EdgeArgs, Arc<Node>), Vec<i64>> = HashMap::new();
        for k in keys {
            groups
                .entry((k.edge, k.args, k.node.clone()))
                .or_default()
                .push(k.parent);
        }
        let mut out = HashMap::new();
        for ((edge, args, node), mut parents) in groups {
            parents.sort_unstable();
            parents.dedup();
            let batch = Batch {
                edge,
                args,
                node: (*node).clone(),
            };
            let rows = load::fetch_batch(&self.session, &batch, parents.clone()).await?;
            let (owners, loaded): (Vec<i64>, Vec<_>) = rows.into_iter().unzip();
            let objs = build(&self.session, &batch.node, loaded).await?;
            let mut by_parent: HashMap<i64, Vec<Obj>> = HashMap::new();
            for (owner, obj) in owners.into_iter().zip(objs) {
                by_parent.entry(owner).or_default().push(obj);
            }
            for parent in parents {
                let key = ManyKey {
                    edge,
                    args,
                    node: node.clone(),
                    parent,
                };
                out.insert(key, by_parent.remove(&parent).unwrap_or_default());
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
            let ids: Vec<i64> = loaded.iter().map(|l| l.row.id()).collect();
            let objs = build(&self.session, &node, loaded).await?;
            for (id, obj) in ids.into_iter().zip(objs) {
                out.insert(
                    OneKey {
                        node: node.clone(),
                        id,
                    },
                    obj,
                );
            }
        }
        Ok(out)
    }
}

/// The request's [`Lazy`] loader.
pub struct RequestLoader {
    loader: DataLoader<EdgeLoader>,
    limits: Limits,
    /// Whether the children's own sub-selection is planned (eager) or left lazy too.
    eager: bool,
}

impl RequestLoader {
    /// A loader for one request's session.
    pub fn new(session: Session, limits: Limits, eager: bool) -> Self {
        RequestLoader {
            loader: DataLoader::new(EdgeLoader { session }, tokio::spawn).delay(DELAY),
            limits,
            eager,
        }
    }

    fn plan(&self, entity: Entity, selection: &[Field]) -> AppResult<Node> {
        if self.eager {
            planner::plan(entity, selection, self.limits).map_err(|e| AppError::BadInput(e.0))
        } else {
            Ok(planner::plan_scalars(entity, selection))
        }
    }
}

fn unshare(err: Arc<AppError>) -> AppError {
    Arc::try_unwrap(err).unwrap_or_else(|shared| shared.replicate())
}

impl Lazy for RequestLoader {
    fn many(
        &self,
        edge: ToMany,
        args: EdgeArgs,
        parent: i64,
        selection: Vec<Field>,
    ) -> BoxFuture<'_, AppResult<Vec<Obj>>> {
        Box::pin(async move {
            let node = Arc::new(self.plan(edge.target(), &selection)?);
            let key = ManyKey {
                edge,
                args,
                node,
                parent,
            };
            Ok(self
                .loader
                .load_one(key)
                .await
                .map_err(unshare)?
                .unwrap_or_default())
        })
    }

    fn one(
        &self,
        entity: Entity,
        id: i64,
        selection: Vec<Field>,
    ) -> BoxFuture<'_, AppResult<Vec<Obj>>> {
        Box::pin(async move {
            let node = Arc::new(self.plan(entity, &selection)?);
            let found = self
                .loader
                .load_one(OneKey { node, id })
                .await
                .map_err(unshare)?;
            Ok(found.into_iter().collect())
        })
    }
}
