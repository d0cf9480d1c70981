//! The API form of a task's stored options, remembered per distinct stored text.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use super::model::Options;
use crate::service::imapsync_options::MigrationOptions;

/// Most distinct option documents remembered.
const MEMO_SIZE: usize = 256;

/// The API form of a task's stored options (`MigrationOptions` as JSON; unreadable text
/// gives the defaults, as it always did).
///
/// Why remembered: a page of tasks parsed the same few option documents once per row
/// (≈ 5 % of pymap's CPU on a PostgreSQL listing in a profile, BENCHMARKS.md "REST API"),
/// while a team reuses a handful of option sets. The memo is keyed by the stored text itself, so it
/// can never answer for a changed task; it is bounded and emptied when full.
pub fn options_from_stored(text: &str) -> Options {
    static MEMO: LazyLock<Mutex<HashMap<Box<str>, Options>>> = LazyLock::new(Default::default);
    let memo = || MEMO.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = memo().get(text) {
        return known.clone();
    }
    let mut parsed: Options = serde_json::from_str::<MigrationOptions>(text)
        .unwrap_or_default()
        .into();
    // Written once here, copied into every response that shows these options (over a
    // third of a task's JSON, and ≈ 5 % of a PostgreSQL listing's CPU in a profile when
    // written per row). Built from the very fields it is handed out with, and never
    // changed after.
    parsed.json = serde_json::value::to_raw_value(&parsed).ok().map(Arc::from);
    let mut memo = memo();
    if memo.len() >= MEMO_SIZE {
        memo.clear();
    }
    memo.insert(text.into(), parsed.clone());
    parsed
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    /// Remembered parses answer exactly as a fresh parse, for every distinct text, also
    /// after the memo was emptied for being full.
    #[test]
    fn remembered_options_equal_a_fresh_parse() {
        let texts: Vec<String> = (0..600u32)
            .map(|n| {
                let o = MigrationOptions {
                    max_age_days: Some(n),
                    include_folders: vec![format!("^F{n}")],
                    ..Default::default()
                };
                serde_json::to_string(&o).unwrap()
            })
            .chain(["not json".to_string(), String::new()])
            .collect();
        for round in 0..2 {
            for text in &texts {
                let fresh: Options = serde_json::from_str::<MigrationOptions>(text)
                    .unwrap_or_default()
                    .into();
                let got = options_from_stored(text);
                assert_eq!(got.to_json(), fresh.to_json(), "round {round}: {text}");
                // The ready JSON that response bodies copy is these very options.
                let json = got
                    .json
                    .as_ref()
                    .expect("remembered options carry their JSON");
                assert_eq!(json.get(), serde_json::to_string(&fresh).unwrap(), "{text}");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(json.get()).unwrap(),
                    fresh.to_json().unwrap(),
                    "{text}"
                );
            }
        }
    }
}
