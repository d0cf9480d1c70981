//! Creating tasks from a batch, and reading them back with permission checks.
//!
//! Creation validates everything first (hosts, options, every batch line) and writes
//! nothing unless all of it is valid; then the task, its jobs with encrypted passwords
//! and the audit line commit in one transaction.

use chrono::Utc;
use entity::{job, task, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::{
    Actor, FieldError, Result, ServiceError,
    audit::{self, Entry},
    batch::{self, BatchLimits, MailboxPair},
    hosts::{HostPattern, HostPatterns, Resolution},
    imapsync_options::{MigrationOptions, parse_extra_args},
};
use crate::{config::Config, worker::status::JobStatus};

/// How the batch arrives: pasted text, an uploaded CSV, or bytes to sniff.
pub enum BatchInput {
    Text(String),
    Csv(Vec<u8>),
    Auto(Vec<u8>),
}

pub struct NewTask {
    pub label: String,
    pub source: String,
    pub destination: String,
    pub engine: String,
    pub options: MigrationOptions,
    /// Extra imapsync arguments as typed (validated against the allowlist).
    pub extra_args: String,
    pub batch: BatchInput,
    /// Admins may submit on behalf of another user.
    pub owner: Option<String>,
}

/// Which engines can run here; `Err` carries the reason an engine is unavailable.
pub trait EngineCheck: Send + Sync {
    fn check(&self, engine: &str) -> std::result::Result<(), String>;
}

pub struct TaskEnv<'a> {
    pub db: &'a DatabaseConnection,
    pub config: &'a Config,
    pub credentials_key: &'a [u8; 32],
    pub engines: &'a dyn EngineCheck,
}

fn err(field: &str, line: Option<usize>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        line,
        message: message.into(),
    }
}

/// The user's patterns first, then the global `HOSTS`.
pub fn patterns_for(user: Option<&user::Model>, config: &Config) -> Result<HostPatterns> {
    let own: Vec<HostPattern> = user
        .and_then(|u| serde_json::from_str(&u.host_patterns).ok())
        .unwrap_or_default();
    let global: Vec<HostPattern> = config
        .hosts
        .iter()
        .map(|(regex, suffix)| HostPattern {
            regex: regex.clone(),
            suffix: suffix.clone(),
        })
        .collect();
    HostPatterns::new(&own, &global)
        .map_err(|e| ServiceError::invalid("host_patterns", e.to_string()))
}

/// Resolve a typed host for display before submitting.
pub async fn preview_host(
    db: &DatabaseConnection,
    config: &Config,
    actor: &Actor,
    typed: &str,
) -> Result<Resolution> {
    let user = match actor.id {
        Some(id) => super::accounts::find_by_id(db, id).await?,
        None => None,
    };
    patterns_for(user.as_ref(), config)?
        .resolve(typed)
        .map_err(|e| ServiceError::invalid("host", e.to_string()))
}

fn parse_batch(
    input: &BatchInput,
    limits: &BatchLimits,
) -> std::result::Result<Vec<MailboxPair>, batch::BatchErrors> {
    match input {
        BatchInput::Text(text) => batch::parse_text(text, limits),
        BatchInput::Csv(bytes) => batch::parse_csv(bytes, limits),
        BatchInput::Auto(bytes) => batch::parse_auto(bytes, limits),
    }
}

/// One validated mailbox pair with its effective hosts.
pub struct PlannedJob {
    pub pair: MailboxPair,
    pub host1: String,
    pub host2: String,
    pub extra_args: Option<Vec<String>>,
}

/// A fully validated task, ready to be written (see [`plan`]).
pub struct Plan {
    pub owner: user::Model,
    pub engine: String,
    pub label: String,
    pub source: Resolution,
    pub destination: Resolution,
    pub options: MigrationOptions,
    pub jobs: Vec<PlannedJob>,
}

/// Create a task: validate everything ([`plan`]), then write the task, its jobs and the
/// audit line in one transaction.
pub async fn create(env: &TaskEnv<'_>, actor: &Actor, new: NewTask) -> Result<task::Model> {
    let plan = plan(env, actor, new).await?;
    insert(env, actor, plan).await
}

/// Validate a submission without writing anything (also the first half of
/// [`create`], and what a preflight check shows). Every problem is reported at once, each
/// with its field and batch line.
pub async fn plan(env: &TaskEnv<'_>, actor: &Actor, new: NewTask) -> Result<Plan> {
    let db = env.db;
    let mut errors = Vec::new();
    let owner = match (&new.owner, actor.id) {
        (Some(name), _) => {
            if !actor.is_admin() {
                return Err(ServiceError::Forbidden);
            }
            super::accounts::find_by_name(db, name)
                .await?
                .ok_or_else(|| ServiceError::invalid("owner", format!("no user named {name}")))?
        }
        (None, Some(id)) => super::accounts::find_by_id(db, id)
            .await?
            .ok_or(ServiceError::Forbidden)?,
        (None, None) => {
            return Err(ServiceError::invalid(
                "owner",
                "tasks submitted from the command line need --owner",
            ));
        }
    };
    let patterns = patterns_for(Some(&owner), env.config)?;

    let engine = new.engine.trim().to_lowercase();
    if !matches!(engine.as_str(), "imapsync" | "native") {
        errors.push(err("engine", None, "must be imapsync or native"));
    } else if let Err(why) = env.engines.check(&engine) {
        errors.push(err("engine", None, why));
    }
    let source = patterns
        .resolve(&new.source)
        .map_err(|e| err("source", None, e.to_string()));
    let destination = patterns
        .resolve(&new.destination)
        .map_err(|e| err("destination", None, e.to_string()));
    let mut options = new.options.clone();
    match parse_extra_args(&new.extra_args) {
        Ok(args) => options.extra_args.extend(args),
        Err(errs) => errors.extend(
            errs.into_iter()
                .map(|e| err("extra_args", None, format!("{}: {}", e.field, e.message))),
        ),
    }
    if let Err(errs) = options.validate() {
        errors.extend(
            errs.into_iter()
                .map(|e| err(&format!("options.{}", e.field), None, e.message)),
        );
    }
    let label: String = new.label.trim().chars().collect();
    if label.chars().count() > 200 {
        errors.push(err("label", None, "must be at most 200 characters"));
    }
    let limits = BatchLimits {
        max_lines: env.config.batch_max_lines,
    };
    let pairs = match parse_batch(&new.batch, &limits) {
        Ok(pairs) if pairs.is_empty() => {
            errors.push(err("batch", None, "contains no mailbox"));
            Vec::new()
        }
        Ok(pairs) => pairs,
        Err(batch_errors) => {
            errors.extend(batch_errors.0.into_iter().map(|e| {
                let field = e
                    .column
                    .map_or("batch".to_string(), |c| format!("batch.{c}"));
                err(&field, Some(e.line), e.message)
            }));
            Vec::new()
        }
    };
    let (source, destination) = match (source, destination) {
        (Ok(s), Ok(d)) => (s, d),
        (s, d) => {
            errors.extend(s.err());
            errors.extend(d.err());
            return Err(ServiceError::InvalidMany(errors));
        }
    };
    // Per-row overrides (CSV host1/host2/options).
    let mut planned = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let line = Some(pair.line);
        let host = |typed: &Option<String>,
                    default: &Resolution,
                    field: &str,
                    errors: &mut Vec<FieldError>| match typed {
            Some(t) if !t.trim().is_empty() => match patterns.resolve(t) {
                Ok(r) => r.resolved.to_string(),
                Err(e) => {
                    errors.push(err(field, line, e.to_string()));
                    String::new()
                }
            },
            _ => default.resolved.to_string(),
        };
        let host1 = host(&pair.host1, &source, "batch.host1", &mut errors);
        let host2 = host(&pair.host2, &destination, "batch.host2", &mut errors);
        let extra_args = match pair.options.as_deref().map(parse_extra_args) {
            None => None,
            Some(Ok(args)) => Some(args),
            Some(Err(errs)) => {
                errors
                    .extend(errs.into_iter().map(|e| {
                        err("batch.options", line, format!("{}: {}", e.field, e.message))
                    }));
                None
            }
        };
        planned.push(PlannedJob {
            pair,
            host1,
            host2,
            extra_args,
        });
    }
    if !errors.is_empty() {
        return Err(ServiceError::InvalidMany(errors));
    }
    let label = if label.is_empty() {
        format!("{} → {}", source.resolved, destination.resolved)
    } else {
        label
    };
    Ok(Plan {
        owner,
        engine,
        label,
        source,
        destination,
        options,
        jobs: planned,
    })
}

async fn insert(env: &TaskEnv<'_>, actor: &Actor, plan: Plan) -> Result<task::Model> {
    let Plan {
        owner,
        engine,
        label,
        source,
        destination,
        options,
        jobs: planned,
    } = plan;
    let now = Utc::now();
    let txn = crate::db::write_txn(env.db).await?;
    let task = task::ActiveModel {
        owner_id: Set(owner.id),
        label: Set(label),
        source_typed: Set(source.typed.clone()),
        destination_typed: Set(destination.typed.clone()),
        source: Set(source.resolved.to_string()),
        destination: Set(destination.resolved.to_string()),
        engine: Set(engine),
        options: Set(serde_json::to_string(&options).expect("options serialise")),
        status: Set(JobStatus::Queued.as_str().into()),
        jobs_total: Set(planned.len() as i32),
        jobs_queued: Set(planned.len() as i32),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    super::job_insert::insert_jobs(&txn, env.credentials_key, task.id, &planned, now).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("task.create").on("task", task.id).detail(format!(
            "{} mailboxes, {} → {}",
            planned.len(),
            task.source,
            task.destination
        )),
    )
    .await?;
    txn.commit().await?;
    Ok(task)
}

/// A task the actor may see (owner or admin); others get `NotFound`, not `Forbidden`, so
/// ids of other users' tasks are not confirmed.
pub async fn get(db: &DatabaseConnection, actor: &Actor, id: i64) -> Result<task::Model> {
    let task = task::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if actor.is_admin() || Some(task.owner_id) == actor.id {
        Ok(task)
    } else {
        Err(ServiceError::NotFound)
    }
}

pub async fn jobs(db: &DatabaseConnection, actor: &Actor, task_id: i64) -> Result<Vec<job::Model>> {
    get(db, actor, task_id).await?;
    Ok(job::Entity::find()
        .filter(job::Column::TaskId.eq(task_id))
        .order_by_asc(job::Column::Position)
        .all(db)
        .await?)
}

pub async fn get_job(
    db: &DatabaseConnection,
    actor: &Actor,
    job_id: i64,
) -> Result<(task::Model, job::Model)> {
    let job = job::Entity::find_by_id(job_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let task = get(db, actor, job.task_id).await?;
    Ok((task, job))
}
