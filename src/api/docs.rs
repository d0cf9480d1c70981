//! `/api/doc`: Swagger UI, entirely from the binary (appliances often have no internet).
//!
//! poem-openapi bundles Swagger UI's JavaScript and CSS but inlines them into one page,
//! which our Content-Security-Policy (`script-src 'self'`, no inline code) blocks. So the
//! bundled files are taken out of that page once at start-up and served as separate
//! same-origin files, with a small start script that loads `/api/openapi.json` and, for
//! session users, adds the CSRF header to "Try it out" requests.

use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, endpoint::make_sync};
use poem_openapi::OpenApiService;

use super::Apis;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pymap API</title>
<link rel="stylesheet" href="/api/doc/swagger-ui.css">
<script src="/api/doc/swagger-ui-bundle.js"></script>
<script src="/api/doc/start.js" defer></script>
</head>
<body>
<div id="ui"></div>
</body>
</html>
"#;

const START: &str = r##""use strict";
(function () {
  var csrf = null;
  fetch("/api/v1/me", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (me) { if (me && me.csrf_token) { csrf = me.csrf_token; } })
    .catch(function () {});
  SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#ui",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (req) {
      if (csrf && !req.headers["Authorization"]) { req.headers["X-CSRF-Token"] = csrf; }
      return req;
    }
  });
})();
"##;

/// The text between `open` and the first `close` after it.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// The bundled Swagger UI's CSS and JavaScript.
fn bundled(api: &OpenApiService<Apis, ()>) -> (String, String) {
    let page = api.swagger_ui_html();
    let css = between(&page, "<style charset=\"UTF-8\">", "</style>").unwrap_or_default();
    let js = between(&page, "<script charset=\"UTF-8\">", "</script>").unwrap_or_default();
    // The source map is not bundled; do not let browsers ask for it.
    let css = css.replace("/*# sourceMappingURL=swagger-ui.css.map*/", "");
    if js.is_empty() {
        tracing::error!("the bundled Swagger UI could not be extracted; /api/doc will be empty");
    }
    (css, js.to_string())
}

fn asset(body: String, content_type: &'static str) -> impl Endpoint<Output = Response> {
    make_sync(move |_| {
        body.clone()
            .with_content_type(content_type)
            .with_header("cache-control", "public, max-age=3600")
            .into_response()
    })
}

pub fn endpoint(api: &OpenApiService<Apis, ()>) -> impl Endpoint + use<> {
    let (css, js) = bundled(api);
    Route::new()
        .at("/", make_sync(|_| poem::web::Html(PAGE).into_response()))
        .at("/swagger-ui.css", asset(css, "text/css; charset=utf-8"))
        .at(
            "/swagger-ui-bundle.js",
            asset(js, "text/javascript; charset=utf-8"),
        )
        .at(
            "/start.js",
            asset(START.to_string(), "text/javascript; charset=utf-8"),
        )
        .map_to_response()
}
