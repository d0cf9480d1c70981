//! What the replay has shown so far, and the recorded statistics block with those counters
//! swapped in, for a run that ends by a signal before its own statistics.

use std::time::Duration;

/// Counters seen in the replayed lines.
#[derive(Debug, Default)]
pub struct Tracker {
    pub copied: u64,
    pub bytes: u64,
    pub biggest: u64,
    pub done: u64,
    pub folder: (u32, u32),
    pub selected: u64,
    pub dups: u64,
    pub void: u64,
    pub reconnects: u64,
    /// From the replayed run: known before the transfer, so true at any point of it.
    pub started_at: String,
    pub start_difference: String,
}

impl Tracker {
    /// A tracker that knows what the replayed run printed before its transfer started.
    pub fn new(recorded: &[String]) -> Tracker {
        let mut t = Tracker::default();
        for line in recorded {
            let start_diff = line.strip_prefix("Start difference host2 - host1");
            if let Some((_, diff)) = start_diff.and_then(|d| d.split_once(": ")) {
                t.start_difference = diff.to_owned();
            }
        }
        t
    }

    pub fn see(&mut self, line: &str) {
        let num = |s: &str| s.split_whitespace().next()?.parse::<u64>().ok();
        let msg = line
            .strip_prefix("msg ")
            .and_then(|r| r.split_once(" copied to "));
        if let Some((src, _)) = msg {
            let size = src.trim_end().trim_end_matches('}').rsplit('{').next();
            let size = size.and_then(num).unwrap_or(0);
            self.copied += 1;
            self.bytes += size;
            self.biggest = self.biggest.max(size);
        }
        let counter = line
            .strip_suffix(" msgs left")
            .and_then(|h| h.rsplit(' ').next());
        if let Some((left, total)) = counter.and_then(|c| c.split_once('/')) {
            let (left, total) = (num(left).unwrap_or(0), num(total).unwrap_or(0));
            self.done = self.done.max(total.saturating_sub(left));
        }
        let folder = line
            .strip_prefix("Folder ")
            .and_then(|r| r.split_whitespace().next());
        if let Some((i, n)) = folder.and_then(|c| c.split_once('/')) {
            self.folder = (i.parse().unwrap_or(0), n.parse().unwrap_or(0));
        }
        let host1 = line
            .strip_prefix("Host1: folder [")
            .and_then(|r| r.split_once("] selected "));
        if let Some((_, r)) = host1 {
            self.selected += num(r).unwrap_or(0);
            self.dups += r.rsplit(' ').next().and_then(num).unwrap_or(0);
        }
        self.void += u64::from(line.contains(" ignored (no wanted headers"));
        if let Some(at) = line.strip_prefix("Transfer started at ") {
            self.started_at = at.to_owned();
        }
    }

    /// A recorded statistics or verdict line with this run's figures (`elapsed`: run time so
    /// far). `unidentified`: a recorded `There are N unidentified messages` line, for when the
    /// recorded ending says there are none but this run saw some. Other lines come back as
    /// they are.
    pub fn restate(&self, line: &str, elapsed: Duration, unidentified: &str) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let skipped = self.done.saturating_sub(self.copied);
        let missing = self.selected.saturating_sub(self.done);
        let identified = self.selected.saturating_sub(self.dups + self.void);
        let on_host2 = self.done.saturating_sub(self.dups + self.void);
        if line.starts_with("The sync is not finished") {
            return fill(line, &[missing.to_string(), identified.to_string()]);
        }
        if line.starts_with("The sync is strict") {
            return fill(line, &[on_host2.to_string()]);
        }
        if line.starts_with("There is no unidentified message") && self.void > 0 {
            return fill(unidentified, &[self.void.to_string()]);
        }
        let Some((label, value)) = line.split_once(" : ") else {
            return line.to_owned();
        };
        let n = |x: u64| vec![x.to_string()];
        let values = match label.trim_end() {
            "Transfer started on" | "Transfer ended on" if !self.started_at.is_empty() => {
                return format!("{label} : {}", self.started_at);
            }
            "Start difference host2 - host1" if !self.start_difference.is_empty() => {
                return format!("{label} : {}", self.start_difference);
            }
            "Transfer time" => vec![format!("{secs:.1}")],
            "Folders synced" => vec![self.folder.0.to_string(), self.folder.1.to_string()],
            "Messages transferred" => n(self.copied),
            "Messages skipped" => n(skipped),
            "Messages found duplicate on host1" => n(self.dups),
            "Messages void (noheader) on host1" => n(self.void),
            "Messages found in host1 not in host2" => n(missing),
            "Total bytes transferred" => vec![self.bytes.to_string(), size(self.bytes)],
            "Message rate" => vec![format!("{:.1}", self.copied as f64 / secs)],
            "Average bandwidth rate" => vec![format!("{:.1}", self.bytes as f64 / 1024.0 / secs)],
            "Reconnections to host1" | "Reconnections to host2" => n(self.reconnects),
            "Biggest message transferred" => vec![self.biggest.to_string(), size(self.biggest)],
            _ => return line.to_owned(),
        };
        format!("{label} : {}", fill(value, &values))
    }
}

/// `text` with its numbers replaced, in order, by `values`; the rest is kept as recorded. A
/// value with a unit (`12.5 MiB`) also replaces the unit that follows the recorded number.
fn fill(text: &str, values: &[String]) -> String {
    let (mut out, mut values) = (String::with_capacity(text.len()), values.iter());
    let mut rest = text;
    while let Some(at) = number_start(rest) {
        let Some(value) = values.next() else { break };
        let len = number_len(&rest[at..]);
        out.push_str(&rest[..at]);
        rest = &rest[at + len..];
        let (number, unit) = value.split_once(' ').unwrap_or((value, ""));
        out.push_str(number);
        let recorded_unit = rest.trim_start().split([' ', ')']).next().unwrap_or("");
        if !unit.is_empty() && ["KiB", "MiB", "GiB"].contains(&recorded_unit) {
            let gap = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..gap]);
            out.push_str(unit);
            rest = &rest[gap + recorded_unit.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// Where the next number starts: a digit (or `-` and a digit) not inside a word (`host1`).
fn number_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| {
        let digit_at = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
        let starts = digit_at(i) || (b[i] == b'-' && digit_at(i + 1));
        let inside_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.');
        starts && !inside_word
    })
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    while i < b.len()
        && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
    {
        i += 1;
    }
    i
}

/// A human size in imapsync's units: `0.000 KiB`, `42.225 KiB`, `35.120 MiB`, `1.500 GiB`.
fn size(b: u64) -> String {
    let (kib, mib) = (1024.0, 1024.0 * 1024.0);
    match b as f64 {
        b if b < mib => format!("{:.3} KiB", b / kib),
        b if b < mib * kib => format!("{:.3} MiB", b / mib),
        b => format!("{:.3} GiB", b / mib / kib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_keeps_the_recorded_words() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(fill("7/16 synced", &v(&["3", "9"])), "3/9 synced");
        assert_eq!(
            fill("10807760 (10.307 MiB)", &v(&["2048", "2.000 KiB"])),
            "2048 (2.000 KiB)"
        );
        assert_eq!(
            fill("2913151 bytes (2.778 MiB)", &v(&["5", "0.005 KiB"])),
            "5 bytes (0.005 KiB)"
        );
        assert_eq!(fill("6057.5 KiB/s", &v(&["12.0"])), "12.0 KiB/s");
        assert_eq!(
            fill(
                "there are 70 among 170 identified messages in host1 that are not on host2.",
                &v(&["1", "2"])
            ),
            "there are 1 among 2 identified messages in host1 that are not on host2."
        );
        assert_eq!(fill("-300 messages", &v(&["-4"])), "-4 messages");
        assert_eq!(
            fill("0  ", &v(&["3", "4"])),
            "3  ",
            "extra values are ignored"
        );
    }

    #[test]
    fn restate_swaps_the_counters_into_recorded_lines() {
        let mut t = Tracker::new(&[
            "Start difference host2 - host1          : -5 messages, -9 bytes (-0.009 KiB)"
                .to_owned(),
        ]);
        t.see("Transfer started at Sunday 22 November 2026");
        t.see("Folder    2/16 [INBOX]  -> [INBOX]");
        t.see("Host1: folder [INBOX] selected 10 messages, duplicates 1");
        t.see(
            "msg INBOX/1 {2048}           copied to INBOX/1  1 msgs/s ETA: x  0 s  8/10 msgs left",
        );
        for uid in [2, 3] {
            t.see(&format!(
                "Host1: INBOX/{uid} size 9 ignored (no wanted headers so we ignore it)"
            ));
        }
        let d = Duration::from_secs(2);
        let none = "There are 1 unidentified messages (usually Sent or Draft messages). Add --x";
        let r = |l: &str| t.restate(l, d, none);
        assert_eq!(
            r("Messages transferred                    : 100 "),
            "Messages transferred                    : 1 "
        );
        assert_eq!(
            r("Messages skipped                        : 2"),
            "Messages skipped                        : 1"
        );
        assert_eq!(
            r("Folders synced                          : 7/16 synced"),
            "Folders synced                          : 2/16 synced"
        );
        assert_eq!(
            r("Total bytes transferred                 : 10807760 (10.307 MiB)"),
            "Total bytes transferred                 : 2048 (2.000 KiB)"
        );
        assert_eq!(
            r("Transfer time                           : 1.7 sec"),
            "Transfer time                           : 2.0 sec"
        );
        assert_eq!(
            r(
                "Start difference host2 - host1          : -300 messages, -37895582 bytes (-36.140 MiB)"
            ),
            "Start difference host2 - host1          : -5 messages, -9 bytes (-0.009 KiB)"
        );
        assert_eq!(
            r(
                "The sync is not finished, there are 70 among 170 identified messages in host1 that are not on host2."
            ),
            "The sync is not finished, there are 8 among 7 identified messages in host1 that are not on host2."
        );
        assert_eq!(
            r("There is no unidentified message on host1."),
            "There are 2 unidentified messages (usually Sent or Draft messages). Add --x"
        );
        assert_eq!(r("Detected 0 errors"), "Detected 0 errors");
        assert_eq!(size(0), "0.000 KiB");
        assert_eq!(size(43238), "42.225 KiB");
        assert_eq!(size(36825958), "35.120 MiB");
    }
}
