//! minijinja templates: embedded in release builds, read from `templates/` (and reloaded
//! when changed) in debug builds.

use minijinja::{Environment, Value, value::Serde};
use serde::Serialize;

pub type Templates = Environment<'static>;

pub fn environment() -> Templates {
    let mut env = Environment::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    if cfg!(debug_assertions) && std::path::Path::new(dir).is_dir() {
        env.set_loader(minijinja::path_loader(dir));
        env.set_auto_reload(true);
    } else {
        minijinja_embed::load_templates!(&mut env);
    }
    env.add_global("asset_css", super::assets::css_path());
    env
}

pub fn render(env: &Templates, name: &str, ctx: impl Serialize) -> Result<String, super::Error> {
    env.get_template(name)
        .and_then(|t| t.render(Value::from(Serde(ctx))))
        .map_err(|e| super::Error::Internal(format!("template {name}: {e:#}")))
}
