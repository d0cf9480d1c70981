//! `DirectJson<T>`: a JSON response body serialised straight to bytes with serde.
//!
//! poem-openapi's `Json<T>` first builds a `serde_json::Value` tree (a `BTreeMap` with an
//! owned key per field) and then writes that tree out: for a page of 50 tasks that was a
//! fifth of the CPU of the request (BENCHMARKS.md, "REST API"). This payload documents
//! itself exactly like `Json<T>` (same content type, same schema), so the spec does not
//! change, but writes the body with `T`'s `Serialize`. The types that use it derive both
//! traits, and `tests::same_json_as_to_json` proves the two produce the same document.

use chrono::{DateTime, Utc};
use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse,
    payload::Payload,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};
use serde::{Serialize, Serializer};

#[derive(Debug, Clone)]
pub struct DirectJson<T>(pub T);

impl<T: Type> Payload for DirectJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for DirectJson<T> {
    fn into_response(self) -> Response {
        poem::web::Json(self.0).into_response()
    }
}

impl<T: Type + Serialize + Send> ApiResponse for DirectJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A timestamp as poem-openapi writes it (`to_rfc3339`: `…+00:00`, not serde's `…Z`).
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}

/// An optional timestamp as poem-openapi writes it (`null` when absent).
pub fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use poem_openapi::types::ToJSON;

    use super::super::model::{JobCounts, Options, Status, Task, TaskList, TlsMode};
    use super::*;

    fn task(id: i64, started: bool) -> Task {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 3, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(372_522_426);
        Task {
            id,
            owner: "ann \"quoted\" ünïcode".into(),
            label: "Customer 1 — batch\n2".into(),
            source: "imap.old.example:993".into(),
            destination: "imap.new.example".into(),
            source_typed: "OLD".into(),
            destination_typed: "new".into(),
            engine: "native".into(),
            options: Options {
                dry_run: started,
                just_login: false,
                just_folders: true,
                include_folders: vec!["^INBOX".into(), "Sent\\d".into()],
                exclude_folders: vec![],
                max_age_days: started.then_some(30),
                min_age_days: None,
                max_size_bytes: Some(u64::MAX),
                sync_duplicates: true,
                add_header: false,
                delete_on_destination: false,
                tls1: TlsMode::Starttls,
                tls2: TlsMode::Implicit,
                timeout_secs: None,
                accept_invalid_certs1: true,
                accept_invalid_certs2: false,
                extra_args: vec!["--nofoldersizes".into()],
                json: None,
            },
            status: if started {
                Status::Running
            } else {
                Status::Queued
            },
            jobs: JobCounts {
                total: 3,
                queued: 1,
                running: 1,
                succeeded: 0,
                warning: 0,
                failed: 1,
                cancelled: 0,
            },
            archived: false,
            cancel_requested: started,
            created_at: at,
            started_at: started.then_some(at),
            finished_at: None,
            run_time_secs: 42,
            credentials_wiped: !started,
        }
    }

    /// The direct body must be the very document poem-openapi's `Json` would have written.
    /// A task whose options come from the memo, which hands out ready-written JSON.
    fn task_with_remembered_options(id: i64) -> Task {
        let stored = serde_json::json!({
            "include_folders": ["^INBOX", "Sent \"quoted\""],
            "max_age_days": 7,
            "tls1": "implicit",
            "extra_args": ["--nofoldersizes"],
        })
        .to_string();
        let options = crate::api::stored_options::options_from_stored(&stored);
        assert!(options.json.is_some());
        Task {
            options,
            ..task(id, true)
        }
    }

    #[test]
    fn same_json_as_to_json() {
        for t in [
            task(1, true),
            task(2, false),
            task_with_remembered_options(5),
        ] {
            assert_eq!(serde_json::to_value(&t).unwrap(), t.to_json().unwrap());
            // Also as the bytes a response carries.
            let bytes = serde_json::to_vec(&t).unwrap();
            let written: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(written, t.to_json().unwrap());
        }
        for (next_cursor, total) in [(Some("6b".to_string()), Some(7)), (None, None)] {
            let list = TaskList {
                items: vec![
                    task(3, true),
                    task(4, false),
                    task_with_remembered_options(6),
                ],
                next_cursor,
                total,
            };
            assert_eq!(
                serde_json::to_value(&list).unwrap(),
                list.to_json().unwrap()
            );
        }
    }

    #[test]
    fn every_status_and_tls_mode_is_named_alike() {
        use poem_openapi::types::ToJSON as _;
        for s in [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Warning,
            Status::Failed,
            Status::Cancelled,
            Status::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.to_json().unwrap());
        }
        for m in [
            TlsMode::Auto,
            TlsMode::Plain,
            TlsMode::Starttls,
            TlsMode::Implicit,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.to_json().unwrap());
        }
    }
}
