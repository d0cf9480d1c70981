//! Message metadata, identity and the multiset comparison of two folders.
//!
//! A message is identified by its Message-ID and its size; a message without a Message-ID by
//! a SHA-256 of its whole header block and its size. Folders are compared as *multisets* of
//! identities: three exact copies on the source mean three on the destination, and
//! messages without any identifying header are copied like the others (imapsync's default
//! leaves both behind). Within one identity, source and destination messages are paired
//! exact match first (same flags, same internal date), then in UID order, so flags and
//! dates can be compared message by message.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{
    NativeError,
    conn::{Arg, Conn},
    wire::{self, Resp, Status, Value},
};

/// UIDs per FETCH command: keeps command lines short whatever the UID spread.
pub const UIDS_PER_COMMAND: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    MessageId(String),
    Header([u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub id: Identity,
    pub size: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub uid: u32,
    pub size: u64,
    /// As the server sent them, without `\Recent`.
    pub flags: Vec<String>,
    /// INTERNALDATE as sent (reused verbatim for APPEND).
    pub date: Option<String>,
    pub time: Option<i64>,
    pub message_id: Option<String>,
    pub header_hash: Option<[u8; 32]>,
}

impl Meta {
    pub fn key(&self) -> Option<Key> {
        let id = match (&self.message_id, self.header_hash) {
            (Some(m), _) => Identity::MessageId(m.clone()),
            (None, Some(h)) => Identity::Header(h),
            (None, None) => return None,
        };
        Some(Key {
            id,
            size: self.size,
        })
    }

    /// Flags for comparison: lower-cased (flags are case-insensitive) and sorted.
    pub fn flag_set(&self) -> Vec<String> {
        let mut f: Vec<String> = self.flags.iter().map(|f| f.to_ascii_lowercase()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// `(\Seen $Label1)` for APPEND and STORE.
    pub fn flag_list(&self) -> String {
        format!("({})", self.flags.join(" "))
    }
}

/// `INTERNALDATE` (`" 1-Feb-2024 10:00:00 +0100"`) → seconds since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

/// `1:5,7,9:12` for sorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The Message-ID in a `HEADER.FIELDS (MESSAGE-ID)` block, unfolded and trimmed.
fn message_id(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        (name.trim().eq_ignore_ascii_case("message-id") && !value.is_empty())
            .then(|| value.to_owned())
    })
}

/// Sends a UID FETCH and hands every FETCH response's items to `each`.
pub async fn fetch_each(
    conn: &mut Conn,
    set: &str,
    items: &str,
    mut each: impl FnMut(Vec<(String, &Value)>),
) -> Result<(), NativeError> {
    let cmd = format!("UID FETCH {set} {items}");
    let tag = conn.send(&[Arg::Raw(cmd.as_bytes())]).await?;
    conn.flush().await?;
    loop {
        match conn.next_response().await? {
            Resp::Data { name, values, .. } if name == "FETCH" => each(wire::fetch_items(&values)),
            Resp::Status {
                tag: Some(t),
                status,
                code,
                text,
            } if t == tag => {
                if status == Status::Ok {
                    return Ok(());
                }
                let done = super::conn::Done {
                    status,
                    code,
                    text,
                    data: Vec::new(),
                };
                return Err(conn.command_error("FETCH", &done));
            }
            Resp::Status {
                tag: None,
                status: Status::Bye,
                text,
                ..
            } => {
                return Err(conn.err(
                    super::ErrorKind::Closed,
                    format!("the server closed the connection: {text}"),
                ));
            }
            _ => {}
        }
    }
}

/// Metadata of every message of the selected folder (`exists` from SELECT), in UID order.
pub async fn fetch_meta(conn: &mut Conn, exists: u64) -> Result<Vec<Meta>, NativeError> {
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut metas = Vec::with_capacity(exists as usize);
    let items = "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])";
    fetch_each(conn, "1:*", items, |items| {
        let mut m = Meta::default();
        let mut has_uid = false;
        for (k, v) in items {
            match k.as_str() {
                "UID" => {
                    m.uid = v.number().unwrap_or(0) as u32;
                    has_uid = true;
                }
                "RFC822.SIZE" => m.size = v.number().unwrap_or(0),
                "FLAGS" => {
                    m.flags = v
                        .list()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(Value::text)
                        .filter(|f| !f.eq_ignore_ascii_case("\\recent"))
                        .collect();
                }
                "INTERNALDATE" => {
                    m.date = v.text();
                    m.time = m.date.as_deref().and_then(parse_date);
                }
                k if k.starts_with("BODY[HEADER.FIELDS") => {
                    m.message_id = v.bytes().and_then(message_id);
                }
                _ => {}
            }
        }
        if has_uid {
            metas.push(m);
        }
    })
    .await?;
    metas.sort_by_key(|m| m.uid);
    metas.dedup_by_key(|m| m.uid);
    // Without a Message-ID, the whole header block identifies the message.
    let anonymous: Vec<u32> = metas
        .iter()
        .filter(|m| m.message_id.is_none())
        .map(|m| m.uid)
        .collect();
    if !anonymous.is_empty() {
        let mut hashes = HashMap::new();
        for chunk in anonymous.chunks(UIDS_PER_COMMAND) {
            fetch_each(conn, &uid_set(chunk), "(UID BODY.PEEK[HEADER])", |items| {
                let uid = items
                    .iter()
                    .find(|(k, _)| k == "UID")
                    .and_then(|(_, v)| v.number());
                let header = items
                    .iter()
                    .find(|(k, _)| k == "BODY[HEADER]")
                    .and_then(|(_, v)| v.bytes());
                if let (Some(uid), Some(h)) = (uid, header) {
                    hashes.insert(uid as u32, <[u8; 32]>::from(Sha256::digest(h)));
                }
            })
            .await?;
        }
        for m in &mut metas {
            if m.message_id.is_none() {
                m.header_hash = hashes.get(&m.uid).copied();
            }
        }
    }
    Ok(metas)
}

/// Which source messages the options leave out.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageFilter {
    pub max_age_days: Option<u32>,
    pub min_age_days: Option<u32>,
    pub max_size: Option<u64>,
    pub now: i64,
}

impl MessageFilter {
    pub fn new(
        max_age_days: Option<u32>,
        min_age_days: Option<u32>,
        max_size: Option<u64>,
    ) -> Self {
        Self {
            max_age_days,
            min_age_days,
            max_size,
            now: Utc::now().timestamp(),
        }
    }

    pub fn wants(&self, m: &Meta) -> bool {
        let age_days = m.time.map(|t| (self.now - t) / 86_400);
        let too_old =
            matches!((self.max_age_days, age_days), (Some(max), Some(a)) if a >= i64::from(max));
        let too_young =
            matches!((self.min_age_days, age_days), (Some(min), Some(a)) if a < i64::from(min));
        let too_big = self.max_size.is_some_and(|max| m.size > max);
        !(too_old || too_young || too_big)
    }
}

/// The comparison of one folder. Indexes point into the `src` and `dst` slices.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Source messages with no counterpart: to copy (UID order).
    pub copy: Vec<usize>,
    /// Pairs (src, dst) of the same message.
    pub pairs: Vec<(usize, usize)>,
    /// Destination messages with no counterpart.
    pub extra: Vec<usize>,
    /// Source messages without any identity (their headers could not be read).
    pub unidentified: Vec<usize>,
    /// Source messages whose identity occurs more than once on the source.
    pub duplicates_src: u64,
}

impl Diff {
    /// Pairs whose flags differ.
    pub fn flag_mismatches<'a>(
        &'a self,
        src: &'a [Meta],
        dst: &'a [Meta],
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.pairs
            .iter()
            .copied()
            .filter(|&(s, d)| src[s].flag_set() != dst[d].flag_set())
    }

    /// Pairs whose internal dates differ.
    pub fn date_mismatches<'a>(
        &'a self,
        src: &'a [Meta],
        dst: &'a [Meta],
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.pairs
            .iter()
            .copied()
            .filter(|&(s, d)| src[s].time != dst[d].time)
    }
}

/// Compares two folders as multisets of identities.
pub fn diff(src: &[Meta], dst: &[Meta]) -> Diff {
    let mut out = Diff::default();
    let mut groups: HashMap<Key, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, m) in src.iter().enumerate() {
        match m.key() {
            Some(k) => groups.entry(k).or_default().0.push(i),
            None => out.unidentified.push(i),
        }
    }
    for (i, m) in dst.iter().enumerate() {
        if let Some(k) = m.key() {
            groups.entry(k).or_default().1.push(i);
        } else {
            out.extra.push(i);
        }
    }
    for (s, d) in groups.into_values() {
        if s.len() > 1 {
            out.duplicates_src += s.len() as u64;
        }
        let mut d_used = vec![false; d.len()];
        let mut s_left = Vec::new();
        for &si in &s {
            let exact = d.iter().enumerate().position(|(j, &di)| {
                !d_used[j]
                    && src[si].flag_set() == dst[di].flag_set()
                    && src[si].time == dst[di].time
            });
            match exact {
                Some(j) => {
                    d_used[j] = true;
                    out.pairs.push((si, d[j]));
                }
                None => s_left.push(si),
            }
        }
        let mut d_left = d
            .iter()
            .zip(&d_used)
            .filter(|(_, u)| !**u)
            .map(|(&di, _)| di);
        for si in s_left {
            match d_left.next() {
                Some(di) => out.pairs.push((si, di)),
                None => out.copy.push(si),
            }
        }
        out.extra.extend(d_left);
    }
    out.copy.sort_unstable();
    out.pairs.sort_unstable();
    out.extra.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, id: &str, size: u64, flags: &[&str], time: i64) -> Meta {
        Meta {
            uid,
            size,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            time: Some(time),
            message_id: (!id.is_empty() && !id.starts_with('#')).then(|| id.to_owned()),
            header_hash: id.strip_prefix('#').map(|h| [h.as_bytes()[0]; 32]),
            ..Meta::default()
        }
    }

    #[test]
    fn duplicates_and_anonymous_messages_are_counted_as_multisets() {
        let src = [
            m(1, "<a>", 10, &["\\Seen"], 1),
            m(2, "<a>", 10, &["\\Seen"], 1),
            m(3, "<a>", 10, &["\\Seen"], 1),
            m(4, "#x", 20, &[], 2),
            m(5, "#x", 20, &[], 2),
            m(6, "<b>", 30, &["\\Flagged"], 3),
            m(7, "<c>", 40, &[], 4),
            m(8, "", 50, &[], 5),
        ];
        let dst = [
            m(1, "<a>", 10, &["\\seen"], 1),
            m(2, "#x", 20, &[], 2),
            m(3, "<b>", 30, &[], 3),
            m(4, "<c>", 41, &[], 4), // other size: another message
        ];
        let d = diff(&src, &dst);
        assert_eq!(d.copy, [1, 2, 4, 6]);
        assert_eq!(d.pairs, [(0, 0), (3, 1), (5, 2)]);
        assert_eq!(d.extra, [3]);
        assert_eq!(d.unidentified, [7]);
        assert_eq!(d.duplicates_src, 5);
        assert_eq!(d.flag_mismatches(&src, &dst).collect::<Vec<_>>(), [(5, 2)]);
        assert_eq!(d.date_mismatches(&src, &dst).count(), 0);
    }

    #[test]
    fn exact_matches_are_paired_first() {
        let src = [m(1, "<a>", 1, &["\\Seen"], 1), m(2, "<a>", 1, &[], 1)];
        let dst = [m(7, "<a>", 1, &[], 1)];
        let d = diff(&src, &dst);
        assert_eq!(d.pairs, [(1, 0)]);
        assert_eq!(d.copy, [0]);
    }

    #[test]
    fn helpers() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(parse_date(" 1-Feb-2024 10:00:00 +0100"), Some(1706778000));
        assert_eq!(parse_date("01-Feb-2024 09:00:00 +0000"), Some(1706778000));
        assert_eq!(
            message_id(b"Message-ID:\r\n <x@y>\r\n\r\n").as_deref(),
            Some("<x@y>")
        );
        assert_eq!(message_id(b"\r\n"), None);
        let f = MessageFilter {
            max_age_days: Some(10),
            min_age_days: Some(2),
            max_size: Some(100),
            now: 100 * 86_400,
        };
        assert!(f.wants(&m(1, "", 100, &[], 95 * 86_400)));
        assert!(!f.wants(&m(1, "", 101, &[], 95 * 86_400)));
        assert!(!f.wants(&m(1, "", 1, &[], 80 * 86_400)));
        assert!(!f.wants(&m(1, "", 1, &[], 99 * 86_400)));
    }
}
