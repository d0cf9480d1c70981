//! minijinja templates: embedded in release builds, read from `templates/` (and reloaded
//! when changed) in debug builds.

use minijinja::{Environment, Value, value::Serde};
use serde::Serialize;

pub type Templates = Environment<'static>;

pub fn environment() -> Templates {
    let mut env = Environment::new();
    // Block tags do not leave their indentation and newline behind (500-row tables).
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    if cfg!(debug_assertions) && std::path::Path::new(dir).is_dir() {
        env.set_loader(minijinja::path_loader(dir));
        env.set_auto_reload(true);
    } else {
        minijinja_embed::load_templates!(&mut env);
    }
    // Marked safe: the HTML escaper would turn their slashes into `&#x2f;`.
    env.add_global(
        "asset_css",
        Value::from_safe_string(super::assets::css_path().into()),
    );
    env.add_global(
        "asset_js",
        Value::from_safe_string(super::assets::js_path().into()),
    );
    env
}

pub fn render(env: &Templates, name: &str, ctx: impl Serialize) -> Result<String, super::Error> {
    env.get_template(name)
        .and_then(|t| t.render(Value::from(Serde(ctx))))
        .map_err(|e| super::Error::Internal(format!("template {name}: {e:#}")))
}
