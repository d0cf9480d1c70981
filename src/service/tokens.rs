//! Personal API tokens: `Authorization: Bearer pymap_…`.
//!
//! The secret is 32 random bytes shown once at creation; the database keeps only its
//! SHA-256 (a lookup key that is useless to whoever reads the database) and a short
//! prefix so the owner can tell tokens apart. A token stops working when it is revoked,
//! when it expires, and while its user is disabled.

use chrono::{DateTime, Duration, Utc};
use entity::{api_token, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set, sea_query::Expr,
};
use sha2::{Digest, Sha256};

use super::{
    Actor, Result, ServiceError,
    audit::{self, Entry},
};

/// Every secret starts with this, so leaked tokens are easy to recognise and grep for.
pub const SECRET_PREFIX: &str = "pymap_";
const SECRET_BYTES: usize = 32;
/// Characters of the secret kept for display (`pymap_1a2b3c4d`).
const SHOWN_CHARS: usize = SECRET_PREFIX.len() + 8;
/// Active (not revoked, not expired) tokens one user may hold.
pub const MAX_ACTIVE_PER_USER: u64 = 50;
const MAX_NAME_CHARS: usize = 100;
/// `last_used_at` is written at most this often per token, so that authenticating
/// stays a read.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// A freshly created token and its secret, which is not stored and never shown again.
pub struct NewToken {
    pub token: api_token::Model,
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &self.token)
            .field("secret", &"***")
            .finish()
    }
}

/// Lower-case hex SHA-256 of a presented secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether the token is usable at `now` (its user aside).
pub fn is_active(token: &api_token::Model, now: DateTime<Utc>) -> bool {
    token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now)
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// The expiry of a token created by a request that itself authenticated with a token
/// expiring at `parent`: never later than the parent, so a short-lived token cannot mint
/// a lasting one (none asked for: the parent's expiry). Sessions and tokens without an
/// expiry keep what was asked.
pub fn bounded_expiry(
    requested: Option<DateTime<Utc>>,
    parent: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>> {
    match (requested, parent) {
        (_, None) => Ok(requested),
        (None, Some(p)) => Ok(Some(p)),
        (Some(r), Some(p)) if r <= p => Ok(Some(r)),
        (Some(_), Some(_)) => Err(ServiceError::invalid(
            "expires_at",
            "must not be later than the expiry of the token making this request",
        )),
    }
}

/// Create a token for the acting user. `expires_at`, when given, must be in the future.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewToken> {
    let user_id = actor.id.ok_or(ServiceError::Forbidden)?;
    let name = check_name(name)?;
    let now = Utc::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(ServiceError::invalid("expires_at", "must be in the future"));
    }
    let txn = crate::db::write_txn(db).await?;
    let active = api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .filter(
            sea_orm::Condition::any()
                .add(api_token::Column::ExpiresAt.is_null())
                .add(api_token::Column::ExpiresAt.gt(now)),
        )
        .count(&txn)
        .await?;
    if active >= MAX_ACTIVE_PER_USER {
        return Err(ServiceError::Conflict(format!(
            "you already have {active} active tokens; revoke one first"
        )));
    }
    let secret = format!("{SECRET_PREFIX}{}", crate::keys::random_hex(SECRET_BYTES));
    let token = api_token::ActiveModel {
        user_id: Set(user_id),
        name: Set(name.clone()),
        prefix: Set(secret[..SHOWN_CHARS].to_string()),
        token_hash: Set(hash(&secret)),
        created_at: Set(now),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let expiry = expires_at.map_or("never expires".to_string(), |at| {
        format!("expires {}", at.to_rfc3339())
    });
    audit::record(
        &txn,
        actor,
        Entry::ok("token.create")
            .on("token", token.id)
            .detail(format!("{name} ({}), {expiry}", token.prefix)),
    )
    .await?;
    txn.commit().await?;
    Ok(NewToken { token, secret })
}

/// The acting user's tokens, newest first (revoked and expired ones included).
pub async fn list(db: &DatabaseConnection, actor: &Actor) -> Result<Vec<api_token::Model>> {
    let user_id = actor.id.ok_or(ServiceError::Forbidden)?;
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user_id))
        .order_by_desc(api_token::Column::Id)
        .all(db)
        .await?)
}

/// Revoke one of the actor's tokens (admins: anyone's). Revoking twice is fine.
pub async fn revoke(db: &DatabaseConnection, actor: &Actor, token_id: i64) -> Result<()> {
    let txn = crate::db::write_txn(db).await?;
    let token = api_token::Entity::find_by_id(token_id)
        .one(&txn)
        .await?
        .filter(|t| actor.is_admin() || Some(t.user_id) == actor.id)
        .ok_or(ServiceError::NotFound)?;
    if token.revoked_at.is_none() {
        let mut active: api_token::ActiveModel = token.clone().into();
        active.revoked_at = Set(Some(Utc::now()));
        active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry::ok("token.revoke")
                .on("token", token.id)
                .detail(format!("{} ({})", token.name, token.prefix)),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The user behind a presented secret. Unknown, malformed, revoked and expired tokens
/// and disabled users are all `InvalidCredentials` (the caller cannot tell which).
pub async fn authenticate(
    db: &DatabaseConnection,
    presented: &str,
) -> Result<(user::Model, api_token::Model)> {
    let well_formed = presented.strip_prefix(SECRET_PREFIX).is_some_and(|hex| {
        hex.len() == SECRET_BYTES * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !well_formed {
        return Err(ServiceError::InvalidCredentials);
    }
    let found = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash(presented)))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    let now = Utc::now();
    let (token, user) = match found {
        Some((token, Some(user))) if is_active(&token, now) && !user.disabled => (token, user),
        _ => return Err(ServiceError::InvalidCredentials),
    };
    if token
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
        && first_touch(token.id, now)
    {
        // Best effort: a busy database must not fail the request that uses the token.
        let touched = api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(token.id))
            .exec(db)
            .await;
        if let Err(e) = touched {
            tracing::warn!(token = token.id, error = %e, "cannot record token use");
        }
    }
    Ok((user, token))
}

/// Whether this process should record a use of `token_id` now: concurrent requests with
/// the same token would otherwise all write at the same moment.
fn first_touch(token_id: i64, now: DateTime<Utc>) -> bool {
    use std::{collections::HashMap, sync::Mutex};
    static TOUCHED: Mutex<Option<HashMap<i64, DateTime<Utc>>>> = Mutex::new(None);
    let mut guard = TOUCHED.lock().expect("token touch lock");
    let touched = guard.get_or_insert_with(HashMap::new);
    if touched
        .get(&token_id)
        .is_some_and(|at| now - *at < LAST_USED_RESOLUTION)
    {
        return false;
    }
    if touched.len() > 10_000 {
        touched.retain(|_, at| now - *at < LAST_USED_RESOLUTION);
    }
    touched.insert(token_id, now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_made_with_a_token_never_outlive_it() {
        let now = Utc::now();
        let parent = Some(now + chrono::Duration::days(2));
        let sooner = Some(now + chrono::Duration::days(1));
        let later = Some(now + chrono::Duration::days(3));
        assert_eq!(bounded_expiry(None, None).unwrap(), None);
        assert_eq!(bounded_expiry(later, None).unwrap(), later);
        assert_eq!(bounded_expiry(None, parent).unwrap(), parent);
        assert_eq!(bounded_expiry(sooner, parent).unwrap(), sooner);
        assert_eq!(bounded_expiry(parent, parent).unwrap(), parent);
        assert!(matches!(
            bounded_expiry(later, parent),
            Err(ServiceError::Invalid { .. })
        ));
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  ci  ").unwrap(), "ci");
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
    }
}
