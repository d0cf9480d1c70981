//! Static files compiled into the binary with content-hashed names, so appliances with
//! no internet serve everything themselves and browsers may cache forever.

use std::sync::OnceLock;

use poem::{IntoResponse, Response, handler, http::StatusCode, web::Path};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../static/pymap.css");

fn hashed(name: &str, ext: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("/static/{name}.{}.{ext}", &hex::encode(digest)[..12])
}

pub fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| hashed("pymap", "css", CSS))
}

#[handler]
pub fn asset(Path(file): Path<String>) -> Response {
    if format!("/static/{file}") == css_path() {
        return CSS
            .with_content_type("text/css; charset=utf-8")
            .with_header("Cache-Control", "public, max-age=31536000, immutable")
            .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}
