//! The new migration form: typed options, batch textarea or CSV upload, live host
//! preview, "check credentials" (a login on both sides of every line), and submission. The form is multipart (for the CSV), so
//! its CSRF token travels in the action URL (see `csrf.rs`).

use std::collections::HashMap;

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Json, Multipart, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{Error, page::Web};
use crate::{
    service::{
        FieldError, ServiceError,
        imapsync_options::{MigrationOptions, TlsMode},
        login_check,
        tasks::{self, BatchInput, NewTask, TaskEnv},
    },
    worker::native::NativeOptions,
};

/// Largest accepted value of one form field (the batch, pasted or uploaded).
const MAX_FIELD: usize = 4 * 1024 * 1024;
const MAX_FIELDS: usize = 64;
const ENGINES: [&str; 2] = ["imapsync", "native"];

/// Everything typed into the form except the batch, which holds passwords and so is
/// never sent back to the browser.
#[derive(Default, Serialize)]
struct MigrationForm {
    label: String,
    source: String,
    destination: String,
    engine: String,
    owner: String,
    extra_args: String,
    include_folders: String,
    exclude_folders: String,
    max_age_days: String,
    min_age_days: String,
    max_size_mb: String,
    timeout_secs: String,
    tls1: String,
    tls2: String,
    dry_run: bool,
    just_login: bool,
    just_folders: bool,
    sync_duplicates: bool,
    add_header: bool,
    delete_on_destination: bool,
    delete_confirmed: bool,
    accept_invalid_certs1: bool,
    accept_invalid_certs2: bool,
}

struct Submitted {
    form: MigrationForm,
    /// Pasted text or the uploaded file, whichever was given.
    batch: Vec<u8>,
    errors: Vec<FieldError>,
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        line: None,
        message: message.into(),
    }
}

async fn read_multipart(mut multipart: Multipart) -> Result<Submitted, Error> {
    let mut text: HashMap<String, String> = HashMap::new();
    let mut file = Vec::new();
    for _ in 0..MAX_FIELDS {
        let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| Error::BadRequest(format!("unreadable form: {e}")))?
        else {
            break;
        };
        let name = field.name().unwrap_or_default().to_string();
        let mut bytes = Vec::new();
        field
            .into_async_read()
            .take(MAX_FIELD as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::BadRequest(format!("unreadable form: {e}")))?;
        if bytes.len() > MAX_FIELD {
            return Err(Error::BadRequest(format!(
                "{name} is larger than {} MiB",
                MAX_FIELD / 1024 / 1024
            )));
        }
        if name == "batch_file" {
            file = bytes;
        } else {
            text.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let get = |k: &str| text.get(k).cloned().unwrap_or_default();
    let flag = |k: &str| text.contains_key(k);
    let form = MigrationForm {
        label: get("label"),
        source: get("source"),
        destination: get("destination"),
        engine: get("engine"),
        owner: get("owner"),
        extra_args: get("extra_args"),
        include_folders: get("include_folders"),
        exclude_folders: get("exclude_folders"),
        max_age_days: get("max_age_days"),
        min_age_days: get("min_age_days"),
        max_size_mb: get("max_size_mb"),
        timeout_secs: get("timeout_secs"),
        tls1: get("tls1"),
        tls2: get("tls2"),
        dry_run: flag("dry_run"),
        just_login: flag("just_login"),
        just_folders: flag("just_folders"),
        sync_duplicates: flag("sync_duplicates"),
        add_header: flag("add_header"),
        delete_on_destination: flag("delete_on_destination"),
        delete_confirmed: flag("delete_confirmed"),
        accept_invalid_certs1: flag("accept_invalid_certs1"),
        accept_invalid_certs2: flag("accept_invalid_certs2"),
    };
    let pasted = get("batch");
    let mut errors = Vec::new();
    let batch = match (pasted.trim().is_empty(), file.is_empty()) {
        (_, true) => pasted.into_bytes(),
        (true, false) => file,
        (false, false) => {
            errors.push(field_error(
                "batch",
                "give either a pasted batch or a CSV file, not both",
            ));
            Vec::new()
        }
    };
    Ok(Submitted {
        form,
        batch,
        errors,
    })
}

fn number<T: std::str::FromStr>(
    value: &str,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.push(field_error(
                &format!("options.{field}"),
                "must be a whole number",
            ));
            None
        }
    }
}

fn tls(value: &str, field: &str, errors: &mut Vec<FieldError>) -> TlsMode {
    match value {
        "" | "auto" => TlsMode::Auto,
        "plain" => TlsMode::Plain,
        "starttls" => TlsMode::Starttls,
        "implicit" => TlsMode::Implicit,
        _ => {
            errors.push(field_error(&format!("options.{field}"), "unknown TLS mode"));
            TlsMode::Auto
        }
    }
}

fn regex_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn options(form: &MigrationForm, errors: &mut Vec<FieldError>) -> MigrationOptions {
    let max_size_mb: Option<u64> = number(&form.max_size_mb, "max_size_mb", errors);
    MigrationOptions {
        dry_run: form.dry_run,
        just_login: form.just_login,
        just_folders: form.just_folders,
        include_folders: regex_lines(&form.include_folders),
        exclude_folders: regex_lines(&form.exclude_folders),
        max_age_days: number(&form.max_age_days, "max_age_days", errors),
        min_age_days: number(&form.min_age_days, "min_age_days", errors),
        max_size_bytes: max_size_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
        sync_duplicates: form.sync_duplicates,
        add_header: form.add_header,
        delete_on_destination: form.delete_on_destination,
        delete_confirmed: form.delete_confirmed,
        tls1: tls(&form.tls1, "tls1", errors),
        tls2: tls(&form.tls2, "tls2", errors),
        timeout_secs: number(&form.timeout_secs, "timeout_secs", errors),
        accept_invalid_certs1: form.accept_invalid_certs1,
        accept_invalid_certs2: form.accept_invalid_certs2,
        extra_args: Vec::new(),
    }
}

/// An error as the template shows it: `key` names the form control it belongs to.
fn shown(errors: &[FieldError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| {
            let base = e.field.trim_start_matches("options.");
            let key = base.split(['[', '.']).next().unwrap_or(base);
            let key = if key == "max_size_bytes" {
                "max_size_mb"
            } else {
                key
            };
            json!({ "key": key, "field": e.field, "line": e.line, "message": e.message })
        })
        .collect()
}

fn engines(web: &Web<'_>) -> Vec<Value> {
    ENGINES
        .iter()
        .map(|name| {
            let why = web.state.pool.engines().get(name).err();
            json!({ "name": name, "available": why.is_none(), "why": why })
        })
        .collect()
}

fn render_form(
    web: &Web<'_>,
    status: StatusCode,
    form: &MigrationForm,
    errors: &[FieldError],
    check: Option<Value>,
) -> poem::Result<Response> {
    let html = web.render(
        "migrate.html",
        json!({
            "form": form,
            "errors": shown(errors),
            "engines": engines(web),
            "check": check,
            "max_lines": web.state.config.batch_max_lines,
            "batch_dropped": !errors.is_empty() || check.is_some(),
        }),
    )?;
    Ok(html.with_status(status).into_response())
}

#[handler]
pub async fn form_page(web: Web<'_>) -> poem::Result<Response> {
    let available = engines(&web);
    let engine = available
        .iter()
        .find(|e| e["available"] == true)
        .and_then(|e| e["name"].as_str())
        .unwrap_or("imapsync")
        .to_string();
    let form = MigrationForm {
        engine,
        add_header: true,
        ..Default::default()
    };
    render_form(&web, StatusCode::OK, &form, &[], None)
}

fn task_env<'a>(web: &'a Web<'_>) -> TaskEnv<'a> {
    let state = web.state;
    TaskEnv {
        db: &state.db,
        config: &state.config,
        credentials_key: &state.keys.credentials,
        engines: state.pool.engines(),
    }
}

fn new_task(form: &MigrationForm, batch: Vec<u8>, errors: &mut Vec<FieldError>) -> NewTask {
    let owner = form.owner.trim();
    NewTask {
        label: form.label.clone(),
        source: form.source.clone(),
        destination: form.destination.clone(),
        engine: form.engine.clone(),
        options: options(form, errors),
        extra_args: form.extra_args.clone(),
        batch: BatchInput::Auto(batch),
        owner: (!owner.is_empty()).then(|| owner.to_string()),
    }
}

/// Validation problems go back to the form (422); anything else is an error page.
fn invalid(web: &Web<'_>, form: &MigrationForm, e: ServiceError) -> poem::Result<Response> {
    let errors = match e {
        ServiceError::InvalidMany(errors) => errors,
        ServiceError::Invalid { field, message } => vec![field_error(&field, message)],
        e => return Err(Error::from(e).into()),
    };
    render_form(web, StatusCode::UNPROCESSABLE_ENTITY, form, &errors, None)
}

#[handler]
pub async fn submit(web: Web<'_>, multipart: Multipart) -> poem::Result<Response> {
    let Submitted {
        form,
        batch,
        mut errors,
    } = read_multipart(multipart).await?;
    let new = new_task(&form, batch, &mut errors);
    if !errors.is_empty() {
        return render_form(&web, StatusCode::UNPROCESSABLE_ENTITY, &form, &errors, None);
    }
    match tasks::create(&task_env(&web), web.actor(), new).await {
        Ok(task) => {
            web.state.pool.wake();
            let to = format!("/tasks/{}", task.id);
            let n = task.jobs_total;
            let plural = if n == 1 { "" } else { "es" };
            Ok(web.done(
                &to,
                format!("Task #{} started with {n} mailbox{plural}.", task.id),
            ))
        }
        Err(e) => invalid(&web, &form, e),
    }
}

/// Validate everything exactly as a submission would (writing nothing), then try both
/// logins of every line with the native IMAP client and show the result per line.
#[handler]
pub async fn check_page(web: Web<'_>, multipart: Multipart) -> poem::Result<Response> {
    let Submitted {
        form,
        batch,
        mut errors,
    } = read_multipart(multipart).await?;
    let new = new_task(&form, batch, &mut errors);
    if !errors.is_empty() {
        return render_form(&web, StatusCode::UNPROCESSABLE_ENTITY, &form, &errors, None);
    }
    let plan = match tasks::plan(&task_env(&web), web.actor(), new).await {
        Ok(plan) => plan,
        Err(e) => return invalid(&web, &form, e),
    };
    // The pool's native engine runs with the default options too (see `app.rs`).
    let results = login_check::check_plan(&plan, &NativeOptions::default()).await;
    let failed = results.iter().filter(|r| !r.ok()).count();
    let rows: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "line": r.line,
                "user1": r.user1,
                "user2": r.user2,
                "host1": r.host1,
                "host2": r.host2,
                "ok": r.ok(),
                "summary": r.summary(),
                "source": r.source,
                "destination": r.destination,
            })
        })
        .collect();
    let check = json!({ "rows": rows, "failed": failed });
    render_form(&web, StatusCode::OK, &form, &[], Some(check))
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    host: Option<String>,
}

/// `GET /hosts/preview?host=mx1`: what a typed host resolves to for this user.
#[handler]
pub async fn preview(web: Web<'_>, Query(q): Query<PreviewQuery>) -> poem::Result<Json<Value>> {
    let typed = q.host.unwrap_or_default();
    let state = web.state;
    Ok(Json(
        match tasks::preview_host(&state.db, &state.config, web.actor(), &typed).await {
            Ok(r) => json!({ "ok": true, "resolved": r.resolved.to_string(), "via": r.via() }),
            Err(ServiceError::Invalid { message, .. }) => json!({ "ok": false, "error": message }),
            Err(e) => return Err(Error::from(e).into()),
        },
    ))
}
