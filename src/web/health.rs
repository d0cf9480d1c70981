//! `/healthz` (the process answers) and `/readyz` (its database and Redis answer).

use std::time::Duration;

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::json;

use crate::state::AppState;

#[handler]
pub fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `ok`, `unreachable` or `timeout`.
pub async fn database_status(state: &AppState) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, crate::db::ping(&state.db)).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unreachable".into()
        }
        Err(_) => "timeout".into(),
    }
}

/// `ok`, `unreachable`, `timeout` or `not configured`.
pub async fn redis_status(state: &AppState) -> String {
    match &state.redis {
        None => "not configured".to_string(),
        Some(conn) => {
            let mut conn = conn.clone();
            let cmd = redis::cmd("PING");
            match tokio::time::timeout(CHECK_TIMEOUT, cmd.query_async::<String>(&mut conn)).await {
                Ok(Ok(_)) => "ok".into(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "readiness: redis check failed");
                    "unreachable".into()
                }
                Err(_) => "timeout".into(),
            }
        }
    }
}

#[handler]
pub async fn readyz(Data(state): Data<&AppState>) -> Response {
    let database = database_status(state).await;
    let redis = redis_status(state).await;
    let ready = database == "ok" && matches!(redis.as_str(), "ok" | "not configured");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(json!({ "status": if ready { "ready" } else { "not ready" }, "database": database, "redis": redis }))
        .with_status(status)
        .into_response()
}
