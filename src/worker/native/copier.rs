//! Copies one folder over one pair of connections.
//!
//! 1. EXAMINE the source (read-only: the source is never changed) and SELECT the
//!    destination; fetch both sides' metadata concurrently; compare as multisets.
//! 2. Resync flags of messages already on the destination (pipelined `UID STORE`).
//! 3. Copy the rest: a producer streams `UID FETCH ... BODY.PEEK[]` responses from the
//!    source while a consumer writes `APPEND`s to the destination with LITERAL+, up to
//!    `depth` of them in flight. Messages up to [`STREAM_OVER`] travel whole; bigger ones in
//!    [`CHUNK`]-byte pieces, so a message is never entirely in memory. Every byte in transit
//!    holds a permit of the run-wide memory budget, released once written to the socket:
//!    that bounds memory whatever the message sizes, folders or latency.
//!
//! The source's bytes go to the destination unchanged, with the source's flags, keywords
//! and internal date.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{
    ErrorKind, NativeError,
    conn::{Arg, Conn},
    folders::Mapping,
    identity::{self, MessageFilter, Meta, UIDS_PER_COMMAND},
    report::Report,
    wire::{self, Resp, Status},
};

/// Messages bigger than this are streamed in chunks.
pub const STREAM_OVER: u64 = 1024 * 1024;
pub const CHUNK: usize = 256 * 1024;
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

    async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
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

enum Item {
    Whole {
        idx: usize,
        body: Vec<u8>,
        _permit: OwnedSemaphorePermit,
    },
    Start {
        idx: usize,
        size: u64,
    },
    Chunk {
        data: Vec<u8>,
        _permit: OwnedSemaphorePermit,
    },
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
        let (tx, rx) = mpsc::channel(1024);
        let before = (progress.copied, progress.bytes);
        let produce = produce(src, &smeta, &to_copy, tx, ctx);
        let consume = consume(dst, &smeta, m, rx, ctx, progress);
        let (vanished, ()) = tokio::try_join!(produce, consume)?;
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

/// Reads one response; when it completes a command in `inflight`, removes and returns it.
async fn next_completion<T>(
    conn: &mut Conn,
    inflight: &mut VecDeque<(String, T)>,
) -> Result<Option<(Status, Option<String>, String, T)>, NativeError> {
    match conn.next_response().await? {
        Resp::Status {
            tag: Some(t),
            status,
            code,
            text,
        } => {
            let Some(pos) = inflight.iter().position(|(tag, _)| *tag == t) else {
                return Ok(None);
            };
            let (_, item) = inflight.remove(pos).expect("position is valid");
            Ok(Some((status, code, text, item)))
        }
        Resp::Status {
            tag: None,
            status: Status::Bye,
            text,
            ..
        } => Err(conn.err(
            ErrorKind::Closed,
            format!("the server closed the connection: {text}"),
        )),
        _ => Ok(None),
    }
}

/// The `UID n` of a FETCH response's text, wherever it is.
fn find_uid(text: &[u8]) -> Option<u32> {
    let upper = text.to_ascii_uppercase();
    let mut from = 0;
    while let Some(pos) = upper[from..].windows(4).position(|w| w == b"UID ") {
        let at = from + pos;
        let boundary = at == 0 || matches!(upper[at - 1], b'(' | b' ');
        let digits: Vec<u8> = upper[at + 4..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if boundary && !digits.is_empty() {
            return std::str::from_utf8(&digits).ok()?.parse().ok();
        }
        from = at + 4;
    }
    None
}

/// Source side: fetches the bodies of `to_copy` and feeds them to the consumer. Returns how
/// many messages the server did not return (expunged meanwhile).
async fn produce(
    src: &mut Conn,
    smeta: &[Meta],
    to_copy: &[usize],
    tx: mpsc::Sender<Item>,
    ctx: &Ctx,
) -> Result<u64, NativeError> {
    let by_uid: HashMap<u32, usize> = to_copy.iter().map(|&i| (smeta[i].uid, i)).collect();
    let mut delivered = 0u64;
    let closed = || {
        NativeError::new(
            super::Side::Host2,
            ErrorKind::Closed,
            "the destination stopped taking messages".into(),
        )
    };
    for chunk in to_copy.chunks(UIDS_PER_COMMAND) {
        let uids: Vec<u32> = chunk.iter().map(|&i| smeta[i].uid).collect();
        let cmd = format!("UID FETCH {} (UID BODY.PEEK[])", identity::uid_set(&uids));
        let tag = src.send(&[Arg::Raw(cmd.as_bytes())]).await?;
        src.flush().await?;
        loop {
            let line = src.read_line().await?;
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let resp = wire::parse(&[wire::Part::Text(line)])
                    .map_err(|e| src.err(ErrorKind::Protocol, e))?;
                if let Resp::Status {
                    status, code, text, ..
                } = resp
                    && status != Status::Ok
                {
                    let done = super::conn::Done {
                        status,
                        code,
                        text,
                        data: Vec::new(),
                    };
                    return Err(src.command_error("FETCH", &done));
                }
                break;
            }
            let Some(n) = wire::literal_size(&line).filter(|_| line.starts_with(b"* ")) else {
                // Untagged data without a literal (EXISTS, EXPUNGE, flag updates): not ours.
                if line.starts_with(b"* BYE") {
                    return Err(
                        src.err(ErrorKind::Closed, "the server closed the connection".into())
                    );
                }
                continue;
            };
            let known = find_uid(&line).and_then(|u| by_uid.get(&u).copied());
            match known {
                Some(idx) if n > STREAM_OVER => {
                    tx.send(Item::Start { idx, size: n })
                        .await
                        .map_err(|_| closed())?;
                    let mut left = n;
                    while left > 0 {
                        let len = left.min(CHUNK as u64);
                        let permit = ctx.reserve(len).await;
                        let mut data = vec![0; len as usize];
                        src.read_exact(&mut data).await?;
                        left -= len;
                        tx.send(Item::Chunk {
                            data,
                            _permit: permit,
                        })
                        .await
                        .map_err(|_| closed())?;
                    }
                    let _rest = src.read_parts(64 * 1024).await?;
                    delivered += 1;
                }
                Some(idx) => {
                    let permit = ctx.reserve(n).await;
                    let body = src.read_literal(n as usize).await?;
                    let _rest = src.read_parts(64 * 1024).await?;
                    tx.send(Item::Whole {
                        idx,
                        body,
                        _permit: permit,
                    })
                    .await
                    .map_err(|_| closed())?;
                    delivered += 1;
                }
                None => {
                    // UID after the body (unusual server): keep it in memory to learn which.
                    if n > super::conn::MAX_MEMORY_LITERAL {
                        return Err(src.err(
                            ErrorKind::Protocol,
                            "a body came before its UID and is too big to hold".into(),
                        ));
                    }
                    let permit = ctx.reserve(n).await;
                    let body = src.read_literal(n as usize).await?;
                    let rest = src.read_parts(64 * 1024).await?;
                    let uid = rest.iter().find_map(|p| match p {
                        wire::Part::Text(t) => find_uid(t),
                        wire::Part::Literal(_) => None,
                    });
                    if let Some(idx) = uid.and_then(|u| by_uid.get(&u).copied()) {
                        tx.send(Item::Whole {
                            idx,
                            body,
                            _permit: permit,
                        })
                        .await
                        .map_err(|_| closed())?;
                        delivered += 1;
                    }
                }
            }
        }
    }
    Ok(to_copy.len() as u64 - delivered.min(to_copy.len() as u64))
}

/// Destination side: APPENDs what the producer sends, `ctx.depth` in flight.
async fn consume(
    dst: &mut Conn,
    smeta: &[Meta],
    m: &Mapping,
    mut rx: mpsc::Receiver<Item>,
    ctx: &Ctx,
    progress: &mut FolderProgress,
) -> Result<(), NativeError> {
    let mut inflight: VecDeque<(String, usize)> = VecDeque::new();
    loop {
        if inflight.len() >= ctx.depth {
            dst.flush().await?;
            complete_one(dst, &mut inflight, smeta, m, ctx, progress).await?;
            continue;
        }
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) if !inflight.is_empty() => {
                // Nothing to send right now: collect a completion meanwhile.
                dst.flush().await?;
                complete_one(dst, &mut inflight, smeta, m, ctx, progress).await?;
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match item {
            Item::Whole { idx, body, _permit } => {
                let tag = append_header(dst, &m.dst, &smeta[idx], body.len() as u64).await?;
                dst.write(&body).await?;
                dst.write(b"\r\n").await?;
                inflight.push_back((tag, idx));
            }
            Item::Start { idx, size } => {
                let tag = append_header(dst, &m.dst, &smeta[idx], size).await?;
                let mut left = size;
                while left > 0 {
                    let Some(Item::Chunk { data, _permit }) = rx.recv().await else {
                        return Err(dst.err(
                            ErrorKind::Closed,
                            "the source stopped in the middle of a message".into(),
                        ));
                    };
                    dst.write(&data).await?;
                    left = left.saturating_sub(data.len() as u64);
                }
                dst.write(b"\r\n").await?;
                inflight.push_back((tag, idx));
            }
            Item::Chunk { .. } => {
                return Err(dst.err(
                    ErrorKind::Protocol,
                    "internal: chunk without a message".into(),
                ));
            }
        }
    }
    dst.flush().await?;
    while !inflight.is_empty() {
        complete_one(dst, &mut inflight, smeta, m, ctx, progress).await?;
    }
    Ok(())
}

/// `TAG APPEND "box" (flags) "date" {n+}` (the body follows).
async fn append_header(
    dst: &mut Conn,
    mailbox: &str,
    meta: &Meta,
    size: u64,
) -> Result<String, NativeError> {
    let date = meta
        .date
        .as_deref()
        .map(|d| format!(" \"{d}\""))
        .unwrap_or_default();
    let tail = format!(" {}{date} ", meta.flag_list());
    let tag = dst
        .begin(&[
            Arg::Raw(b"APPEND "),
            Arg::Mailbox(mailbox),
            Arg::Raw(tail.as_bytes()),
        ])
        .await?;
    dst.literal_marker(&tag, size).await?;
    Ok(tag)
}

async fn complete_one(
    dst: &mut Conn,
    inflight: &mut VecDeque<(String, usize)>,
    smeta: &[Meta],
    m: &Mapping,
    ctx: &Ctx,
    progress: &mut FolderProgress,
) -> Result<(), NativeError> {
    let Some((status, code, text, idx)) = next_completion(dst, inflight).await? else {
        return Ok(());
    };
    let s = &smeta[idx];
    if status == Status::Ok {
        let dst_uid = code
            .as_deref()
            .and_then(|c| c.strip_prefix("APPENDUID "))
            .and_then(|c| c.split_whitespace().nth(1))
            .map(|u| format!("/{u}"))
            .unwrap_or_default();
        progress.copied += 1;
        progress.bytes += s.size;
        progress.reported += 1;
        ctx.report.copied(
            s.size,
            &format!(
                "msg [{}]/{} {{{}}} copied to [{}]{dst_uid}",
                m.src, s.uid, s.size, m.dst
            ),
        );
        return Ok(());
    }
    let done = super::conn::Done {
        status,
        code,
        text,
        data: Vec::new(),
    };
    let err = dst.command_error("APPEND", &done);
    if err.kind == ErrorKind::Quota {
        return Err(err);
    }
    progress.reported += 1;
    ctx.report.error(
        &format!(
            "host2 [{}]: copying host1 [{}]/{} ({} bytes) failed: {}",
            m.dst, m.src, s.uid, s.size, err.detail
        ),
        true,
    );
    ctx.report.handled(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::find_uid;

    #[test]
    fn uid_is_found_anywhere_in_a_fetch_line() {
        assert_eq!(find_uid(b"* 3 FETCH (UID 17 BODY[] {10}"), Some(17));
        assert_eq!(find_uid(b"* 3 FETCH (BODY[] {10}"), None);
        assert_eq!(find_uid(b" UID 9)"), Some(9));
        assert_eq!(find_uid(b"* 3 FETCH (XUID 5 UID 6 BODY[] {1}"), Some(6));
    }
}
