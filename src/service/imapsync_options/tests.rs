use super::*;

fn fields(options: &MigrationOptions) -> Vec<String> {
    let errors = options.validate().expect_err("options should be refused");
    errors.into_iter().map(|e| e.field).collect()
}

fn args(options: &MigrationOptions) -> Vec<String> {
    options.to_imapsync_args(Provider::Other, Provider::Other)
}

#[test]
fn defaults_agree_between_rust_and_serde() {
    let from_json: MigrationOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(from_json, MigrationOptions::default());
    assert!(from_json.add_header);
    let partial: MigrationOptions =
        serde_json::from_str(r#"{"dry_run": true, "tls1": "implicit"}"#).unwrap();
    assert!(partial.dry_run && partial.add_header);
    assert_eq!(partial.tls1, TlsMode::Implicit);
    let json = serde_json::to_string(&partial).unwrap();
    assert_eq!(
        serde_json::from_str::<MigrationOptions>(&json).unwrap(),
        partial
    );
    assert!(MigrationOptions::default().validate().is_ok());
    assert_eq!(args(&MigrationOptions::default()), ["--addheader"]);
}

#[test]
fn all_typed_options_become_separate_argv_elements() {
    let options = MigrationOptions {
        dry_run: true,
        just_folders: true,
        include_folders: vec!["^INBOX$".into(), "^Sent Items$".into()],
        exclude_folders: vec!["^Trash".into()],
        max_age_days: Some(30),
        min_age_days: Some(2),
        max_size_bytes: Some(50_000_000),
        sync_duplicates: true,
        delete_on_destination: true,
        delete_confirmed: true,
        tls1: TlsMode::Implicit,
        tls2: TlsMode::Plain,
        timeout_secs: Some(120),
        extra_args: vec!["--automap".into(), "--folder".into(), "Sent Items".into()],
        ..MigrationOptions::default()
    };
    assert_eq!(options.validate(), Ok(()));
    let expected = [
        "--dry",
        "--justfolders",
        "--include",
        "^INBOX$",
        "--include",
        "^Sent Items$",
        "--exclude",
        "^Trash",
        "--maxage",
        "30",
        "--minage",
        "2",
        "--maxsize",
        "50000000",
        "--syncduplicates",
        "--addheader",
        "--delete2",
        "--ssl1",
        "--notls2",
        "--timeout1",
        "120",
        "--timeout2",
        "120",
        "--automap",
        "--folder",
        "Sent Items",
    ];
    assert_eq!(args(&options), expected);
    let starttls = MigrationOptions {
        tls1: TlsMode::Starttls,
        tls2: TlsMode::Starttls,
        just_login: true,
        add_header: false,
        ..MigrationOptions::default()
    };
    assert_eq!(args(&starttls), ["--justlogin", "--tls1", "--tls2"]);
}

#[test]
fn provider_presets_unless_already_given() {
    let plain = MigrationOptions {
        add_header: false,
        ..MigrationOptions::default()
    };
    assert_eq!(
        plain.to_imapsync_args(Provider::Gmail, Provider::Office365),
        ["--gmail1", "--office2"]
    );
    assert_eq!(
        plain.to_imapsync_args(Provider::Office365, Provider::Gmail),
        ["--office1", "--gmail2"]
    );
    let given = MigrationOptions {
        extra_args: vec!["--GMAIL1".into()],
        ..plain.clone()
    };
    assert_eq!(
        given.to_imapsync_args(Provider::Gmail, Provider::Other),
        ["--gmail1"]
    );
}

#[test]
fn unconfirmed_delete_is_refused_and_never_emitted() {
    let options = MigrationOptions {
        delete_on_destination: true,
        ..MigrationOptions::default()
    };
    let errors = options.validate().unwrap_err();
    assert_eq!(errors[0].field, "delete_on_destination");
    assert_eq!(
        errors[0].message,
        "delete on destination removes messages on host2 that are not on host1; confirm it explicitly"
    );
    assert!(!args(&options).contains(&"--delete2".to_owned()));
    let confirmed_only = MigrationOptions {
        delete_confirmed: true,
        ..MigrationOptions::default()
    };
    assert!(confirmed_only.validate().is_ok());
    assert!(!args(&confirmed_only).contains(&"--delete2".to_owned()));
}

#[test]
fn validation_rules_name_their_fields() {
    let many: Vec<String> = (0..=MAX_FOLDER_REGEXES)
        .map(|i| format!("^f{i}$"))
        .collect();
    let cases = [
        (
            MigrationOptions {
                include_folders: vec!["ok".into(), "(bad".into()],
                ..Default::default()
            },
            vec!["include_folders[1]"],
        ),
        (
            MigrationOptions {
                exclude_folders: vec!["(?{ 1 })".into()],
                ..Default::default()
            },
            vec!["exclude_folders[0]"],
        ),
        (
            MigrationOptions {
                exclude_folders: vec!["-x".into(), String::new()],
                ..Default::default()
            },
            vec!["exclude_folders[0]", "exclude_folders[1]"],
        ),
        (
            MigrationOptions {
                include_folders: many,
                ..Default::default()
            },
            vec!["include_folders"],
        ),
        (
            MigrationOptions {
                min_age_days: Some(30),
                max_age_days: Some(30),
                ..Default::default()
            },
            vec!["min_age_days"],
        ),
        (
            MigrationOptions {
                max_age_days: Some(0),
                ..Default::default()
            },
            vec!["max_age_days"],
        ),
        (
            MigrationOptions {
                max_size_bytes: Some(0),
                ..Default::default()
            },
            vec!["max_size_bytes"],
        ),
        (
            MigrationOptions {
                just_login: true,
                just_folders: true,
                ..Default::default()
            },
            vec!["just_folders"],
        ),
        (
            MigrationOptions {
                timeout_secs: Some(0),
                ..Default::default()
            },
            vec!["timeout_secs"],
        ),
        (
            MigrationOptions {
                timeout_secs: Some(3601),
                ..Default::default()
            },
            vec!["timeout_secs"],
        ),
        (
            MigrationOptions {
                extra_args: vec!["--automap".into(), "--pipemess".into(), "x".into()],
                ..Default::default()
            },
            vec!["extra_args[1]"],
        ),
    ];
    for (options, expected) in cases {
        assert_eq!(fields(&options), expected, "{options:?}");
    }
    let long = "a".repeat(MAX_REGEX_CHARS);
    let edge = MigrationOptions {
        include_folders: vec![long],
        min_age_days: Some(1),
        max_age_days: Some(2),
        timeout_secs: Some(3600),
        ..Default::default()
    };
    assert_eq!(edge.validate(), Ok(()));
    assert_eq!(
        MigrationOptions {
            timeout_secs: Some(1),
            ..Default::default()
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn all_errors_are_returned_together() {
    let options = MigrationOptions {
        just_login: true,
        just_folders: true,
        delete_on_destination: true,
        timeout_secs: Some(0),
        extra_args: vec!["--help".into()],
        ..Default::default()
    };
    assert_eq!(
        fields(&options),
        [
            "just_folders",
            "delete_on_destination",
            "timeout_secs",
            "extra_args[0]"
        ]
    );
    let error = &options.validate().unwrap_err()[3];
    assert_eq!(
        error.to_string(),
        "extra_args[0]: --help is refused: it does not run a migration"
    );
}

#[test]
fn extra_args_conflicting_with_typed_options() {
    let options = MigrationOptions {
        tls1: TlsMode::Implicit,
        max_age_days: Some(10),
        timeout_secs: Some(60),
        extra_args: [
            "--ssl2",
            "--notls1",
            "--maxage",
            "5",
            "--minage=1",
            "--timeout2",
            "9",
        ]
        .map(String::from)
        .into(),
        ..Default::default()
    };
    let errors = options.validate().unwrap_err();
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("extra_args[1]", "--notls1 conflicts with the tls1 setting"),
            (
                "extra_args[2]",
                "--maxage conflicts with the max_age_days setting"
            ),
            (
                "extra_args[5]",
                "--timeout2 conflicts with the timeout_secs setting"
            ),
        ]
    );
}

#[test]
fn unvalidated_extra_args_never_reach_argv() {
    let options = MigrationOptions {
        add_header: false,
        extra_args: ["--automap", "--regextrans2", "s/a/b/e", "--maxage=7"]
            .map(String::from)
            .into(),
        ..Default::default()
    };
    assert_eq!(args(&options), ["--automap", "--maxage", "7"]);
}

#[test]
fn parsed_extra_args_round_trip_through_options() {
    let extra = parse_extra_args("--automap --folder='Sent Items' --exclude '^Junk'").unwrap();
    let options = MigrationOptions {
        add_header: false,
        extra_args: extra.clone(),
        ..Default::default()
    };
    assert_eq!(options.validate(), Ok(()));
    assert_eq!(args(&options), extra);
}

#[test]
fn accept_invalid_certs_defaults_off_and_adds_no_imapsync_flag() {
    // Options stored before the field existed read as "verify certificates".
    let old: MigrationOptions = serde_json::from_str(r#"{"tls1": "implicit"}"#).unwrap();
    assert!(!old.accept_invalid_certs1 && !old.accept_invalid_certs2);
    let on = MigrationOptions {
        accept_invalid_certs1: true,
        accept_invalid_certs2: true,
        ..MigrationOptions::default()
    };
    assert_eq!(on.validate(), Ok(()));
    assert_eq!(args(&on), args(&MigrationOptions::default()));
    let json = serde_json::to_value(&on).unwrap();
    assert_eq!(json["accept_invalid_certs1"], true);
}
