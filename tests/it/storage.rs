//! Storage on SQLite and PostgreSQL: migrations, accounts, audit atomicity, concurrent
//! writers (Pymap's "database is locked").

use entity::audit_event;
use pymap::service::{Actor, Role, ServiceError, accounts, passwords};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::harness::{Backend, database_url};

async fn connect(backend: Backend, dir: &std::path::Path) -> Option<sea_orm::DatabaseConnection> {
    let url = database_url(backend, dir).await?;
    let db = pymap::db::connect(&url, std::time::Duration::from_secs(5), 4)
        .await
        .unwrap();
    pymap::db::migrate(&db).await.unwrap();
    Some(db)
}

async fn audit_count(db: &sea_orm::DatabaseConnection, action: &str) -> u64 {
    audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq(action))
        .count(db)
        .await
        .unwrap()
}

async fn accounts_and_audit(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = connect(backend, dir.path()).await else {
        return;
    };
    // Migrating again is a no-op.
    pymap::db::migrate(&db).await.unwrap();
    let cli = Actor::cli();

    let bob = accounts::create(&db, &cli, "Bob", "bob-password-1", Role::User)
        .await
        .unwrap();
    assert_eq!(bob.name, "bob");
    assert!(
        bob.password_hash.starts_with("$argon2id$"),
        "argon2id, never the password"
    );
    assert!(!bob.password_hash.contains("bob-password-1"));
    assert_eq!(audit_count(&db, "user.create").await, 1);

    // A refused change writes no audit line (same transaction).
    let dup = accounts::create(&db, &cli, "BOB", "bob-password-2", Role::User).await;
    assert!(matches!(dup, Err(ServiceError::Conflict(_))), "{dup:?}");
    assert_eq!(audit_count(&db, "user.create").await, 1);

    // Validation errors name the field.
    match accounts::create(&db, &cli, "-rm", "bob-password-1", Role::User).await {
        Err(ServiceError::Invalid { field, .. }) => assert_eq!(field, "name"),
        other => panic!("{other:?}"),
    }
    match accounts::create(&db, &cli, "carol", "short", Role::User).await {
        Err(ServiceError::Invalid { field, .. }) => assert_eq!(field, "password"),
        other => panic!("{other:?}"),
    }

    // Only admins manage users.
    let bob_actor = pymap::service::auth::actor_for(&bob, None);
    assert!(matches!(
        accounts::create(&db, &bob_actor, "eve", "eve-password-1", Role::Admin).await,
        Err(ServiceError::Forbidden)
    ));
    assert!(matches!(
        accounts::set_role(&db, &bob_actor, "bob", Role::Admin).await,
        Err(ServiceError::Forbidden)
    ));

    accounts::set_role(&db, &cli, "bob", Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        accounts::find_by_name(&db, "bob")
            .await
            .unwrap()
            .unwrap()
            .role,
        "admin"
    );
    assert_eq!(audit_count(&db, "user.role_change").await, 1);

    accounts::set_password(&db, &cli, "bob", "new-password-22")
        .await
        .unwrap();
    let bob = accounts::find_by_name(&db, "bob").await.unwrap().unwrap();
    assert!(passwords::verify("new-password-22", Some(&bob.password_hash)).await);
    assert!(!passwords::verify("bob-password-1", Some(&bob.password_hash)).await);
    assert_eq!(audit_count(&db, "user.password_reset").await, 1);

    // Own password change needs the current one; a wrong one is audited as a failure.
    let bob_actor = pymap::service::auth::actor_for(&bob, None);
    assert!(
        accounts::change_own_password(&db, &bob_actor, "wrong-current", "another-pass-33")
            .await
            .is_err()
    );
    accounts::change_own_password(&db, &bob_actor, "new-password-22", "another-pass-33")
        .await
        .unwrap();
    let events = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("user.password_change"))
        .all(&db)
        .await
        .unwrap();
    let outcomes: Vec<_> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failure", "success"]);

    assert!(matches!(
        accounts::set_disabled(&db, &cli, "ghost", true).await,
        Err(ServiceError::NotFound)
    ));
    accounts::set_disabled(&db, &cli, "bob", true)
        .await
        .unwrap();
    assert!(
        accounts::find_by_name(&db, "bob")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );

    // The bootstrap admin is created exactly once.
    let generated = accounts::ensure_bootstrap_admin(&db, None).await.unwrap();
    assert!(generated.is_none(), "users exist already");
}

async fn concurrent_writers(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = connect(backend, dir.path()).await else {
        return;
    };
    let generated = accounts::ensure_bootstrap_admin(&db, None).await.unwrap();
    assert!(generated.is_some_and(|p| p.len() >= 16));
    // Many writers at once, each a transaction with an audit line: none may fail.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            accounts::create(
                &db,
                &Actor::cli(),
                &format!("user{i}"),
                "user-password-1",
                Role::User,
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no 'database is locked'");
    }
    assert_eq!(accounts::count(&db).await.unwrap(), 25);
    assert_eq!(audit_count(&db, "user.create").await, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_and_audit_sqlite() {
    accounts_and_audit(Backend::Sqlite).await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_and_audit_postgres() {
    accounts_and_audit(Backend::Postgres).await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_sqlite() {
    concurrent_writers(Backend::Sqlite).await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_postgres() {
    concurrent_writers(Backend::Postgres).await
}

#[tokio::test]
async fn unreachable_database_gives_up_with_a_clear_message() {
    let started = std::time::Instant::now();
    let err = pymap::db::connect(
        "postgres://pymap:topsecret@127.0.0.1:1/pymap",
        std::time::Duration::from_secs(2),
        4,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "it retried with backoff"
    );
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("unreachable"),
        "{msg}"
    );
    assert!(!msg.contains("topsecret"), "password redacted: {msg}");
}
