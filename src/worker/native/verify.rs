//! The migration verifier: compares two mailboxes, read-only, and says whether they are
//! identical or exactly what differs: folders, subscriptions, and per folder the message
//! identity multisets, flags and keywords, internal dates (sizes are part of identity).
//!
//! It uses the engine's folder mapping and message identity, and the job's folder filters
//! and age/size options (applied to both sides), so it checks what the job was asked to do.

use serde::{Deserialize, Serialize};

use super::{
    NativeError, NativeOptions,
    folders::{self, FolderFilter},
    identity::{self, MessageFilter, Meta},
    outcome::{self, End},
    report::Counters,
    run::{endpoints, open_both},
};
use crate::{
    service::{
        batch::Secret,
        hosts::{HostSpec, provider_of},
        imapsync_options::MigrationOptions,
    },
    worker::imapsync::parse::RunSummary,
};

/// Examples of differences kept per folder (the counts are always complete).
pub const MAX_EXAMPLES: usize = 20;

/// The two mailboxes to compare, with the job's options.
#[derive(Clone, Debug)]
pub struct VerifySpec {
    pub host1: HostSpec,
    pub user1: String,
    pub password1: Secret,
    pub host2: HostSpec,
    pub user2: String,
    pub password2: Secret,
    /// TLS modes, timeout, folder filters, age and size limits.
    pub options: MigrationOptions,
    pub native: NativeOptions,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyReport {
    /// Everything compared is equal, both ways.
    pub identical: bool,
    /// Nothing from host1 is missing or different on host2 (host2 may have more).
    pub complete: bool,
    /// Why the comparison could not be done (then nothing else is meaningful).
    pub error: Option<String>,
    pub checked_at: String,
    pub duration_secs: f64,
    pub folders_compared: u32,
    pub messages_host1: u64,
    pub bytes_host1: u64,
    pub messages_host2: u64,
    pub bytes_host2: u64,
    /// host1 folders (their host2 names) that do not exist on host2.
    pub missing_folders: Vec<String>,
    /// host2 folders that no host1 folder maps to.
    pub extra_folders: Vec<String>,
    pub missing_subscriptions: Vec<String>,
    pub extra_subscriptions: Vec<String>,
    /// Every compared folder, in mapping order.
    pub folders: Vec<FolderReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderReport {
    pub host1: String,
    pub host2: String,
    pub identical: bool,
    pub messages_host1: u64,
    pub messages_host2: u64,
    /// On host1, not on host2.
    pub missing: u64,
    /// On host2, not on host1.
    pub extra: u64,
    pub flag_differences: u64,
    pub date_differences: u64,
    /// Left out of the comparison by the age/size options.
    pub excluded_host1: u64,
    pub excluded_host2: u64,
    /// host1 messages whose identity could not be read.
    pub unidentified: u64,
    pub examples: Vec<Difference>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Difference {
    /// `missing`, `extra`, `flags`, `internal_date` or `unidentified`.
    pub kind: String,
    pub host1_uid: Option<u32>,
    pub host2_uid: Option<u32>,
    pub size: u64,
    pub message_id: Option<String>,
    /// The host1 and host2 values for `flags` and `internal_date`.
    pub host1: Option<String>,
    pub host2: Option<String>,
}

impl VerifyReport {
    /// A few lines for a terminal or a log.
    pub fn to_text(&self) -> String {
        if let Some(e) = &self.error {
            return format!("Verification failed: {e}\n");
        }
        let mut out = String::new();
        let verdict = if self.identical {
            "IDENTICAL"
        } else if self.complete {
            "COMPLETE (everything from host1 is on host2; host2 has more)"
        } else {
            "DIFFERENT"
        };
        out.push_str(&format!(
            "{verdict}: {} folders compared; host1 {} messages ({}), host2 {} messages ({}).\n",
            self.folders_compared,
            self.messages_host1,
            outcome::human_bytes(self.bytes_host1),
            self.messages_host2,
            outcome::human_bytes(self.bytes_host2)
        ));
        for (what, list) in [
            ("folders missing on host2", &self.missing_folders),
            ("extra folders on host2", &self.extra_folders),
            (
                "subscriptions missing on host2",
                &self.missing_subscriptions,
            ),
            ("extra subscriptions on host2", &self.extra_subscriptions),
        ] {
            if !list.is_empty() {
                out.push_str(&format!("  {what}: {}\n", list.join(", ")));
            }
        }
        for f in self.folders.iter().filter(|f| !f.identical) {
            out.push_str(&format!(
                "  [{}] -> [{}]: {} vs {} messages; {} missing, {} extra, {} with other flags, {} with another date{}\n",
                f.host1,
                f.host2,
                f.messages_host1,
                f.messages_host2,
                f.missing,
                f.extra,
                f.flag_differences,
                f.date_differences,
                if f.unidentified > 0 { format!(", {} unidentified", f.unidentified) } else { String::new() }
            ));
            for d in &f.examples {
                out.push_str(&format!(
                    "    {} host1 uid {} host2 uid {} size {} {}{}\n",
                    d.kind,
                    d.host1_uid.map_or("-".into(), |u| u.to_string()),
                    d.host2_uid.map_or("-".into(), |u| u.to_string()),
                    d.size,
                    d.message_id.as_deref().unwrap_or("(no Message-ID)"),
                    match (&d.host1, &d.host2) {
                        (Some(a), Some(b)) => format!(": host1 {a} / host2 {b}"),
                        _ => String::new(),
                    }
                ));
            }
        }
        out
    }
}

/// Compares the two mailboxes. Never fails: problems end up in `error`.
pub async fn verify(spec: &VerifySpec) -> VerifyReport {
    let started = std::time::Instant::now();
    let mut report = VerifyReport {
        checked_at: chrono::Utc::now().to_rfc3339(),
        ..VerifyReport::default()
    };
    if let Err(e) = compare(spec, &mut report).await {
        let end = match e {
            Failure::End(end) => end,
            Failure::Error(e) => End::Fatal(e),
        };
        let o = outcome::classify(&end, &RunSummary::default(), &Counters::default());
        report.error = Some(o.reason);
    }
    report.duration_secs = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    report.complete = report.error.is_none()
        && report.missing_folders.is_empty()
        && report.missing_subscriptions.is_empty()
        && report.folders.iter().all(|f| {
            f.missing == 0
                && f.flag_differences == 0
                && f.date_differences == 0
                && f.unidentified == 0
        });
    report.identical = report.complete
        && report.extra_folders.is_empty()
        && report.extra_subscriptions.is_empty()
        && report.folders.iter().all(|f| f.identical);
    report
}

enum Failure {
    End(End),
    Error(NativeError),
}

impl From<NativeError> for Failure {
    fn from(e: NativeError) -> Self {
        Failure::Error(e)
    }
}

async fn compare(spec: &VerifySpec, report: &mut VerifyReport) -> Result<(), Failure> {
    let o = &spec.options;
    let filter = FolderFilter::new(&o.include_folders, &o.exclude_folders).map_err(|e| {
        Failure::Error(NativeError::new(
            super::Side::Host1,
            super::ErrorKind::Command,
            e,
        ))
    })?;
    let (ep1, ep2) = endpoints(
        &spec.host1,
        &spec.user1,
        &spec.password1,
        &spec.host2,
        &spec.user2,
        &spec.password2,
        o,
        &spec.native,
    );
    let (mut c1, mut c2) = open_both(&ep1, &ep2).await.map_err(Failure::End)?;
    let (l1, l2) = tokio::try_join!(folders::list(&mut c1), folders::list(&mut c2))?;
    let plan = folders::plan(&l1, &l2, &filter, provider_of(&spec.host1));
    report.extra_folders = plan.extra_on_dst.clone();
    report.missing_subscriptions = plan.subscribe.clone();
    report.extra_subscriptions = plan.extra_subscriptions.clone();
    let messages = MessageFilter::new(o.max_age_days, o.min_age_days, o.max_size_bytes);
    for m in &plan.folders {
        let n1 = c1.select(&m.src, true).await?;
        let n2 = if m.exists_on_dst {
            c2.select(&m.dst, true).await?
        } else {
            0
        };
        if !m.exists_on_dst {
            report.missing_folders.push(m.dst.clone());
        }
        let (s, d) = tokio::try_join!(
            identity::fetch_meta(&mut c1, n1),
            identity::fetch_meta(&mut c2, n2)
        )?;
        report.messages_host1 += s.len() as u64;
        report.bytes_host1 += s.iter().map(|m| m.size).sum::<u64>();
        report.messages_host2 += d.len() as u64;
        report.bytes_host2 += d.iter().map(|m| m.size).sum::<u64>();
        let mut f = compare_folder(&s, &d, &messages);
        f.host1 = m.src.clone();
        f.host2 = m.dst.clone();
        f.identical = m.exists_on_dst && f.identical;
        report.folders.push(f);
        report.folders_compared += 1;
    }
    tokio::join!(c1.logout(), c2.logout());
    Ok(())
}

fn example(kind: &str, s: Option<&Meta>, d: Option<&Meta>) -> Difference {
    let any = s.or(d).expect("one side");
    Difference {
        kind: kind.to_owned(),
        host1_uid: s.map(|m| m.uid),
        host2_uid: d.map(|m| m.uid),
        size: any.size,
        message_id: any.message_id.clone(),
        host1: None,
        host2: None,
    }
}

/// Compares one folder's metadata (both sides filtered by the options).
pub fn compare_folder(src: &[Meta], dst: &[Meta], filter: &MessageFilter) -> FolderReport {
    let s: Vec<Meta> = src.iter().filter(|m| filter.wants(m)).cloned().collect();
    let d: Vec<Meta> = dst.iter().filter(|m| filter.wants(m)).cloned().collect();
    let diff = identity::diff(&s, &d);
    let mut f = FolderReport {
        messages_host1: src.len() as u64,
        messages_host2: dst.len() as u64,
        excluded_host1: (src.len() - s.len()) as u64,
        excluded_host2: (dst.len() - d.len()) as u64,
        missing: diff.copy.len() as u64,
        extra: diff.extra.len() as u64,
        unidentified: diff.unidentified.len() as u64,
        ..FolderReport::default()
    };
    let mut ex = Vec::new();
    for &i in &diff.copy {
        ex.push(example("missing", Some(&s[i]), None));
    }
    for &i in &diff.unidentified {
        ex.push(example("unidentified", Some(&s[i]), None));
    }
    for &j in &diff.extra {
        ex.push(example("extra", None, Some(&d[j])));
    }
    for (i, j) in diff.flag_mismatches(&s, &d) {
        f.flag_differences += 1;
        let mut e = example("flags", Some(&s[i]), Some(&d[j]));
        e.host1 = Some(s[i].flag_list());
        e.host2 = Some(d[j].flag_list());
        ex.push(e);
    }
    for (i, j) in diff.date_mismatches(&s, &d) {
        f.date_differences += 1;
        let mut e = example("internal_date", Some(&s[i]), Some(&d[j]));
        e.host1 = s[i].date.clone();
        e.host2 = d[j].date.clone();
        ex.push(e);
    }
    ex.truncate(MAX_EXAMPLES);
    f.examples = ex;
    f.identical = f.missing == 0
        && f.extra == 0
        && f.flag_differences == 0
        && f.date_differences == 0
        && f.unidentified == 0;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, id: &str, flags: &[&str], time: i64) -> Meta {
        Meta {
            uid,
            size: 100,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            date: Some(format!("t{time}")),
            time: Some(time),
            message_id: Some(id.into()),
            header_hash: None,
        }
    }

    #[test]
    fn folder_differences_are_counted_with_examples() {
        let src = [
            m(1, "<a>", &["\\Seen"], 1),
            m(2, "<b>", &[], 2),
            m(3, "<c>", &[], 3),
            m(4, "<d>", &[], 4),
        ];
        let dst = [
            m(9, "<a>", &[], 1),
            m(10, "<c>", &[], 5),
            m(11, "<d>", &[], 4),
            m(12, "<e>", &[], 6),
        ];
        let f = compare_folder(&src, &dst, &MessageFilter::default());
        assert_eq!(
            (f.missing, f.extra, f.flag_differences, f.date_differences),
            (1, 1, 1, 1)
        );
        assert!(!f.identical);
        let kinds: Vec<_> = f.examples.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["missing", "extra", "flags", "internal_date"]);
        assert_eq!(f.examples[2].host1.as_deref(), Some("(\\Seen)"));
        let same = compare_folder(&src, &src, &MessageFilter::default());
        assert!(same.identical);
        let text = VerifyReport {
            folders: vec![f],
            ..VerifyReport::default()
        }
        .to_text();
        assert!(text.starts_with("DIFFERENT"), "{text}");
    }
}
