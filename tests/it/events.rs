//! Live events cross replicas through Redis pub/sub; log lines stay in-process.

use std::time::Duration;

use pymap::worker::events::{Event, EventBus, EventKind};

use crate::harness::{service_url, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_other_replicas_through_redis() {
    let Some(url) = service_url("PYMAP_TEST_REDIS_URL") else {
        return;
    };
    let prefix = unique("pymap-test-") + ":";
    let conn = pymap::app::connect_redis(&url, Duration::from_secs(5))
        .await
        .unwrap();
    let a = EventBus::new()
        .with_redis(&url, conn.clone(), &prefix)
        .await
        .unwrap();
    let b = EventBus::new()
        .with_redis(&url, conn, &prefix)
        .await
        .unwrap();
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let status = Event {
        owner_id: 7,
        task_id: 1,
        job_id: Some(2),
        kind: EventKind::JobStatus {
            status: "running".into(),
            reason: None,
            exit_code: None,
        },
        origin: String::new(),
    };
    a.publish(Event {
        kind: EventKind::LogLine {
            line: "local only".into(),
        },
        ..status.clone()
    });
    a.publish(status.clone());
    // The publisher sees both at once, exactly once each (no echo from Redis).
    let first = on_a.recv().await.unwrap();
    assert!(matches!(first.kind, EventKind::LogLine { .. }));
    assert_eq!(on_a.recv().await.unwrap().kind, status.kind);
    // The other replica gets the status change, not the log line.
    let got = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.owner_id, got.kind.clone()), (7, status.kind.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        on_b.try_recv().is_err(),
        "log lines are not sent across replicas"
    );
    assert!(on_a.try_recv().is_err(), "no echo of our own events");
}
