//! The streaming part of a folder copy: a producer reads `UID FETCH ... BODY.PEEK[]`
//! responses from the source while a consumer writes `APPEND`s to the destination, `depth`
//! of them in flight (LITERAL+; without it each APPEND waits for the server's `+`).
//! Messages up to [`STREAM_OVER`] travel whole; bigger ones in [`CHUNK`]-byte pieces, so a
//! message is never entirely in memory. Every byte in transit holds a permit of the run-wide
//! budget ([`Ctx::reserve`]), released once written to the destination's socket.
//!
//! The bytes go to the destination exactly as the source sent them, with the source's
//! flags, keywords and internal date.

use std::collections::{HashMap, VecDeque};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::{
    ErrorKind, NativeError, Side,
    conn::{Arg, Conn, Done, MAX_MEMORY_LITERAL},
    copier::{Ctx, FolderProgress},
    folders::Mapping,
    identity::{self, Meta, UIDS_PER_COMMAND},
    wire::{self, Part, Resp, Status},
};

/// Messages bigger than this are streamed in chunks.
pub const STREAM_OVER: u64 = 1024 * 1024;
pub const CHUNK: usize = 256 * 1024;

/// Copies the source messages `to_copy` (indexes into `smeta`) into `m.dst`. Returns how
/// many the source no longer had (expunged meanwhile).
pub async fn copy_messages(
    src: &mut Conn,
    dst: &mut Conn,
    smeta: &[Meta],
    to_copy: &[usize],
    m: &Mapping,
    ctx: &Ctx,
    progress: &mut FolderProgress,
) -> Result<u64, NativeError> {
    // Bounded in entries; the bytes are bounded by the budget permits they carry.
    let (tx, rx) = mpsc::channel(1024);
    let produce = produce(src, smeta, to_copy, tx, ctx);
    let consume = consume(dst, smeta, m, rx, ctx, progress);
    let (vanished, ()) = tokio::try_join!(produce, consume)?;
    Ok(vanished)
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

/// Reads one response; when it completes a command in `inflight`, removes and returns it.
pub(super) async fn next_completion<T>(
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
            Side::Host2,
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
                let resp = wire::parse(&[Part::Text(line)])
                    .map_err(|e| src.err(ErrorKind::Protocol, e))?;
                if let Resp::Status {
                    status, code, text, ..
                } = resp
                    && status != Status::Ok
                {
                    let done = Done {
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
                    if n > MAX_MEMORY_LITERAL {
                        return Err(src.err(
                            ErrorKind::Protocol,
                            "a body came before its UID and is too big to hold".into(),
                        ));
                    }
                    let permit = ctx.reserve(n).await;
                    let body = src.read_literal(n as usize).await?;
                    let rest = src.read_parts(64 * 1024).await?;
                    let uid = rest.iter().find_map(|p| match p {
                        Part::Text(t) => find_uid(t),
                        Part::Literal(_) => None,
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
    let done = Done {
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
