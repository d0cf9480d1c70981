//! `/metrics` in the Prometheus text format (written by hand), and the HTTP latency
//! histogram behind it.
//!
//! Job counts, queue depth and migrated volume come from the database, so every replica
//! reports the same totals; request latencies and running jobs are per process. Access is
//! governed by `metrics.mode`: `off` (404), `token` (`Authorization: Bearer
//! <metrics.token>`) or `trusted` (client address within `metrics.trusted`).

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use poem::{
    Endpoint, IntoResponse, PathPattern, Request, Response, handler, http::StatusCode, web::Data,
};
use subtle::ConstantTimeEq;

use crate::{config::MetricsMode, service::query, state::AppState, web::ClientAddr};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Latencies per (method, route template). Routes are templates (`/api/v1/tasks/{task_id}`),
/// and requests that matched no route share `unmatched`, so the set of series is bounded.
#[derive(Default)]
pub struct HttpMetrics {
    series: RwLock<HashMap<(String, String), Arc<Histogram>>>,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, secs: f64) {
        let key = (method.to_string(), route.to_string());
        if let Some(h) = self.series.read().expect("metrics lock").get(&key) {
            h.observe(secs);
            return;
        }
        let h = self
            .series
            .write()
            .expect("metrics lock")
            .entry(key)
            .or_default()
            .clone();
        h.observe(secs);
    }
}

/// One set per process.
pub static HTTP: LazyLock<HttpMetrics> = LazyLock::new(HttpMetrics::default);

/// `/tasks/:task_id` → `/tasks/{task_id}`.
fn template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None if seg.starts_with('*') => "{rest}".to_string(),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// poem-openapi registers path parameters as `{param0}`…; the spec names them. Map
/// `/api/v1/tasks/{param0}` back to `/api/v1/tasks/{task_id}` for readable labels.
fn named(route: &str) -> String {
    static SPEC_PATHS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap_or_default();
        spec["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|p| (shape(&format!("/api/v1{p}")), format!("/api/v1{p}")))
                    .collect()
            })
            .unwrap_or_default()
    });
    fn shape(path: &str) -> String {
        path.split('/')
            .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }
    if !route.starts_with("/api/v1/") || !route.contains('{') {
        return route.to_string();
    }
    SPEC_PATHS
        .get(&shape(route))
        .cloned()
        .unwrap_or_else(|| route.to_string())
}

/// Middleware: time every request by its route template.
pub async fn track<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let method = method_label(req.method()).to_string();
    let started = Instant::now();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let pattern = match &result {
        Ok(resp) => resp.data::<PathPattern>().map(|p| p.0.clone()),
        Err(err) => err.data::<PathPattern>().map(|p| p.0.clone()),
    };
    let route = match pattern {
        Some(p) if !p.is_empty() => template(&p),
        _ => "unmatched".into(),
    };
    HTTP.observe(&method, &route, started.elapsed().as_secs_f64());
    result
}

/// The method as a label. Clients may send any token as a method, and every label value
/// is a series kept forever, so methods outside the standard ones share `OTHER`.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `None` when the request may read the metrics, else the refusal.
fn refused(state: &AppState, req: &Request) -> Option<Response> {
    let m = &state.config.metrics;
    match m.mode {
        MetricsMode::Off => Some(StatusCode::NOT_FOUND.into_response()),
        MetricsMode::Token => {
            let expected = m.token.as_ref().map(|t| t.expose()).unwrap_or_default();
            let given = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
                None
            } else {
                Some(
                    "metrics token required\n"
                        .with_status(StatusCode::UNAUTHORIZED)
                        .with_header("www-authenticate", "Bearer realm=\"metrics\"")
                        .into_response(),
                )
            }
        }
        MetricsMode::Trusted => {
            let addr = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
            if addr.is_some_and(|a| m.trusted.iter().any(|net| net.contains(&a))) {
                None
            } else {
                Some(
                    "forbidden\n"
                        .with_status(StatusCode::FORBIDDEN)
                        .into_response(),
                )
            }
        }
    }
}

#[handler]
pub async fn metrics(req: &Request, Data(state): Data<&AppState>) -> Response {
    if let Some(refusal) = refused(state, req) {
        return refusal;
    }
    match render(state).await {
        Ok(text) => text
            .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot collect metrics");
            "cannot collect metrics\n"
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

async fn render(state: &AppState) -> crate::service::Result<String> {
    let totals = query::job_totals(&state.db).await?;
    let queue = query::queue_counts(&state.db).await?;
    let mut out = String::with_capacity(8 * 1024);

    header(
        &mut out,
        "pymap_jobs",
        "gauge",
        "Jobs in the database by status.",
    );
    for (status, n) in &totals.by_status {
        let _ = writeln!(out, "pymap_jobs{{status=\"{}\"}} {n}", status.as_str());
    }
    header(
        &mut out,
        "pymap_queue_depth",
        "gauge",
        "Queued jobs (all replicas).",
    );
    let _ = writeln!(out, "pymap_queue_depth {}", queue.queued);
    header(
        &mut out,
        "pymap_queue_ready",
        "gauge",
        "Queued jobs that may start now.",
    );
    let _ = writeln!(out, "pymap_queue_ready {}", queue.ready);
    header(
        &mut out,
        "pymap_jobs_running",
        "gauge",
        "Running jobs (all replicas).",
    );
    let _ = writeln!(out, "pymap_jobs_running {}", queue.running);
    header(
        &mut out,
        "pymap_pool_running",
        "gauge",
        "Jobs running in this process.",
    );
    let _ = writeln!(out, "pymap_pool_running {}", state.pool.running_jobs());
    header(
        &mut out,
        "pymap_pool_concurrency",
        "gauge",
        "Jobs this process runs at most at once.",
    );
    let _ = writeln!(
        out,
        "pymap_pool_concurrency {}",
        state.config.workers.concurrency
    );
    header(
        &mut out,
        "pymap_migrated_messages",
        "gauge",
        "Messages copied, summed over the last run of every job.",
    );
    let _ = writeln!(out, "pymap_migrated_messages {}", totals.messages);
    header(
        &mut out,
        "pymap_migrated_bytes",
        "gauge",
        "Bytes copied, summed over the last run of every job.",
    );
    let _ = writeln!(out, "pymap_migrated_bytes {}", totals.bytes);
    header(
        &mut out,
        "pymap_engine_failures",
        "gauge",
        "Failed jobs by engine exit reason.",
    );
    for (reason, n) in &totals.failures_by_exit {
        let _ = writeln!(
            out,
            "pymap_engine_failures{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }

    header(
        &mut out,
        "pymap_http_request_duration_seconds",
        "histogram",
        "HTTP request latency (time to response headers) by route template.",
    );
    let series: Vec<((String, String), Arc<Histogram>)> = {
        let map = HTTP.series.read().expect("metrics lock");
        let mut v: Vec<_> = map.iter().map(|(k, h)| (k.clone(), h.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for ((method, route), h) in series {
        let labels = format!(
            "method=\"{}\",route=\"{}\"",
            escape(&method),
            escape(&named(&route))
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pymap_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += h.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "pymap_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
        );
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "pymap_http_request_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "pymap_http_request_duration_seconds_count{{{labels}}} {}",
            h.count.load(Ordering::Relaxed)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_braces() {
        assert_eq!(
            template("/api/v1/tasks/:task_id/jobs"),
            "/api/v1/tasks/{task_id}/jobs"
        );
        assert_eq!(template("/static/:file"), "/static/{file}");
        assert_eq!(template("/"), "/");
    }

    #[test]
    fn odd_methods_share_one_label() {
        use poem::http::Method;
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::TRACE), "OTHER");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }

    #[test]
    fn histogram_buckets() {
        let h = Histogram::default();
        h.observe(0.0005);
        h.observe(0.02);
        h.observe(99.0);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[4].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[BUCKETS.len()].load(Ordering::Relaxed), 1);
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
    }
}
