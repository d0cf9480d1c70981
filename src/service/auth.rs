//! Logging in and out, with throttling per client address and per user name.
//!
//! Every outcome is the same `InvalidCredentials` to the client (unknown user, wrong
//! password, disabled account), while the audit trail records the real reason.

use std::{net::IpAddr, time::Duration};

use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};

use super::{
    Actor, Result, Role, ServiceError, accounts,
    audit::{self, Entry},
    passwords,
};
use crate::{config::ThrottleConfig, shared_store::Throttle};

pub struct LoginLimits<'a> {
    pub throttle: &'a Throttle,
    pub config: &'a ThrottleConfig,
}

fn throttle_keys(name: &str, addr: Option<IpAddr>) -> (Option<String>, String) {
    (
        addr.map(|a| format!("login:addr:{a}")),
        format!("login:user:{}", name.trim().to_lowercase()),
    )
}

fn store_err(e: redis::RedisError) -> ServiceError {
    ServiceError::Internal(format!("throttle store unavailable: {e}"))
}

pub async fn login(
    db: &DatabaseConnection,
    limits: LoginLimits<'_>,
    name: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<user::Model> {
    let shown_name: String = name.trim().chars().take(64).collect();
    let anonymous = Actor {
        id: None,
        name: shown_name.clone(),
        role: Role::User,
        addr,
    };
    let (addr_key, user_key) = throttle_keys(name, addr);
    let window = Duration::from_secs(limits.config.window_secs);

    // Refuse before verifying, so a throttled attacker learns nothing from timing.
    let mut retry_after = None;
    if let Some(key) = &addr_key {
        let (n, left) = limits.throttle.failures(key).await.map_err(store_err)?;
        if n >= limits.config.per_address {
            retry_after = Some(left);
        }
    }
    let (n, left) = limits
        .throttle
        .failures(&user_key)
        .await
        .map_err(store_err)?;
    if n >= limits.config.per_user {
        retry_after = Some(retry_after.map_or(left, |r: Duration| r.max(left)));
    }
    if let Some(retry_after) = retry_after {
        audit::record(
            db,
            &anonymous,
            Entry::failed("login.throttled").on("user", &shown_name),
        )
        .await?;
        return Err(ServiceError::Throttled {
            retry_after: retry_after.max(Duration::from_secs(1)),
        });
    }

    let user = accounts::find_by_name(db, name).await?;
    let valid = passwords::verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await;
    let failure = match &user {
        None => Some("unknown user"),
        Some(_) if !valid => Some("wrong password"),
        Some(u) if u.disabled => Some("account disabled"),
        Some(_) => None,
    };
    if let Some(reason) = failure {
        if let Some(key) = &addr_key {
            limits
                .throttle
                .record_failure(key, window)
                .await
                .map_err(store_err)?;
        }
        limits
            .throttle
            .record_failure(&user_key, window)
            .await
            .map_err(store_err)?;
        let actor = Actor {
            id: user.as_ref().map(|u| u.id),
            ..anonymous
        };
        audit::record(
            db,
            &actor,
            Entry::failed("login")
                .on("user", &shown_name)
                .detail(reason),
        )
        .await?;
        return Err(ServiceError::InvalidCredentials);
    }
    let user = user.expect("checked above");
    // Only the name's counter is cleared: clearing the address on any success would let
    // one valid account reset an attacker's budget.
    limits.throttle.reset(&user_key).await.map_err(store_err)?;

    let actor = actor_for(&user, addr);
    let txn = crate::db::write_txn(db).await?;
    let mut active: user::ActiveModel = user.clone().into();
    active.last_login_at = Set(Some(Utc::now()));
    let user = active.update(&txn).await?;
    audit::record(&txn, &actor, Entry::ok("login").on("user", &user.name)).await?;
    txn.commit().await?;
    Ok(user)
}

pub async fn logout(db: &DatabaseConnection, actor: &Actor) -> Result<()> {
    audit::record(db, actor, Entry::ok("logout").on("user", &actor.name)).await
}

pub fn actor_for(user: &user::Model, addr: Option<IpAddr>) -> Actor {
    Actor {
        id: Some(user.id),
        name: user.name.clone(),
        role: Role::parse(&user.role).unwrap_or(Role::User),
        addr,
    }
}
