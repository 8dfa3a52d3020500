//! The `Mutation` root. Every field is one unit of work: one transaction, committed whole or
//! not at all, with statements whose count does not grow with the input (key lists and rows
//! travel as one array parameter). The result is then loaded with the same eager-loading plan
//! as a query, so whatever the client selects on it costs `1 + batches` statements.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::preload;
use super::render::Written;
use super::scalars::{DateTime, Decimal};
use super::types::first;
use super::types::{Order, User};
use super::{RequestContext, parse_id};
use crate::auth::{self, Issued};
use crate::db::auth as accounts;
use crate::db::load::RootQuery;
use crate::db::money::MAX_CENTS;
use crate::db::products::ProductUpsert;
use crate::db::{Session, order_items, orders, products, users};
use crate::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::model::{OrderStatus, Role, Viewer};
use crate::validate;

/// Most products one `importProducts` call accepts.
const MAX_IMPORT: usize = 50_000;
/// Rows per bulk statement of an import.
const IMPORT_BATCH: usize = 5_000;

/// A new user account.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// Unique e-mail address (stored lower-case).
    email: String,
    /// Unique user name: 3 to 100 letters, digits, `_`, `.`, `-`.
    username: String,
    /// 8 to 128 characters; stored only as an argon2id hash.
    password: String,
    /// Optional profile text, at most 2000 characters.
    bio: Option<String>,
}

/// One line of a new order.
#[derive(InputObject)]
pub struct OrderItemInput {
    /// The product.
    product_id: ID,
    /// Units (at least 1).
    quantity: i32,
}

/// A new order.
#[derive(InputObject)]
pub struct CreateOrderInput {
    /// The ordering user; must be active. Omitted: the signed-in viewer. A customer may
    /// order only for themselves.
    user_id: Option<ID>,
    /// The lines: at least one, each product at most once. Prices come from the catalogue.
    items: Vec<OrderItemInput>,
}

/// A product to insert, or to update when its SKU exists.
#[derive(InputObject)]
pub struct ProductInput {
    /// Display name.
    name: String,
    /// Stock-keeping unit: the key that decides insert or update.
    sku: String,
    /// Unit price, at most 2 decimals.
    price: Decimal,
    /// Units in stock (replaces the current stock on update).
    stock_quantity: i32,
}

/// A signed-in session: an access token for requests and a refresh token to renew it.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send it as `Authorization: Bearer <accessToken>`, valid until `expiresAt` (even
    /// after logout).
    access_token: String,
    /// When the access token expires.
    expires_at: DateTime,
    /// Exchange it with `refreshToken` for a new pair before the access token expires (each
    /// refresh token works once).
    refresh_token: String,
    /// The signed-in account.
    user: Written<User>,
}

/// What an import did.
#[derive(SimpleObject)]
pub struct ImportResult {
    /// Products created.
    inserted: i32,
    /// Existing products (same SKU) updated.
    updated: i32,
}

/// Runs `work` in a write transaction: commit on success, roll back on any error.
async fn unit_of_work<T>(
    session: &Session,
    work: impl AsyncFnOnce(&Session) -> AppResult<T>,
) -> AppResult<T> {
    let tx = session.begin_write().await?;
    match work(&tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            tx.rollback().await;
            Err(err)
        }
    }
}

/// Loads and writes the order a mutation wrote, with the client's selection, inside its
/// transaction.
async fn load_order(ctx: &Context<'_>, tx: &Session, id: i64) -> AppResult<Written<Order>> {
    let objs = preload::load_root_in(ctx, tx, Entity::Order, RootQuery::ById(id)).await?;
    let order: Order =
        first(objs).ok_or_else(|| AppError::NotFound(format!("order {id} does not exist")))?;
    Written::field(ctx, tx, &order).await
}

/// The payload of a login or refresh, in the transaction `tx` that issued it: the account is
/// loaded as the viewer it signed in as (the request itself was anonymous).
async fn auth_payload(ctx: &Context<'_>, tx: &Session, issued: Issued) -> AppResult<AuthPayload> {
    let viewer = Viewer::User {
        id: issued.user_id,
        role: issued.role,
    };
    let session = tx.as_viewer(viewer);
    let objs = preload::load_child_in(
        ctx,
        &session,
        "user",
        Entity::User,
        RootQuery::ById(issued.user_id),
    )
    .await?;
    let user: User =
        first(objs).ok_or_else(|| AppError::internal("the signed-in account vanished"))?;
    Ok(AuthPayload {
        access_token: issued.access_token,
        expires_at: DateTime(issued.expires_at),
        refresh_token: issued.refresh_token,
        user: Written::child(ctx, &session, "user", &user).await?,
    })
}

/// Loads and writes the user a mutation wrote, with the client's selection, inside its
/// transaction.
async fn load_user(ctx: &Context<'_>, tx: &Session, id: i64) -> AppResult<Written<User>> {
    let objs = preload::load_root_in(ctx, tx, Entity::User, RootQuery::ById(id)).await?;
    let user: User =
        first(objs).ok_or_else(|| AppError::NotFound(format!("user {id} does not exist")))?;
    Written::field(ctx, tx, &user).await
}

/// Changes to users, orders and products. Each field is one transaction.
pub struct Mutation;

/// Changes to users, orders and products. Each field runs in its own transaction and either
/// applies completely or not at all; in an operation with several fields they run in order,
/// each committed on its own.
#[Object]
impl Mutation {
    /// Creates a user. A taken email or username is `CONFLICT` with `extensions.field`.
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> Result<Written<User>> {
        let rc = RequestContext::of(ctx)?;
        let email = validate::email(&input.email).map_err(AppError::BadInput)?;
        let username = validate::username(&input.username).map_err(AppError::BadInput)?;
        validate::password(&input.password).map_err(AppError::BadInput)?;
        let bio = validate::bio(input.bio.as_deref()).map_err(AppError::BadInput)?;
        // Hashing is CPU and memory work by design: the bounded hashing workers do it.
        let hash = rc.hasher.hash(input.password).await?;
        let user = unit_of_work(&rc.session, async |tx: &Session| {
            let id = users::insert(tx, &email, &username, &hash, bio.as_deref()).await?;
            // Whoever signs up sees their new account (an administrator sees it anyway).
            let reader = if rc.viewer.is_admin() {
                tx.clone()
            } else {
                tx.as_viewer(Viewer::User {
                    id,
                    role: Role::Customer,
                })
            };
            load_user(ctx, &reader, id).await
        })
        .await?;
        Ok(user)
    }

    /// Signs in, giving an access token and a refresh token. A wrong password and an
    /// unknown e-mail address give the same `UNAUTHENTICATED` error, in the same time, and
    /// inactive accounts cannot sign in. Failed attempts are limited per account and per
    /// client address (`RATE_LIMITED`, with `Retry-After`).
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let rc = RequestContext::of(ctx)?;
        let email = email.trim().to_lowercase();
        // Counted before the password is checked, so concurrent attempts cannot all pass.
        let attempt = rc.limiter.reserve(&rc.session, &email, rc.client).await?;
        let found = accounts::credentials(&rc.session, &email).await?;
        // An unknown address is checked against an unusable hash, in the same time.
        let phc = found
            .as_ref()
            .map_or_else(|| "!".to_owned(), |c| c.password_hash.clone());
        let matches = rc.hasher.verify(password, phc).await?;
        let account = match found {
            Some(c) if matches && c.is_active => c,
            _ => {
                return Err(AppError::Unauthenticated(
                    "wrong e-mail address or password".to_owned(),
                )
                .into());
            }
        };
        Ok(unit_of_work(&rc.session, async |tx: &Session| {
            rc.limiter.succeeded(tx, &attempt).await?;
            let issued = auth::start_session(tx, &rc.keys, account.user_id, account.role).await?;
            auth_payload(ctx, tx, issued).await
        })
        .await?)
    }

    /// Exchanges a refresh token for a new access token and refresh token. Each refresh
    /// token works once, and using one again revokes every token of its login.
    async fn refresh_token(&self, ctx: &Context<'_>, token: String) -> Result<AuthPayload> {
        let rc = RequestContext::of(ctx)?;
        // A reused token's revocation is committed even though the call fails; an answer
        // over the byte budget rolls the rotation back, leaving the old token valid.
        let outcome = unit_of_work(&rc.session, async |tx: &Session| {
            match auth::rotate(tx, &rc.keys, &token).await? {
                Ok(issued) => Ok(Ok(auth_payload(ctx, tx, issued).await?)),
                Err(refused) => Ok(Err(refused)),
            }
        })
        .await?;
        Ok(outcome?)
    }

    /// Revokes a refresh token (its access tokens stay valid until they expire); `false`
    /// when the token was unknown or already revoked.
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        let rc = RequestContext::of(ctx)?;
        let hash = auth::token_hash(&refresh_token);
        Ok(unit_of_work(&rc.session, async |tx: &Session| {
            accounts::revoke_token(tx, &hash).await
        })
        .await?)
    }

    /// Marks a user inactive (administrators only): they keep their orders but cannot sign
    /// in or place new ones, and every refresh token of theirs is revoked.
    async fn deactivate_user(&self, ctx: &Context<'_>, id: ID) -> Result<Written<User>> {
        let rc = RequestContext::of(ctx)?;
        rc.require_admin("deactivateUser")?;
        let id = parse_id(&id, "deactivateUser.id")?;
        let user = unit_of_work(&rc.session, async |tx: &Session| {
            if !users::deactivate(tx, id).await? {
                return Err(AppError::NotFound(format!("user {id} does not exist")));
            }
            accounts::revoke_user(tx, id).await?;
            load_user(ctx, tx, id).await
        })
        .await?;
        Ok(user)
    }

    /// Places an order: unit prices come from the catalogue, the total is computed exactly,
    /// stock is taken with a conditional update so that concurrent orders never oversell.
    /// Any failure leaves nothing behind.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        input: CreateOrderInput,
    ) -> Result<Written<Order>> {
        let rc = RequestContext::of(ctx)?;
        let viewer = rc.require_user()?;
        let user_id = match &input.user_id {
            Some(id) => parse_id(id, "createOrder.userId")?,
            None => viewer,
        };
        if user_id != viewer && !rc.viewer.is_admin() {
            return Err(AppError::Forbidden(
                "a customer can place orders only for themselves".to_owned(),
            )
            .into());
        }
        let mut raw = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            raw.push((
                parse_id(&item.product_id, &format!("items[{i}].productId"))?,
                item.quantity,
            ));
        }
        let lines = validate::order_lines(&raw).map_err(AppError::BadInput)?;
        let order = unit_of_work(&rc.session, async |tx: &Session| {
            match users::active_for_order(tx, user_id).await? {
                None => return Err(AppError::NotFound(format!("user {user_id} does not exist"))),
                Some(false) => {
                    return Err(AppError::bad_input(format!(
                        "user {user_id} is inactive and cannot place orders"
                    )));
                }
                Some(true) => {}
            }
            let stock = products::lock_for_order(tx, lines.iter().map(|l| l.0).collect()).await?;
            let mut total: i64 = 0;
            for (i, (product, quantity)) in lines.iter().enumerate() {
                let Some(p) = stock.iter().find(|p| p.id == *product) else {
                    return Err(AppError::NotFound(format!(
                        "items[{i}]: product {product} does not exist"
                    )));
                };
                if p.stock < *quantity {
                    return Err(AppError::bad_input(format!(
                        "items[{i}]: insufficient stock for product {product} ({}): {quantity} requested, {} available",
                        p.sku, p.stock
                    )));
                }
                total = p
                    .price_cents
                    .checked_mul(*quantity)
                    .and_then(|line| total.checked_add(line))
                    .filter(|t| *t <= MAX_CENTS)
                    .ok_or_else(|| AppError::bad_input("the order total is too large"))?;
            }
            let taken = products::take_stock(tx, &lines).await?;
            if taken != lines.len() as u64 {
                // Only reachable if the stock changed after it was read: never on PostgreSQL
                // (rows locked) nor SQLite (one writer); kept as the guarantee's last check.
                return Err(AppError::bad_input("insufficient stock"));
            }
            let order_id = orders::insert(tx, user_id, total).await?;
            order_items::insert_lines(tx, order_id, &lines).await?;
            load_order(ctx, tx, order_id).await
        })
        .await?;
        Ok(order)
    }

    /// Moves an order along its life cycle: `PENDING -> SHIPPED -> COMPLETED`, or
    /// `PENDING | SHIPPED -> CANCELLED` (which returns the items' stock). Any other move is
    /// `BAD_USER_INPUT`; of two concurrent moves of one order, only one can win. A customer
    /// may only cancel their own pending orders.
    async fn update_order_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: OrderStatus,
    ) -> Result<Written<Order>> {
        let rc = RequestContext::of(ctx)?;
        let viewer = rc.require_user()?;
        let admin = rc.viewer.is_admin();
        let id = parse_id(&id, "updateOrderStatus.id")?;
        let order = unit_of_work(&rc.session, async |tx: &Session| {
            let missing = || AppError::NotFound(format!("order {id} does not exist"));
            let (current, owner) = orders::lock_status(tx, id).await?.ok_or_else(missing)?;
            if !admin {
                // Another customer's order does not exist, as far as this viewer can tell.
                if owner != viewer {
                    return Err(missing());
                }
                if status != OrderStatus::Cancelled || current != OrderStatus::Pending {
                    return Err(AppError::Forbidden(
                        "a customer may only cancel their own pending orders".to_owned(),
                    ));
                }
            }
            if !current.can_become(status) {
                return Err(AppError::bad_input(format!(
                    "order {id} cannot go from {current:?} to {status:?}"
                )));
            }
            if status == OrderStatus::Cancelled {
                products::return_stock(tx, id).await?;
            }
            orders::set_status(tx, id, status).await?;
            load_order(ctx, tx, id).await
        })
        .await?;
        Ok(order)
    }

    /// Inserts or updates (by SKU) a list of products, atomically: one bulk statement per
    /// 5,000 rows, and a bad row fails the whole import, naming its index.
    async fn import_products(
        &self,
        ctx: &Context<'_>,
        products: Vec<ProductInput>,
    ) -> Result<ImportResult> {
        let rc = RequestContext::of(ctx)?;
        rc.require_admin("importProducts")?;
        if products.len() > MAX_IMPORT {
            return Err(AppError::LimitExceeded(format!(
                "importProducts: at most {MAX_IMPORT} products per call, got {}",
                products.len()
            ))
            .into());
        }
        let mut rows = Vec::with_capacity(products.len());
        let mut seen = std::collections::HashMap::with_capacity(products.len());
        for (i, p) in products.iter().enumerate() {
            let (name, sku, price_cents, stock) =
                validate::product(i, &p.name, &p.sku, p.price.0, p.stock_quantity)
                    .map_err(AppError::BadInput)?;
            if let Some(first) = seen.insert(sku.clone(), i) {
                return Err(AppError::bad_input(format!(
                    "products[{i}]: sku {sku:?} is already in products[{first}]"
                ))
                .into());
            }
            rows.push(ProductUpsert {
                name,
                sku,
                price_cents,
                stock,
            });
        }
        let batches = rows.len().div_ceil(IMPORT_BATCH);
        rc.session.log().reserve(batches * 2)?;
        let (inserted, updated) = unit_of_work(&rc.session, async |tx: &Session| {
            let mut totals = (0, 0);
            for chunk in rows.chunks(IMPORT_BATCH) {
                let (i, u) = products::upsert(tx, chunk).await?;
                totals = (totals.0 + i, totals.1 + u);
            }
            Ok(totals)
        })
        .await?;
        Ok(ImportResult {
            inserted: i32::try_from(inserted).unwrap_or(i32::MAX),
            updated: i32::try_from(updated).unwrap_or(i32::MAX),
        })
    }
}
