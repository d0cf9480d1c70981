//! Copies one folder over one pair of connections.
//!
//! 1. EXAMINE the source (read-only: the source is never changed) and SELECT the
//!    destination; fetch both sides' metadata concurrently; compare as multisets.
//! 2. Resync flags of messages already on the destination (pipelined `UID STORE`).
//! 3. Copy the rest (`pipeline.rs`).
//!
//! A retry after a reconnect runs the same steps: the comparison finds what the
//! interrupted attempt already copied.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    NativeError,
    conn::{Arg, Conn},
    folders::Mapping,
    identity::{self, MessageFilter},
    pipeline::{self, next_completion},
    report::Report,
    wire::Status,
};

/// Budget permits are KiB (a semaphore counts in u32 per acquisition).
const UNIT: u64 = 1024;

/// Shared by all folder workers of a run.
pub struct Ctx {
    pub budget: Arc<Semaphore>,
    pub budget_units: u32,
    pub depth: usize,
    pub dry_run: bool,
    pub filter: MessageFilter,
    pub report: Arc<Report>,
}

impl Ctx {
    pub fn new(
        budget_bytes: u64,
        depth: usize,
        dry_run: bool,
        filter: MessageFilter,
        report: Arc<Report>,
    ) -> Self {
        let units = (budget_bytes / UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Ctx {
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            depth: depth.max(1),
            dry_run,
            filter,
            report,
        }
    }

    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        // A message bigger than the whole budget takes all of it: it still goes through.
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.budget_units)) as u32;
        self.budget
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("budget semaphore closed")
    }
}

/// What one attempt at a folder found and did.
#[derive(Clone, Debug, Default)]
pub struct FolderResult {
    pub src_messages: u64,
    pub src_bytes: u64,
    pub dst_messages: u64,
    pub dst_bytes: u64,
    pub present: u64,
    pub present_bytes: u64,
    pub excluded: u64,
    pub duplicates: u64,
    pub extra: u64,
    pub unidentified: u64,
    pub would_copy: u64,
    pub flags_updated: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    pub vanished: u64,
}

/// What earlier attempts at the same folder already reported, so a retry after a
/// reconnect neither counts progress twice nor calls earlier copies "already there".
#[derive(Clone, Debug, Default)]
pub struct FolderProgress {
    /// Messages counted as handled in the progress.
    pub reported: u64,
    pub copied: u64,
    pub bytes: u64,
}

/// Adds a finished folder to the run's counters.
pub fn account(report: &Report, r: &FolderResult, p: &FolderProgress) {
    // Earlier attempts' copies are on the destination now, but were not there before.
    let earlier = p.copied.saturating_sub(r.copied);
    let earlier_bytes = p.bytes.saturating_sub(r.bytes_copied);
    report.count(|c| {
        c.folders_done += 1;
        c.host1_messages += r.src_messages;
        c.host1_bytes += r.src_bytes;
        c.host2_messages_before += r.dst_messages.saturating_sub(earlier);
        c.host2_bytes_before += r.dst_bytes.saturating_sub(earlier_bytes);
        c.skipped += r.present.saturating_sub(earlier);
        c.bytes_skipped += r.present_bytes.saturating_sub(earlier_bytes);
        c.excluded += r.excluded;
        c.duplicates_host1 += r.duplicates;
        c.extra_on_host2 += r.extra;
        c.unidentified_host1 += r.unidentified;
        c.would_copy += r.would_copy;
        c.flags_updated += r.flags_updated;
        c.vanished += r.vanished;
    });
}

/// Copies (or, in a dry run, plans) one folder. `label` is `Folder i/n`.
pub async fn copy_folder(
    src: &mut Conn,
    dst: &mut Conn,
    m: &Mapping,
    label: &str,
    ctx: &Ctx,
    progress: &mut FolderProgress,
) -> Result<FolderResult, NativeError> {
    let report = &ctx.report;
    let dst_there = m.exists_on_dst || !ctx.dry_run;
    let (n_src, n_dst) = tokio::try_join!(src.select(&m.src, true), async {
        if dst_there {
            dst.select(&m.dst, ctx.dry_run).await
        } else {
            Ok(0)
        }
    })?;
    let (smeta, dmeta) = tokio::try_join!(
        identity::fetch_meta(src, n_src),
        identity::fetch_meta(dst, n_dst)
    )?;
    let diff = identity::diff(&smeta, &dmeta);
    let (to_copy, excluded): (Vec<usize>, Vec<usize>) = diff
        .copy
        .iter()
        .partition(|&&i| ctx.filter.wants(&smeta[i]));
    let flag_fixes: Vec<(usize, usize)> = diff.flag_mismatches(&smeta, &dmeta).collect();
    let mut r = FolderResult {
        src_messages: smeta.len() as u64,
        src_bytes: smeta.iter().map(|m| m.size).sum(),
        dst_messages: dmeta.len() as u64,
        dst_bytes: dmeta.iter().map(|m| m.size).sum(),
        present: diff.pairs.len() as u64,
        present_bytes: diff.pairs.iter().map(|&(s, _)| smeta[s].size).sum(),
        excluded: excluded.len() as u64,
        duplicates: diff.duplicates_src,
        extra: diff.extra.len() as u64,
        unidentified: diff.unidentified.len() as u64,
        ..FolderResult::default()
    };
    report.line(&format!(
        "{label} [{}] -> [{}]: {} on host1, {} on host2, {} already there, {} to copy{}{}{}",
        m.src,
        m.dst,
        smeta.len(),
        dmeta.len(),
        diff.pairs.len(),
        to_copy.len(),
        plural_note(excluded.len(), "excluded by age/size options"),
        plural_note(flag_fixes.len(), "with flags to resync"),
        plural_note(
            diff.duplicates_src as usize,
            "duplicates on host1 (all copied)"
        ),
    ));
    for &i in &diff.unidentified {
        report.error(
            &format!(
                "host1 [{}]/{}: no Message-ID and its header could not be read; not copied",
                m.src, smeta[i].uid
            ),
            false,
        );
    }
    let handled = r.present + r.excluded + r.unidentified;
    report.handled(handled.saturating_sub(progress.reported));
    progress.reported = progress.reported.max(handled);
    if ctx.dry_run {
        for &i in &to_copy {
            let s = &smeta[i];
            report.line(&format!(
                "msg [{}]/{} {{{}}} would be copied to [{}] (dry run)",
                m.src, s.uid, s.size, m.dst
            ));
        }
        r.would_copy = to_copy.len() as u64;
        report.handled(r.would_copy);
        return Ok(r);
    }
    if !flag_fixes.is_empty() {
        let fixes: Vec<(u32, String)> = flag_fixes
            .iter()
            .map(|&(s, d)| (dmeta[d].uid, smeta[s].flag_list()))
            .collect();
        r.flags_updated = store_flags(dst, &fixes, m, ctx).await?;
    }
    if !to_copy.is_empty() {
        let before = (progress.copied, progress.bytes);
        let vanished =
            pipeline::copy_messages(src, dst, &smeta, &to_copy, m, ctx, progress).await?;
        if vanished > 0 {
            report.line(&format!(
                "Host1: {vanished} message(s) of [{}] vanished before they could be copied",
                m.src
            ));
            report.handled(vanished);
        }
        r.vanished = vanished;
        r.copied = progress.copied - before.0;
        r.bytes_copied = progress.bytes - before.1;
    }
    Ok(r)
}

fn plural_note(n: usize, what: &str) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} {what}")
    }
}

async fn store_flags(
    dst: &mut Conn,
    fixes: &[(u32, String)],
    m: &Mapping,
    ctx: &Ctx,
) -> Result<u64, NativeError> {
    let mut inflight: VecDeque<(String, u32)> = VecDeque::new();
    let mut done = 0u64;
    let mut it = fixes.iter();
    loop {
        let next = if inflight.len() < ctx.depth {
            it.next()
        } else {
            None
        };
        match next {
            Some((uid, flags)) => {
                let cmd = format!("UID STORE {uid} FLAGS.SILENT {flags}");
                let tag = dst.send(&[Arg::Raw(cmd.as_bytes())]).await?;
                inflight.push_back((tag, *uid));
            }
            None if inflight.is_empty() => break,
            None => {
                dst.flush().await?;
                if let Some((status, code, text, uid)) = next_completion(dst, &mut inflight).await?
                {
                    if status == Status::Ok {
                        done += 1;
                    } else {
                        let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
                        ctx.report.error(
                            &format!(
                                "host2 [{}]/{uid}: setting flags failed: {code}{text}",
                                m.dst
                            ),
                            false,
                        );
                    }
                }
            }
        }
    }
    if done > 0 {
        ctx.report.line(&format!(
            "Host2: flags resynced on {done} message(s) of [{}]",
            m.dst
        ));
    }
    Ok(done)
}
