//! The outermost layer of every request: request id, client address (forwarded headers
//! believed only from trusted proxies), security headers, access log, and the rendering
//! of errors into pages that show the request id.

use std::net::IpAddr;

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use serde_json::json;
use tracing::Instrument;

use super::{Error, templates};
use crate::state::AppState;

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

/// Walk `X-Forwarded-For` from the right, skipping our own proxies: the first address
/// that is not a trusted proxy is the client. Without a trusted peer the header is ignored.
pub fn client_addr(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded else {
        return Some(peer);
    };
    let mut last = peer;
    for part in header.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => last = ip,
            Ok(ip) => return Some(ip),
            // Garbage in the chain: stop believing it.
            Err(_) => return Some(last),
        }
    }
    Some(last)
}

fn request_id(req: &Request, trusted_peer: bool) -> String {
    if trusted_peer
        && let Some(id) = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return id.to_string();
    }
    crate::keys::random_hex(8)
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

fn secure(mut resp: Response, hsts: bool) -> Response {
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        CSP.parse().expect("static header"),
    );
    h.insert(
        "x-content-type-options",
        "nosniff".parse().expect("static header"),
    );
    h.insert("x-frame-options", "DENY".parse().expect("static header"));
    h.insert(
        "referrer-policy",
        "same-origin".parse().expect("static header"),
    );
    h.insert(
        "cross-origin-opener-policy",
        "same-origin".parse().expect("static header"),
    );
    if !h.contains_key("cache-control") {
        h.insert("cache-control", "no-store".parse().expect("static header"));
    }
    if hsts {
        h.insert(
            "strict-transport-security",
            "max-age=31536000".parse().expect("static header"),
        );
    }
    resp
}

pub async fn around<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let state = req.data::<AppState>().cloned().expect("state is attached");
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let trusted_peer =
        peer.is_some_and(|p| state.config.trusted_proxies.iter().any(|n| n.contains(&p)));
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = client_addr(peer, forwarded, &state.config.trusted_proxies);
    let rid = request_id(&req, trusted_peer);
    req.extensions_mut().insert(RequestId(rid.clone()));
    req.extensions_mut().insert(ClientAddr(client));

    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let theme = super::page::theme(&req);
    let span = tracing::info_span!("request", id = %rid);
    let started = std::time::Instant::now();
    let result = ep.call(req).instrument(span.clone()).await;
    let resp = match result {
        Ok(resp) => resp.into_response(),
        // Redirects travel as errors (e.g. "log in first"): pass them through.
        Err(err) if err.status().is_redirection() => err.into_response(),
        Err(err) => error_response(&state, &rid, theme, err),
    };
    let _enter = span.enter();
    tracing::info!(
        target: "pymap::access",
        %method,
        path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        client = %client.map(|c| c.to_string()).unwrap_or_default(),
    );
    let mut resp = secure(resp, state.config.cookie_secure());
    resp.headers_mut()
        .insert("x-request-id", rid.parse().expect("hex id"));
    Ok(resp)
}

/// Turn errors into pages inside the session layer, so that what a failing handler did
/// to the session (a purge on a disabled account, a new CSRF nonce) is still saved.
pub async fn render_errors<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let state = req.data::<AppState>().cloned().expect("state is attached");
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let theme = super::page::theme(&req);
    Ok(match ep.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) if err.status().is_redirection() => err.into_response(),
        Err(err) => error_response(&state, &rid, theme, err),
    })
}

fn error_response(state: &AppState, rid: &str, theme: &str, err: poem::Error) -> Response {
    let (status, message, retry_after) = match err.downcast_ref::<Error>() {
        Some(Error::Internal(context)) => {
            tracing::error!(error = %context, "request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Error::Internal(String::new()).to_string(),
                None,
            )
        }
        Some(e) => {
            let retry = match e {
                Error::Throttled(d) => Some(d.as_secs().max(1)),
                _ => None,
            };
            (e.status(), e.to_string(), retry)
        }
        None => {
            let status = err.status();
            if status.is_server_error() {
                tracing::error!(error = %err, "request failed");
            }
            let message = match status {
                StatusCode::NOT_FOUND => Error::NotFound.to_string(),
                s if s.is_server_error() => "internal error".to_string(),
                _ => err.to_string(),
            };
            (status, message, None)
        }
    };
    let body = templates::render(
        &state.templates,
        "error.html",
        json!({
            "status": status.as_u16(),
            "reason": status.canonical_reason(),
            "message": message,
            "request_id": rid,
            "theme": theme,
        }),
    )
    .unwrap_or_else(|_| format!("{} {message} (request id {rid})", status.as_u16()));
    let mut resp = poem::web::Html(body).with_status(status).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<ipnet::IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_header_only_from_trusted_peers() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Untrusted peer: header ignored.
        assert_eq!(
            client_addr(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // Trusted peer: rightmost untrusted entry wins (a spoofed left part is skipped).
        assert_eq!(
            client_addr(
                ip("127.0.0.1"),
                Some("6.6.6.6, 1.2.3.4, 10.1.1.1"),
                &trusted
            ),
            ip("1.2.3.4")
        );
        // Trusted peer without header: the peer itself.
        assert_eq!(
            client_addr(ip("127.0.0.1"), None, &trusted),
            ip("127.0.0.1")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_addr(ip("127.0.0.1"), Some("nonsense"), &trusted),
            ip("127.0.0.1")
        );
    }
}
