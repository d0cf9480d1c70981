//! Building the effective configuration from its layers.
//!
//! Each layer (defaults, `config.json`, `PYMAP_*` environment, CLI flags) is turned into a
//! JSON tree here, so that legacy Pymap keys, `*_FILE` secrets and the source of every
//! value are handled in one place, and figment merges and extracts the result. Values stay
//! text until extraction (figment's lossy mode turns `"8000"` into a number), so a
//! password such as `00123` set from the environment is never reparsed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    value::{Dict, Map, Value as FigValue},
};
use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use super::Config;

/// Keys whose values are secrets: they accept a `<key>_file` twin and are redacted.
pub(crate) const SECRET_KEYS: &[&str] = &[
    "secret_key",
    "admin_password",
    "database_url",
    "redis_url",
    "metrics.token",
];
/// Old Pymap `config.json` keys that still mean something, and what they mean now.
const ALIASES: &[(&str, &str)] = &[
    ("pymap_logdir", "log_dir"),
    ("logdir", "log_dir"),
    ("hosts", "hosts"),
];
/// Old Pymap keys that no longer apply, with the replacement to point at.
const RETIRED: &[(&str, &str)] = &[
    ("databases", "database_url"),
    ("logging", "log_level and log_dir"),
    ("secret_key", "secret_key"),
    ("celery_broker_url", "redis_url"),
    ("celery_result_backend", "redis_url"),
];
const ENV_PREFIX: &str = "PYMAP_";
const ENV_LAYER: &str = "environment variable";

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

/// The effective configuration plus what `config show` and start-up need to report.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Where each leaf key got its value (`listen` → `environment variable PYMAP_LISTEN`).
    pub sources: BTreeMap<String, String>,
    /// Config file path consulted, and whether it existed.
    pub config_file: (PathBuf, bool),
    /// Unknown or retired keys: logged once at start-up.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON: {message} at line {line}, column {column}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid value for `{key}` from {origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

impl ConfigError {
    fn invalid(
        key: impl Into<String>,
        origin: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            key: key.into(),
            origin: origin.into(),
            message: message.into(),
        }
    }
}

/// One layer: a JSON tree, a name for error messages and the source of each leaf.
struct Layer {
    name: String,
    tree: JsonMap<String, Json>,
    sources: BTreeMap<String, String>,
    unknown: Vec<String>,
}

impl Layer {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            tree: JsonMap::new(),
            sources: BTreeMap::new(),
            unknown: Vec::new(),
        }
    }

    fn insert(&mut self, path: &[String], value: Json, source: String) {
        let mut node = &mut self.tree;
        for part in &path[..path.len() - 1] {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| Json::Object(JsonMap::new()));
            if !entry.is_object() {
                *entry = Json::Object(JsonMap::new());
            }
            node = entry.as_object_mut().expect("just made an object");
        }
        node.insert(path[path.len() - 1].clone(), value);
        self.sources.insert(path.join("."), source);
    }
}

struct LayerProvider {
    meta: Metadata,
    dict: Dict,
}

impl Provider for LayerProvider {
    fn metadata(&self) -> Metadata {
        self.meta.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

impl Layer {
    fn provider(&self) -> LayerProvider {
        let meta = if self.name == ENV_LAYER {
            Metadata::named(ENV_LAYER).interpolater(|_: &Profile, keys: &[&str]| env_name(keys))
        } else {
            Metadata::named(self.name.clone())
        };
        let dict = match FigValue::serialize(&self.tree) {
            Ok(FigValue::Dict(_, dict)) => dict,
            _ => Dict::new(),
        };
        LayerProvider { meta, dict }
    }
}

fn env_name(keys: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", keys.join("__").to_uppercase())
}

/// Every key path a configuration may contain (from the defaults' shape).
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &Json, out: &mut Vec<String>) {
        if let Json::Object(map) = value {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&path, v, out);
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).expect("config serialises"),
        &mut out,
    );
    out
}

fn canonical(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(old, _)| *old == lower)
        .map_or(lower, |(_, new)| (*new).to_string())
}

/// Read a `*_FILE` secret: the whole file, without the trailing newline editors add.
fn read_secret_file(key: &str, path: &str, origin: &str) -> Result<Json, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            format!("{key}_file"),
            origin,
            format!("cannot read {path}: {e}"),
        )
    })?;
    Ok(Json::String(
        text.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// Place one user-supplied key into a layer, resolving aliases, `*_file` twins and
/// unknown keys. `origin` names where the key came from for messages.
fn place(
    layer: &mut Layer,
    known: &[String],
    path: Vec<String>,
    value: Json,
    origin: String,
) -> Result<(), ConfigError> {
    let dotted = path.join(".");
    if let Some(secret) = dotted
        .strip_suffix("_file")
        .filter(|s| SECRET_KEYS.contains(s))
    {
        let Json::String(file) = &value else {
            return Err(ConfigError::invalid(
                &dotted,
                origin,
                "expected a file path",
            ));
        };
        if layer.sources.contains_key(secret) {
            return Err(ConfigError::invalid(
                &dotted,
                origin,
                format!("both `{secret}` and `{dotted}` are set; use one"),
            ));
        }
        let secret_value = read_secret_file(secret, file, &origin)?;
        let target: Vec<String> = secret.split('.').map(str::to_string).collect();
        layer.insert(
            &target,
            secret_value,
            format!("file {file} (named by {origin})"),
        );
        return Ok(());
    }
    if SECRET_KEYS.contains(&dotted.as_str()) && layer.sources.contains_key(&dotted) {
        return Err(ConfigError::invalid(
            &dotted,
            origin,
            format!("both `{dotted}` and `{dotted}_file` are set; use one"),
        ));
    }
    if known.contains(&dotted) {
        layer.insert(&path, value, origin);
    } else {
        let hint = RETIRED
            .iter()
            .find(|(old, _)| *old == dotted)
            .map(|(_, new)| format!(" (an old Pymap key; pymap uses {new})"))
            .unwrap_or_default();
        layer.unknown.push(format!("{dotted} in {origin}{hint}"));
    }
    Ok(())
}

fn file_layer(path: &Path, known: &[String]) -> Result<Option<Layer>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let json: Json = serde_json::from_str(&text).map_err(|e| ConfigError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
    })?;
    let Json::Object(top) = json else {
        return Err(ConfigError::Json {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: "the top level must be an object".into(),
        });
    };
    let origin = format!("config file {}", path.display());
    let mut layer = Layer::new(origin.clone());
    fn flatten(
        prefix: Vec<String>,
        map: JsonMap<String, Json>,
        known: &[String],
        out: &mut Vec<(Vec<String>, Json)>,
    ) {
        for (k, v) in map {
            let mut path = prefix.clone();
            path.push(if prefix.is_empty() {
                canonical(&k)
            } else {
                k.to_ascii_lowercase()
            });
            let dotted = path.join(".");
            match v {
                // Sections recurse; a key that is a leaf in the defaults keeps its object.
                Json::Object(inner)
                    if known.iter().any(|p| p.starts_with(&format!("{dotted}."))) =>
                {
                    flatten(path, inner, known, out)
                }
                other => out.push((path, other)),
            }
        }
    }
    let mut leaves = Vec::new();
    flatten(Vec::new(), top, known, &mut leaves);
    for (path, value) in leaves {
        place(&mut layer, known, path, value, origin.clone())?;
    }
    Ok(Some(layer))
}

fn env_layer(vars: &[(String, String)], known: &[String]) -> Result<Layer, ConfigError> {
    let mut layer = Layer::new(ENV_LAYER);
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest == "CONFIG" {
            continue;
        }
        let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        path[0] = canonical(&path[0]);
        let dotted = path.join(".");
        let value = match dotted.as_str() {
            "trusted_proxies" | "metrics.trusted" => list_value(&dotted, name, raw)?,
            "hosts" => serde_json::from_str(raw).map_err(|e| {
                ConfigError::invalid(
                    "hosts",
                    format!("environment variable {name}"),
                    format!("expected JSON like [[\"^mx$\", \".example.com\"]]: {e}"),
                )
            })?,
            _ => Json::String(raw.clone()),
        };
        place(
            &mut layer,
            known,
            path,
            value,
            format!("environment variable {name}"),
        )?;
    }
    Ok(layer)
}

/// A list from the environment: JSON (`["a","b"]`) or comma/space separated.
fn list_value(key: &str, name: &str, raw: &str) -> Result<Json, ConfigError> {
    if raw.trim_start().starts_with('[') {
        return serde_json::from_str(raw).map_err(|e| {
            ConfigError::invalid(key, format!("environment variable {name}"), e.to_string())
        });
    }
    Ok(Json::Array(
        raw.split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| Json::String(s.to_string()))
            .collect(),
    ))
}

fn flag_layer(overrides: &Overrides) -> Layer {
    let mut layer = Layer::new("command-line flag");
    if let Ok(Json::Object(map)) = serde_json::to_value(overrides) {
        for (k, v) in map {
            let flag = format!("command-line flag --{}", k.replace('_', "-"));
            layer.insert(&[k], v, flag);
        }
    }
    layer
}

/// Load from the real process environment.
pub fn load(overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    load_from(overrides, &vars)
}

/// Load with an explicit environment (tests pass their own).
pub fn load_from(overrides: &Overrides, vars: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let known = known_keys();
    let env_config = vars
        .iter()
        .find(|(k, _)| k == "PYMAP_CONFIG")
        .map(|(_, v)| PathBuf::from(v));
    let explicit = overrides.config.clone().or(env_config);
    let config_path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from("config.json"));

    let file = file_layer(&config_path, &known)?;
    if file.is_none() && explicit.is_some() {
        return Err(ConfigError::Read {
            path: config_path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file (named by --config or PYMAP_CONFIG)",
            ),
        });
    }
    let mut layers = Vec::new();
    let defaults = serde_json::to_value(Config::default()).expect("config serialises");
    let mut default_layer = Layer::new("default");
    if let Json::Object(map) = defaults {
        default_layer.tree = map;
    }
    layers.push(default_layer);
    let file_found = file.is_some();
    layers.extend(file);
    layers.push(env_layer(vars, &known)?);
    layers.push(flag_layer(overrides));

    let mut figment = Figment::new();
    let mut sources = BTreeMap::new();
    let mut warnings = Vec::new();
    for layer in &layers {
        figment = figment.merge(layer.provider());
        sources.extend(layer.sources.clone());
        warnings.extend(layer.unknown.iter().cloned());
    }
    if !warnings.is_empty() {
        warnings = vec![format!(
            "ignoring unknown configuration keys: {}",
            warnings.join("; ")
        )];
    }
    let config: Config = figment.extract_lossy().map_err(|e| describe(&e))?;
    validate(&config, &sources)?;
    Ok(Loaded {
        config,
        sources,
        config_file: (config_path, file_found),
        warnings,
    })
}

fn describe(err: &figment::Error) -> ConfigError {
    let key = err.path.join(".");
    let origin = match &err.metadata {
        Some(meta) if meta.name == ENV_LAYER => {
            let keys: Vec<&str> = err.path.iter().map(String::as_str).collect();
            format!("environment variable {}", env_name(&keys))
        }
        Some(meta) => meta.name.to_string(),
        None => "configuration".into(),
    };
    ConfigError::invalid(
        if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        origin,
        err.kind.to_string(),
    )
}

/// Checks serde cannot express; each error names the key and where it came from.
fn validate(config: &Config, sources: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let origin = |key: &str| {
        sources
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".into())
    };
    let fail = |key: &str, msg: String| Err(ConfigError::invalid(key, origin(key), msg));
    if config.data_dir.as_os_str().is_empty() {
        return fail("data_dir", "must not be empty".into());
    }
    if let Some(url) = &config.database_url {
        let url = url.expose();
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            return fail(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
    }
    if let Some(url) = &config.redis_url {
        let url = url.expose();
        if !["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            return fail(
                "redis_url",
                "must start with redis://, rediss:// or unix://".into(),
            );
        }
    }
    if config
        .run_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return fail(
            "run_dir",
            "must be a directory path (unset: in RAM, see the README)".into(),
        );
    }
    if let Some(url) = &config.public_url {
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(_) => return fail("public_url", "must be an http:// or https:// URL".into()),
            Err(e) => return fail("public_url", e.to_string()),
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        return fail("log_level", e.to_string());
    }
    for (i, (pattern, _)) in config.hosts.iter().enumerate() {
        if let Err(e) = regex::Regex::new(pattern) {
            return fail(
                "hosts",
                format!("pattern #{} `{pattern}` is not a valid regex: {e}", i + 1),
            );
        }
    }
    if config
        .database_max_connections
        .is_some_and(|n| !(2..=1000).contains(&n))
    {
        return fail(
            "database_max_connections",
            "must be 2 to 1000 (unset: automatic)".into(),
        );
    }
    let positive = [
        ("log_retention_days", config.log_retention_days as u64),
        ("workers.concurrency", config.workers.concurrency as u64),
        (
            "workers.per_source_host",
            config.workers.per_source_host as u64,
        ),
        (
            "workers.per_destination_host",
            config.workers.per_destination_host as u64,
        ),
        ("workers.max_attempts", config.workers.max_attempts as u64),
        ("batch_max_lines", config.batch_max_lines as u64),
        (
            "login_throttle.per_address",
            config.login_throttle.per_address as u64,
        ),
        (
            "login_throttle.per_user",
            config.login_throttle.per_user as u64,
        ),
        (
            "login_throttle.window_secs",
            config.login_throttle.window_secs,
        ),
    ];
    for (key, value) in positive {
        if value == 0 {
            return fail(key, "must be at least 1".into());
        }
    }
    if config.session.max_age_secs < 60 {
        return fail("session.max_age_secs", "must be at least 60".into());
    }
    if config
        .secret_key
        .as_ref()
        .is_some_and(|k| k.expose().len() < 32)
    {
        return fail("secret_key", "must be at least 32 characters".into());
    }
    match config.metrics.mode {
        super::MetricsMode::Token
            if config
                .metrics
                .token
                .as_ref()
                .is_none_or(|t| t.expose().len() < 16) =>
        {
            return fail(
                "metrics.token",
                "must be set (at least 16 characters) when metrics.mode is token".into(),
            );
        }
        super::MetricsMode::Trusted if config.metrics.trusted.is_empty() => {
            return fail(
                "metrics.trusted",
                "must list at least one address or range when metrics.mode is trusted".into(),
            );
        }
        _ => {}
    }
    Ok(())
}
