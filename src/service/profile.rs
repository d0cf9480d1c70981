//! What a user manages about themselves besides the password: their own HOSTS patterns
//! (tried before the global ones when a typed host is resolved).

use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};

use super::{
    Actor, FieldError, Result, ServiceError,
    audit::{self, Entry},
    hosts::{HostPattern, HostPatterns},
};
use crate::config::Config;

/// Most patterns one user may keep.
pub const MAX_USER_PATTERNS: usize = 50;

/// The acting user's account.
pub async fn me(db: &DatabaseConnection, actor: &Actor) -> Result<user::Model> {
    let id = actor.id.ok_or(ServiceError::Forbidden)?;
    super::accounts::find_by_id(db, id)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// A user's own patterns as stored (an unreadable column reads as none).
pub fn stored_patterns(user: &user::Model) -> Vec<HostPattern> {
    serde_json::from_str(&user.host_patterns).unwrap_or_default()
}

/// The global `HOSTS` patterns of the configuration.
pub fn global_patterns(config: &Config) -> Vec<HostPattern> {
    config
        .hosts
        .iter()
        .map(|(regex, suffix)| HostPattern {
            regex: regex.clone(),
            suffix: suffix.clone(),
        })
        .collect()
}

/// The acting user's own patterns.
pub async fn host_patterns(db: &DatabaseConnection, actor: &Actor) -> Result<Vec<HostPattern>> {
    Ok(stored_patterns(&me(db, actor).await?))
}

/// Check a list of patterns; every problem is reported with its index
/// (`host_patterns[2].regex`).
pub fn validate_patterns(patterns: &[HostPattern]) -> Result<Vec<HostPattern>> {
    let mut errors = Vec::new();
    if patterns.len() > MAX_USER_PATTERNS {
        errors.push(FieldError {
            field: "host_patterns".into(),
            line: None,
            message: format!("at most {MAX_USER_PATTERNS} patterns"),
        });
    }
    let cleaned: Vec<HostPattern> = patterns
        .iter()
        .map(|p| HostPattern {
            regex: p.regex.trim().to_string(),
            suffix: p.suffix.trim().to_string(),
        })
        .collect();
    for (i, pattern) in cleaned.iter().enumerate().take(MAX_USER_PATTERNS) {
        if pattern.regex.is_empty() {
            errors.push(FieldError {
                field: format!("host_patterns[{i}].regex"),
                line: None,
                message: "must not be empty".into(),
            });
            continue;
        }
        if let Err(e) = HostPatterns::new(std::slice::from_ref(pattern), &[]) {
            let part = if e.reason.contains("suffix") {
                "suffix"
            } else {
                "regex"
            };
            errors.push(FieldError {
                field: format!("host_patterns[{i}].{part}"),
                line: None,
                message: e.reason,
            });
        }
    }
    if errors.is_empty() {
        Ok(cleaned)
    } else {
        Err(ServiceError::InvalidMany(errors))
    }
}

/// Replace the acting user's patterns (validated first; nothing is saved on error).
pub async fn set_host_patterns(
    db: &DatabaseConnection,
    actor: &Actor,
    patterns: &[HostPattern],
) -> Result<Vec<HostPattern>> {
    let cleaned = validate_patterns(patterns)?;
    let txn = crate::db::write_txn(db).await?;
    let id = actor.id.ok_or(ServiceError::Forbidden)?;
    let user = user::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let mut active: user::ActiveModel = user.clone().into();
    active.host_patterns = Set(serde_json::to_string(&cleaned).expect("patterns serialise"));
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("user.host_patterns")
            .on("user", &user.name)
            .detail(format!("{} patterns", cleaned.len())),
    )
    .await?;
    txn.commit().await?;
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(regex: &str, suffix: &str) -> HostPattern {
        HostPattern {
            regex: regex.into(),
            suffix: suffix.into(),
        }
    }

    #[test]
    fn every_bad_pattern_is_named_by_index() {
        let err = validate_patterns(&[p("^ok$", ".example"), p("(", ""), p("^x$", "bad suffix")])
            .unwrap_err();
        let ServiceError::InvalidMany(errors) = err else {
            panic!("{err:?}")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["host_patterns[1].regex", "host_patterns[2].suffix"]
        );
    }

    #[test]
    fn patterns_are_trimmed_and_capped() {
        let ok = validate_patterns(&[p(" ^a$ ", " .example ")]).unwrap();
        assert_eq!(ok, [p("^a$", ".example")]);
        let many = vec![p("^a$", ""); MAX_USER_PATTERNS + 1];
        assert!(validate_patterns(&many).is_err());
        assert!(validate_patterns(&[p("  ", ".x")]).is_err());
    }
}
