//! User accounts: creation, passwords, roles, disabling, and the bootstrap admin.

use chrono::Utc;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};

use super::{
    Actor, Result, Role, ServiceError,
    audit::{self, Entry},
    passwords,
};

/// Names are case-insensitive (stored lower-cased) and safe to show anywhere.
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err(ServiceError::invalid("name", "must be 1 to 64 characters"));
    }
    if name.starts_with(['-', '.']) {
        return Err(ServiceError::invalid(
            "name",
            "must not start with '-' or '.'",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(ServiceError::invalid(
            "name",
            format!("character {c:?} is not allowed (letters, digits, . _ - @)"),
        ));
    }
    Ok(name)
}

fn require_admin(actor: &Actor) -> Result<()> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

pub async fn find_by_name(db: &DatabaseConnection, name: &str) -> Result<Option<user::Model>> {
    let Ok(name) = normalize_name(name) else {
        return Ok(None);
    };
    Ok(user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .one(db)
        .await?)
}

pub async fn find_by_id(db: &DatabaseConnection, id: i64) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

pub async fn list(db: &DatabaseConnection, actor: &Actor) -> Result<Vec<user::Model>> {
    require_admin(actor)?;
    Ok(user::Entity::find()
        .order_by_asc(user::Column::Name)
        .all(db)
        .await?)
}

pub async fn count(db: &DatabaseConnection) -> Result<u64> {
    Ok(user::Entity::find().count(db).await?)
}

pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
    password: &str,
    role: Role,
) -> Result<user::Model> {
    require_admin(actor)?;
    let name = normalize_name(name)?;
    passwords::check_policy(password)?;
    let hash = passwords::hash(password).await?;
    let txn = crate::db::write_txn(db).await?;
    if user::Entity::find()
        .filter(user::Column::Name.eq(&name))
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(ServiceError::Conflict(format!(
            "user {name} already exists"
        )));
    }
    let now = Utc::now();
    let created = user::ActiveModel {
        name: Set(name.clone()),
        password_hash: Set(hash),
        role: Set(role.as_str().into()),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        last_login_at: Set(None),
        host_patterns: Set("[]".into()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("user.create")
            .on("user", &name)
            .detail(format!("role {}", role.as_str())),
    )
    .await?;
    txn.commit().await?;
    Ok(created)
}

async fn load(txn: &impl sea_orm::ConnectionTrait, name: &str) -> Result<user::Model> {
    let name = normalize_name(name).map_err(|_| ServiceError::NotFound)?;
    user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .one(txn)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// An admin (or the CLI) sets someone's password.
pub async fn set_password(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
    password: &str,
) -> Result<()> {
    require_admin(actor)?;
    passwords::check_policy(password)?;
    let hash = passwords::hash(password).await?;
    let txn = crate::db::write_txn(db).await?;
    let user = load(&txn, name).await?;
    let mut active: user::ActiveModel = user.clone().into();
    active.password_hash = Set(hash);
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("user.password_reset").on("user", &user.name),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A user changes their own password, proving they know the current one.
pub async fn change_own_password(
    db: &DatabaseConnection,
    actor: &Actor,
    current: &str,
    new: &str,
) -> Result<()> {
    let id = actor.id.ok_or(ServiceError::Forbidden)?;
    let user = find_by_id(db, id).await?.ok_or(ServiceError::NotFound)?;
    if !passwords::verify(current, Some(&user.password_hash)).await {
        let txn = crate::db::write_txn(db).await?;
        audit::record(
            &txn,
            actor,
            Entry::failed("user.password_change")
                .on("user", &user.name)
                .detail("wrong current password"),
        )
        .await?;
        txn.commit().await?;
        return Err(ServiceError::invalid("current_password", "is not correct"));
    }
    passwords::check_policy(new).map_err(|_| {
        ServiceError::invalid(
            "new_password",
            format!(
                "must be {} to {} characters",
                passwords::MIN_LEN,
                passwords::MAX_LEN
            ),
        )
    })?;
    let hash = passwords::hash(new).await?;
    let txn = crate::db::write_txn(db).await?;
    let mut active: user::ActiveModel = user.clone().into();
    active.password_hash = Set(hash);
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("user.password_change").on("user", &user.name),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn set_disabled(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
    disabled: bool,
) -> Result<()> {
    require_admin(actor)?;
    let txn = crate::db::write_txn(db).await?;
    let user = load(&txn, name).await?;
    if actor.id == Some(user.id) && disabled {
        return Err(ServiceError::invalid("name", "you cannot disable yourself"));
    }
    let mut active: user::ActiveModel = user.clone().into();
    active.disabled = Set(disabled);
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    audit::record(&txn, actor, Entry::ok(action).on("user", &user.name)).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn set_role(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
    role: Role,
) -> Result<()> {
    require_admin(actor)?;
    let txn = crate::db::write_txn(db).await?;
    let user = load(&txn, name).await?;
    let old = user.role.clone();
    let mut active: user::ActiveModel = user.clone().into();
    active.role = Set(role.as_str().into());
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("user.role_change")
            .on("user", &user.name)
            .detail(format!("{old} -> {}", role.as_str())),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// When no user exists, create `admin` with the configured password or a generated one.
/// Returns the generated password so the caller can show it once.
pub async fn ensure_bootstrap_admin(
    db: &DatabaseConnection,
    configured: Option<&str>,
) -> Result<Option<String>> {
    if count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match configured {
        Some(p) => (p.to_string(), false),
        None => (passwords::generate(), true),
    };
    match create(db, &Actor::system(), "admin", &password, Role::Admin).await {
        Ok(_) => Ok(generated.then_some(password)),
        // Another replica won the race: fine.
        Err(ServiceError::Conflict(_)) => Ok(None),
        Err(ServiceError::Invalid { message, .. }) => Err(ServiceError::Internal(format!(
            "admin_password is not acceptable: {message}"
        ))),
        Err(e) => Err(e),
    }
}
