//! `pymap config show`: every effective value with where it came from, secrets redacted.

use serde_json::Value as Json;

use super::{Loaded, load::SECRET_KEYS, redact_url};

/// One line per leaf key: `key = value  # source`.
pub fn render_show(loaded: &Loaded) -> String {
    let mut out = String::new();
    let (path, found) = &loaded.config_file;
    out.push_str(&format!(
        "# config file: {} ({})\n",
        path.display(),
        if *found { "read" } else { "absent" }
    ));
    let tree = serde_json::to_value(&loaded.config).expect("config serialises");
    let mut lines = Vec::new();
    walk("", &tree, &mut lines);
    let width = lines
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .max()
        .unwrap_or(0)
        + 4;
    for (key, value) in &lines {
        let source = loaded
            .sources
            .get(key.as_str())
            .cloned()
            .unwrap_or_else(|| "default".into());
        let shown = match (key.as_str(), value.as_str()) {
            ("database_max_connections", "null") => {
                format!("{} (automatic)", loaded.config.database_max_connections())
            }
            ("run_dir", "null") => {
                format!("\"{}\" (automatic)", loaded.config.run_dir().display())
            }
            _ => redact(key, value, loaded),
        };
        let pad = width.saturating_sub(key.len() + shown.len());
        out.push_str(&format!("{key} = {shown}{:pad$}# {source}\n", ""));
    }
    out
}

fn walk(prefix: &str, value: &Json, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&path, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn redact(key: &str, value: &str, loaded: &Loaded) -> String {
    if !SECRET_KEYS.contains(&key) {
        return value.to_string();
    }
    if value == "null" {
        return match key {
            "secret_key" => format!(
                "(from {})",
                loaded.config.data_dir.join(".secret").display()
            ),
            "database_url" => format!("\"{}\"", loaded.config.database_url()),
            _ => "(not set)".into(),
        };
    }
    match key {
        // URLs are useful to see; only their password part is secret.
        "database_url" | "redis_url" => {
            let raw: String = serde_json::from_str(value).unwrap_or_default();
            format!("\"{}\"", redact_url(&raw))
        }
        _ => "\"***\"".into(),
    }
}
