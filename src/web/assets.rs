//! Static files compiled into the binary with content-hashed names, so appliances with
//! no internet serve everything themselves and browsers may cache forever.

use std::sync::OnceLock;

use poem::{IntoResponse, Response, handler, http::StatusCode, web::Path};
use sha2::{Digest, Sha256};

struct Asset {
    path: String,
    body: &'static str,
    content_type: &'static str,
}

const FILES: [(&str, &str, &str, &str); 2] = [
    (
        "pymap",
        "css",
        include_str!("../../static/pymap.css"),
        "text/css; charset=utf-8",
    ),
    (
        "pymap",
        "js",
        include_str!("../../static/pymap.js"),
        "text/javascript; charset=utf-8",
    ),
];

fn hashed(name: &str, ext: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("/static/{name}.{}.{ext}", &hex::encode(digest)[..12])
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, ext, body, content_type)| Asset {
                path: hashed(name, ext, body),
                body,
                content_type,
            })
            .collect()
    })
}

pub fn css_path() -> &'static str {
    &assets()[0].path
}

pub fn js_path() -> &'static str {
    &assets()[1].path
}

/// Bytes of CSS and JavaScript a browser downloads (for the page-weight check).
pub fn total_bytes() -> usize {
    assets().iter().map(|a| a.body.len()).sum()
}

#[handler]
pub fn asset(Path(file): Path<String>) -> Response {
    let wanted = format!("/static/{file}");
    match assets().iter().find(|a| a.path == wanted) {
        Some(a) => a
            .body
            .with_content_type(a.content_type)
            .with_header("Cache-Control", "public, max-age=31536000, immutable")
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
