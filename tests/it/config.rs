//! Configuration layering and every kind of bad input.

use std::path::Path;

use pymap::config::{ConfigError, Loaded, Overrides, load_from, render_show};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The line `config show` prints for `key`.
fn show_line(loaded: &Loaded, key: &str) -> String {
    let prefix = format!("{key} = ");
    render_show(loaded)
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("config show lists {key}"))
        .to_string()
}

fn load(
    file: Option<&Path>,
    vars: &[(&str, &str)],
    flags: Overrides,
) -> Result<Loaded, ConfigError> {
    let overrides = Overrides {
        config: file.map(Path::to_path_buf),
        ..flags
    };
    load_from(&overrides, &env(vars))
}

#[test]
fn precedence_default_file_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.json",
        r#"{"listen": "127.0.0.1:8001", "data_dir": "/srv/file", "log_level": "debug", "workers": {"concurrency": 3}}"#,
    );
    // Default only.
    let loaded = load_from(
        &Overrides {
            config: None,
            ..Default::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(loaded.config.workers.concurrency, 8);
    // File over default.
    let loaded = load(Some(&file), &[], Overrides::default()).unwrap();
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:8001");
    assert_eq!(loaded.config.workers.concurrency, 3);
    assert_eq!(
        loaded.sources["listen"],
        format!("config file {}", file.display())
    );
    // Env over file, with `__` nesting.
    let vars = [
        ("PYMAP_LISTEN", "127.0.0.1:8002"),
        ("PYMAP_WORKERS__CONCURRENCY", "5"),
        ("PYMAP_DATA_DIR", "/srv/env"),
    ];
    let loaded = load(Some(&file), &vars, Overrides::default()).unwrap();
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:8002");
    assert_eq!(loaded.config.workers.concurrency, 5);
    assert_eq!(
        loaded.sources["workers.concurrency"],
        "environment variable PYMAP_WORKERS__CONCURRENCY"
    );
    assert_eq!(
        loaded.config.log_level, "debug",
        "untouched keys keep the file's value"
    );
    // Flag over env.
    let flags = Overrides {
        listen: Some("127.0.0.1:8003".into()),
        data_dir: Some("/srv/flag".into()),
        ..Default::default()
    };
    let loaded = load(Some(&file), &vars, flags).unwrap();
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:8003");
    assert_eq!(loaded.config.data_dir, Path::new("/srv/flag"));
    assert_eq!(loaded.sources["listen"], "command-line flag --listen");
}

#[test]
fn config_path_from_env_and_explicit_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "other.json", r#"{"log_retention_days": 3}"#);
    let loaded = load_from(
        &Overrides::default(),
        &env(&[("PYMAP_CONFIG", file.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(loaded.config.log_retention_days, 3);
    let err = load(
        Some(&dir.path().join("missing.json")),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn secret_files_and_legacy_pymap_keys() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(
        dir.path(),
        "secret",
        "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-0123\n",
    );
    let admin = write(dir.path(), "admin", "00123-password\n");
    let file = write(
        dir.path(),
        "config.json",
        r#"{"PYMAP_LOGDIR": "/var/log/pymap", "HOSTS": [["^(VPS|SV)$", ".example.com"]]}"#,
    );
    let vars = [
        ("PYMAP_SECRET_KEY_FILE", secret.to_str().unwrap()),
        ("PYMAP_ADMIN_PASSWORD_FILE", admin.to_str().unwrap()),
        ("PYMAP_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
    ];
    let loaded = load(Some(&file), &vars, Overrides::default()).unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.secret_key.as_ref().unwrap().expose(),
        "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-0123"
    );
    assert_eq!(
        c.admin_password.as_ref().unwrap().expose(),
        "00123-password",
        "text kept, not parsed as a number"
    );
    assert_eq!(c.log_dir.as_deref(), Some(Path::new("/var/log/pymap")));
    assert_eq!(
        c.hosts,
        vec![("^(VPS|SV)$".to_string(), ".example.com".to_string())]
    );
    // PYMAP_LOGDIR works from the environment too and beats the file.
    let loaded = load(
        Some(&file),
        &[("PYMAP_LOGDIR", "/tmp/logs")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        loaded.config.log_dir.as_deref(),
        Some(Path::new("/tmp/logs"))
    );

    // `config show` names sources and never prints a secret.
    let loaded = load(Some(&file), &vars, Overrides::default()).unwrap();
    let shown = render_show(&loaded);
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("00123") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(shown.contains("redis://:***@127.0.0.1:6379/0"), "{shown}");
    assert!(shown.contains("PYMAP_SECRET_KEY_FILE"), "{shown}");
    assert!(
        shown.contains(&format!("config file {}", file.display())),
        "{shown}"
    );

    // Both a value and its _FILE twin: refused.
    let err = load(
        None,
        &[
            ("PYMAP_SECRET_KEY", "x".repeat(40).as_str()),
            ("PYMAP_SECRET_KEY_FILE", secret.to_str().unwrap()),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("use one"), "{err}");
    // An unreadable _FILE names the variable and the path.
    let err = load(
        None,
        &[("PYMAP_ADMIN_PASSWORD_FILE", "/nonexistent/pw")],
        Overrides::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("PYMAP_ADMIN_PASSWORD_FILE") && msg.contains("/nonexistent/pw"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_give_one_warning_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.json",
        r#"{"DATABASES": {}, "lisen": "x", "workers": {"concurency": 2}}"#,
    );
    let loaded = load(
        Some(&file),
        &[("PYMAP_FROBNICATE", "1")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    for key in [
        "databases",
        "lisen",
        "workers.concurency",
        "frobnicate",
        "PYMAP_FROBNICATE",
        "database_url",
    ] {
        assert!(w.contains(key), "warning should name {key}: {w}");
    }
    let clean = load(
        None,
        &[("PYMAP_LISTEN", "127.0.0.1:9")],
        Overrides::default(),
    )
    .unwrap();
    assert!(clean.warnings.is_empty());
}

#[test]
fn bad_values_name_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (Some(r#"{"listen": 5}"#), vec![], &["listen", "config.json"]),
        (
            Some(r#"{"workers": {"concurrency": "lots"}}"#),
            vec![],
            &["workers.concurrency", "config.json"],
        ),
        (
            None,
            vec![("PYMAP_LISTEN", "not-an-address")],
            &["listen", "PYMAP_LISTEN"],
        ),
        (
            None,
            vec![("PYMAP_WORKERS__CONCURRENCY", "0")],
            &[
                "workers.concurrency",
                "PYMAP_WORKERS__CONCURRENCY",
                "at least 1",
            ],
        ),
        (
            None,
            vec![("PYMAP_DATABASE_URL", "mysql://x")],
            &["database_url", "PYMAP_DATABASE_URL"],
        ),
        (
            None,
            vec![("PYMAP_DATABASE_MAX_CONNECTIONS", "1")],
            &[
                "database_max_connections",
                "PYMAP_DATABASE_MAX_CONNECTIONS",
                "2 to 1000",
            ],
        ),
        (
            Some(r#"{"database_max_connections": 5000}"#),
            vec![],
            &["database_max_connections", "config.json", "2 to 1000"],
        ),
        (
            None,
            vec![("PYMAP_DATABASE_MAX_CONNECTIONS", "-3")],
            &["database_max_connections", "PYMAP_DATABASE_MAX_CONNECTIONS"],
        ),
        (
            None,
            vec![("PYMAP_REDIS_URL", "http://x")],
            &["redis_url", "PYMAP_REDIS_URL"],
        ),
        (
            None,
            vec![("PYMAP_PUBLIC_URL", "ftp://x")],
            &["public_url", "PYMAP_PUBLIC_URL"],
        ),
        (
            None,
            vec![("PYMAP_TRUSTED_PROXIES", "10.0.0.0/8,banana")],
            &["trusted_proxies", "PYMAP_TRUSTED_PROXIES", "banana"],
        ),
        (
            None,
            vec![("PYMAP_HOSTS", r#"[["(unclosed", ".x"]]"#)],
            &["hosts", "#1", "PYMAP_HOSTS"],
        ),
        (
            None,
            vec![("PYMAP_HOSTS", "not json")],
            &["hosts", "PYMAP_HOSTS"],
        ),
        (
            None,
            vec![("PYMAP_SECRET_KEY", "short")],
            &["secret_key", "32"],
        ),
        (
            None,
            vec![("PYMAP_LOG_LEVEL", "pymap=loud")],
            &["log_level", "PYMAP_LOG_LEVEL"],
        ),
    ];
    for (i, (file, vars, needles)) in cases.into_iter().enumerate() {
        let path = file.map(|text| write(dir.path(), "config.json", text));
        let err = load(path.as_deref(), &vars, Overrides::default())
            .expect_err(&format!("case {i} must fail"));
        let msg = err.to_string();
        for needle in needles {
            assert!(
                msg.contains(needle),
                "case {i}: `{msg}` should mention `{needle}`"
            );
        }
        assert!(
            !msg.contains("short") || !needles.contains(&"32"),
            "the secret itself is not echoed: {msg}"
        );
    }
}

#[test]
fn malformed_json_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.json",
        "{\n  \"listen\": \"127.0.0.1:1\",\n  \"data_dir\" \"x\"\n}\n",
    );
    let err = load(Some(&file), &[], Overrides::default()).unwrap_err();
    match &err {
        ConfigError::Json { line, column, .. } => assert_eq!((*line, *column), (3, 14)),
        other => panic!("expected a JSON error, got {other}"),
    }
    assert!(err.to_string().contains("line 3, column 14"), "{err}");
    let file = write(dir.path(), "config.json", "[1, 2]");
    assert!(
        load(Some(&file), &[], Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("object")
    );
}

/// A bare address is one host (/32, /128), as README and `.env.template` write it.
#[test]
fn bare_addresses_are_single_hosts() {
    let config = load(
        None,
        &[
            ("PYMAP_TRUSTED_PROXIES", "127.0.0.1, ::1,10.0.0.0/8"),
            ("PYMAP_METRICS__MODE", "trusted"),
            ("PYMAP_METRICS__TRUSTED", "192.0.2.7"),
        ],
        Overrides::default(),
    )
    .unwrap()
    .config;
    let shown: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(shown, ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
    assert_eq!(config.metrics.trusted[0].to_string(), "192.0.2.7/32");
}

/// `.env.template` is the appliance's whole configuration surface: every setting pymap
/// reads has its variable there (a new setting without one fails here), and every secret
/// its `_FILE` variant.
#[test]
fn env_template_lists_every_setting() {
    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let name = if prefix.is_empty() {
                        k.to_uppercase()
                    } else {
                        format!("{prefix}__{}", k.to_uppercase())
                    };
                    leaves(&name, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let config = load(None, &[], Overrides::default()).unwrap().config;
    let mut names = Vec::new();
    leaves("", &serde_json::to_value(&config).unwrap(), &mut names);
    assert!(names.len() > 20, "{names:?}");
    let template = include_str!("../../.env.template");
    let listed = |var: &str| {
        template
            .lines()
            .any(|l| l.trim_start_matches('#').starts_with(&format!("{var}=")))
    };
    let missing: Vec<String> = names
        .iter()
        .map(|n| format!("PYMAP_{n}"))
        .filter(|v| !listed(v))
        .collect();
    assert!(missing.is_empty(), "not in .env.template: {missing:?}");
    for secret in ["SECRET_KEY", "ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL"] {
        assert!(listed(&format!("PYMAP_{secret}_FILE")), "{secret}_FILE");
    }
}

/// The pool size: automatic (PostgreSQL: twice the CPUs, at least 4; SQLite: 8) unless
/// set, and `config show` says which.
#[test]
fn database_pool_size_is_automatic_unless_set() {
    let cpus = std::thread::available_parallelism().unwrap().get() as u32;
    let pool_line = |loaded: &Loaded| show_line(loaded, "database_max_connections");
    let sqlite = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(sqlite.config.database_max_connections(), 8);
    assert!(pool_line(&sqlite).contains("= 8 (automatic)"));
    let postgres = load(
        None,
        &[("PYMAP_DATABASE_URL", "postgres://pymap@db.example/pymap")],
        Overrides::default(),
    )
    .unwrap();
    let expected = (2 * cpus).max(4);
    assert_eq!(postgres.config.database_max_connections(), expected);
    let line = pool_line(&postgres);
    assert!(
        line.contains(&format!("= {expected} (automatic)")),
        "{line}"
    );
    let set = load(
        None,
        &[
            ("PYMAP_DATABASE_URL", "postgres://pymap@db.example/pymap"),
            ("PYMAP_DATABASE_MAX_CONNECTIONS", "12"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(set.config.database_max_connections(), 12);
    let line = pool_line(&set);
    assert!(
        line.contains("= 12") && line.contains("PYMAP_DATABASE_MAX_CONNECTIONS"),
        "{line}"
    );
}

/// Pass files go to RAM unless told otherwise: systemd's runtime directory, else a
/// per-user, per-data-dir directory in /dev/shm, else the data dir; a set value wins and an
/// empty one is refused.
#[test]
fn run_dir_defaults_to_ram_per_data_dir() {
    use std::ffi::OsStr;
    let shm = tempfile::tempdir().unwrap();
    let with = |data_dir: &str, run_dir: Option<&str>| pymap::config::Config {
        data_dir: data_dir.into(),
        run_dir: run_dir.map(Into::into),
        ..Default::default()
    };
    let a = with("/srv/a", None);
    assert_eq!(
        a.run_dir_from(Some(OsStr::new("/run/pymap:/run/other")), shm.path()),
        Path::new("/run/pymap/jobs")
    );
    let in_shm = a.run_dir_from(None, shm.path());
    let uid = rustix::process::geteuid().as_raw();
    assert_eq!(in_shm.parent(), Some(shm.path()));
    let name = in_shm.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("pymap-{uid}-")), "{name}");
    assert_eq!(a.run_dir_from(None, shm.path()), in_shm, "stable");
    let b = with("/srv/b", None);
    assert_ne!(b.run_dir_from(None, shm.path()), in_shm, "one per data dir");
    let no_shm = shm.path().join("absent");
    assert_eq!(a.run_dir_from(None, &no_shm), Path::new("/srv/a/run"));
    let set = with("/srv/a", Some("/var/lib/pymap-run"));
    assert_eq!(
        set.run_dir_from(Some(OsStr::new("/run/pymap")), shm.path()),
        Path::new("/var/lib/pymap-run")
    );
    // The real default on this machine: RAM when /dev/shm is there (it is on Debian).
    if std::env::var_os("RUNTIME_DIRECTORY").is_none() && Path::new("/dev/shm").is_dir() {
        assert!(a.run_dir().starts_with("/dev/shm"), "{:?}", a.run_dir());
    }
    // config show names the directory in effect, and says when it is the automatic one.
    let shown = |loaded: &Loaded| show_line(loaded, "run_dir");
    let default = load(None, &[], Overrides::default()).unwrap();
    let line = shown(&default);
    let automatic = format!("\"{}\" (automatic)", default.config.run_dir().display());
    assert!(line.contains(&automatic), "{line}");
    let loaded = load(
        None,
        &[("PYMAP_RUN_DIR", "/dev/shm/x")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(loaded.config.run_dir(), Path::new("/dev/shm/x"));
    let line = shown(&loaded);
    assert!(
        line.contains("\"/dev/shm/x\"") && line.contains("PYMAP_RUN_DIR"),
        "{line}"
    );
    let err = load(None, &[("PYMAP_RUN_DIR", "")], Overrides::default()).unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("run_dir") && err.contains("PYMAP_RUN_DIR"),
        "{err}"
    );
}
