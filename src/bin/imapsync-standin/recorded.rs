//! The captured imapsync runs (`tests/fixtures/imapsync`) and the passages the stand-in takes
//! from them.
//!
//! Every line the stand-in prints on stdout is a recorded line: the replayed run's own lines, or,
//! for what that run did not record, a passage of another capture (the TERM ending of fixture h,
//! the INT reconnection of fixture m, fixture l's `--nolog` line, fixture a's log hint). This
//! module only swaps this run's pid, paths, hosts and users in for the recorded ones; imapsync's
//! wording is never typed into the stand-in.

use std::fs;
use std::path::{Path, PathBuf};

/// One captured run.
#[derive(Debug)]
pub struct Fixture {
    pub stdout: Vec<String>,
    pub stderr: Vec<u8>,
    pub exit: i32,
    pub seconds: f64,
    /// How the recorded run names itself in its lines.
    pub who: Identity,
}

impl Fixture {
    pub fn load(dir: &Path, id: &str) -> Result<Fixture, String> {
        let (prefix, shown) = (format!("{id}_"), dir.display());
        let entries = fs::read_dir(dir).map_err(|e| format!("imapsync-standin: {shown}: {e}"))?;
        let mut names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        let name = names
            .find(|n| n.starts_with(&prefix) && n.contains(".exit") && n.ends_with(".stdout.txt"))
            .ok_or(format!("imapsync-standin: no fixture {id:?} in {shown}"))?;
        let stdout = fs::read(dir.join(&name)).map_err(|e| format!("imapsync-standin: {e}"))?;
        let stderr = fs::read(dir.join(name.replace(".stdout.", ".stderr."))).unwrap_or_default();
        // index.tsv: id, name, exit, seconds, command.
        let index = fs::read_to_string(dir.join("index.tsv")).unwrap_or_default();
        let row = index.lines().map(|l| l.split('\t').collect::<Vec<_>>());
        let row = row.into_iter().find(|c| c[0] == id).unwrap_or_default();
        let from_name = name.split(".exit").nth(1).and_then(|r| r.split('.').next());
        let exit = row
            .get(2)
            .copied()
            .or(from_name)
            .and_then(|c| c.parse().ok());
        let seconds = row.get(3).and_then(|s| s.parse().ok()).unwrap_or(1.0);
        // Lossy: a recorded line that is not UTF-8 is printed with replacement characters.
        let mut stdout: Vec<String> = String::from_utf8_lossy(&stdout)
            .split('\n')
            .map(str::to_owned)
            .collect();
        if stdout.last().is_some_and(String::is_empty) {
            stdout.pop();
        }
        let who = Identity::read(&stdout);
        Ok(Fixture {
            stdout,
            stderr,
            exit: exit.unwrap_or(0),
            seconds,
            who,
        })
    }

    /// The first recorded line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.stdout
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(String::as_str)
    }

    /// The recorded lines from the one starting with `first` (with the blank line before it, as
    /// imapsync prints one) up to and including the one starting with `last` (or the end).
    fn passage(&self, first: &str, last: Option<&str>) -> Result<Vec<String>, String> {
        let start = self.stdout.iter().position(|l| l.starts_with(first));
        let start = start.ok_or(format!("imapsync-standin: no line {first:?} recorded"))?;
        let start = match start > 0 && self.stdout[start - 1].is_empty() {
            true => start - 1,
            false => start,
        };
        let end = match last {
            Some(l) => {
                start
                    + self.stdout[start..]
                        .iter()
                        .position(|x| x.starts_with(l))
                        .ok_or(format!(
                            "imapsync-standin: no line {l:?} recorded after {first:?}"
                        ))?
            }
            None => self.stdout.len() - 1,
        };
        Ok(self.stdout[start..=end].to_vec())
    }
}

/// How a run names itself: pid, files, directory and the hosts and users it was given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Identity {
    pub pid: String,
    pub ppid: String,
    /// Log and pid file; `None` when the run had none.
    pub log: Option<String>,
    pub pidfile: Option<String>,
    pub cwd: String,
    pub hosts: [String; 2],
    pub users: [String; 2],
}

impl Identity {
    /// The recorded run's identity, read from its own lines.
    fn read(lines: &[String]) -> Identity {
        let mut who = Identity::default();
        let path = |rest: &str| rest.split(" ( to ").next().unwrap_or(rest).to_owned();
        let mut command_line_next = false;
        for line in lines {
            if std::mem::take(&mut command_line_next) {
                who.read_command_line(line);
            }
            command_line_next = line.starts_with("Command line used");
            if let Some(r) = line.strip_prefix("PID is ") {
                let words: Vec<&str> = r.split(' ').collect();
                who.pid = words[0].to_owned();
                who.ppid = words.get(4).unwrap_or(&"").to_string();
            } else if let Some(r) = line.strip_prefix("Log file is ") {
                who.log.get_or_insert_with(|| path(r)); // the first one; the last is the same
            } else if let Some(r) = line.strip_prefix("PID file is ") {
                who.pidfile = Some(path(r)).filter(|_| !r.starts_with("unset"));
            } else if let Some(r) = line.strip_prefix("Current directory is ") {
                who.cwd = r.to_owned();
            }
        }
        who
    }

    fn read_command_line(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        for (i, name) in ["--host1", "--host2", "--user1", "--user2"]
            .iter()
            .enumerate()
        {
            let at = words.iter().position(|w| w == name);
            if let Some(value) = at.and_then(|p| words.get(p + 1)) {
                match i {
                    0 | 1 => self.hosts[i] = (*value).to_owned(),
                    _ => self.users[i - 2] = (*value).to_owned(),
                }
            }
        }
    }

    /// A line recorded by `from`, as this run (`self`) would print it: its log and pid file
    /// paths, and its pid/ppid in the lines that carry them. `None`: this run prints no such line.
    pub fn localize(&self, from: &Identity, line: &str) -> Option<String> {
        let mut out = line.to_owned();
        if let Some(dir) = line.strip_prefix("Current directory is ") {
            out = out.replace(dir, &self.cwd);
        }
        for (recorded, ours) in [(&from.log, &self.log), (&from.pidfile, &self.pidfile)] {
            let Some(recorded) = recorded.as_deref().filter(|r| !r.is_empty()) else {
                continue;
            };
            if out.contains(recorded) {
                out = out.replace(recorded, ours.as_deref()?);
            }
        }
        let with_pid = [
            "PID is ",
            "kill -",
            "Writing my PID ",
            "Exiting with ",
            "Got a s",
            "Ended by",
        ];
        if with_pid.iter().any(|p| line.starts_with(p)) {
            out = replace_number(&out, &from.pid, &self.pid);
            out = replace_number(&out, &from.ppid, &self.ppid);
        }
        Some(out)
    }

    /// [`Identity::localize`], plus this run's hosts and users where a recorded line names the
    /// recorded ones (`Disconnecting from host2 H user2 U`, `reconnected to host1 imap server H`).
    /// The side is the `host1`/`host2` word the line names: both recorded hosts may be equal.
    pub fn localize_endpoints(&self, from: &Identity, line: &str) -> Option<String> {
        let line = self.localize(from, line)?;
        let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let side = words.iter().find_map(|w| match w.as_str() {
            "host1" => Some(0),
            "host2" => Some(1),
            _ => None,
        });
        let Some(side) = side else {
            return Some(line);
        };
        let user_label = ["user1", "user2"][side];
        let mut after_user_label = false;
        for w in &mut words {
            if std::mem::take(&mut after_user_label) && *w == from.users[side] {
                *w = self.users[side].clone();
            } else if *w == from.hosts[side] && !from.hosts[side].is_empty() {
                *w = self.hosts[side].clone();
            }
            after_user_label = w == user_label;
        }
        Some(words.join(" "))
    }
}

/// The captures a run may borrow passages from, loaded when first needed.
pub struct Library {
    dir: PathBuf,
}

impl Library {
    pub fn new(dir: &Path) -> Library {
        Library {
            dir: dir.to_owned(),
        }
    }

    pub fn load(&self, id: &str) -> Result<Fixture, String> {
        Fixture::load(&self.dir, id)
    }

    /// `imapsync --version`'s recorded output.
    pub fn version(&self) -> Result<Vec<u8>, String> {
        let path = self.dir.join("imapsync_version.stdout.txt");
        fs::read(&path).map_err(|e| format!("imapsync-standin: {}: {e}", path.display()))
    }

    /// Fixture h's ending, from `Got a signal TERM` to its last line, and who recorded it.
    pub fn term_ending(&self) -> Result<(Identity, Vec<String>), String> {
        let h = self.load("h")?;
        Ok((h.who.clone(), h.passage("Got a signal TERM", None)?))
    }

    /// Fixture m's answer to one INT: the signal notice up to the reconnection of both servers.
    pub fn int_reconnection(&self) -> Result<(Identity, Vec<String>), String> {
        let m = self.load("m")?;
        let lines = m.passage("Got a signal INT", Some("Info: reconnected to both"))?;
        Ok((m.who.clone(), lines))
    }

    /// The first line starting with `prefix` in fixture `id`.
    pub fn line(&self, id: &str, prefix: &str) -> Result<String, String> {
        let f = self.load(id)?;
        let line = f.line(prefix).map(str::to_owned);
        line.ok_or(format!(
            "imapsync-standin: fixture {id} has no {prefix:?} line"
        ))
    }
}

/// Replace the occurrences of the number `from` in `s` that are not part of a longer number.
pub fn replace_number(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return s.to_owned();
    }
    let (mut out, mut last) = (String::with_capacity(s.len()), 0);
    for (i, _) in s.match_indices(from) {
        let before = s[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit());
        let after = s[i + from.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        if !before && !after {
            out.push_str(&s[last..i]);
            out.push_str(to);
            last = i + from.len();
        }
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imapsync");

    fn us() -> Identity {
        Identity {
            pid: "42".into(),
            ppid: "7".into(),
            log: Some("/var/log/pymap/job-9.log".into()),
            pidfile: Some("/run/pymap/job-9.pid".into()),
            cwd: "/work".into(),
            hosts: ["old.example".into(), "new.example".into()],
            users: ["alice".into(), "bob".into()],
        }
    }

    #[test]
    fn recorded_identities() {
        let lib = Library::new(Path::new(FIXTURES));
        let h = lib.load("h").unwrap();
        assert_eq!((h.who.pid.as_str(), h.who.ppid.as_str()), ("16611", "8518"));
        assert_eq!(h.who.pidfile.as_deref(), Some("/tmp/imapsync.pid"));
        assert!(h.who.log.as_deref().unwrap().starts_with("LOG_imapsync/"));
        assert_eq!(h.who.hosts, ["127.0.0.1", "127.0.0.1"]);
        assert_eq!(h.who.users, ["user1", "user3"]);
        assert_eq!(h.who.cwd, "/srv/runs/h");
        // Docker context: no pid file, no log.
        let l = lib.load("l").unwrap();
        assert_eq!(
            (l.who.pidfile.as_deref(), l.who.log.as_deref()),
            (None, None)
        );
        assert_eq!(lib.version().unwrap(), b"2.229\n");
    }

    #[test]
    fn passages_come_from_the_captures() {
        let lib = Library::new(Path::new(FIXTURES));
        let h = lib.load("h").unwrap();
        let (who, ending) = lib.term_ending().unwrap();
        assert_eq!(who, h.who);
        assert_eq!(ending[0], "", "imapsync prints a blank line first");
        assert!(ending[1].starts_with("Got a signal TERM"));
        assert!(ending.last().unwrap().starts_with("Log file is "));
        // Every line of the passage is a line of the capture, in order.
        let at = h.stdout.len() - ending.len();
        assert_eq!(h.stdout[at..], ending[..]);
        let (_, int) = lib.int_reconnection().unwrap();
        assert_eq!(
            (int[1].as_str(), int.last().unwrap().as_str()),
            (
                "Got a signal INT (my PID is 20348 my PPID is 8518)",
                "Info: reconnected to both imap servers"
            )
        );
        assert!(lib.load("zz").unwrap_err().contains("no fixture \"zz\""));
    }

    #[test]
    fn localize_swaps_pid_paths_hosts_and_users_by_position() {
        let lib = Library::new(Path::new(FIXTURES));
        let (h, ending) = lib.term_ending().unwrap();
        let ours = us();
        let out: Vec<String> = ending
            .iter()
            .filter_map(|l| ours.localize_endpoints(&h, l))
            .collect();
        assert!(out.contains(&"Disconnecting from host1 old.example user1 alice".to_owned()));
        assert!(out.contains(&"Disconnecting from host2 new.example user2 bob".to_owned()));
        assert!(out.contains(&"Removing pidfile /run/pymap/job-9.pid".to_owned()));
        assert!(out[1].starts_with("Got a signal TERM (my PID is 42 my PPID is 7)"));
        let exiting = out.iter().find(|l| l.starts_with("Exiting with")).unwrap();
        assert!(exiting.ends_with(" PID 42"), "{exiting}");
        assert!(
            out.last()
                .unwrap()
                .starts_with("Log file is /var/log/pymap/job-9.log ( to")
        );
        assert!(
            out.iter()
                .all(|l| !l.contains("16611") && !l.contains("127.0.0.1"))
        );
        // Both recorded hosts are 127.0.0.1: the side comes from the line's host1/host2 word.
        let (m, int) = lib.int_reconnection().unwrap();
        let int: Vec<String> = int
            .iter()
            .filter_map(|l| ours.localize_endpoints(&m, l))
            .collect();
        assert!(int.contains(&"Info: reconnected to host1 imap server old.example".to_owned()));
        assert!(int.contains(&"Info: reconnected to host2 imap server new.example".to_owned()));
        // A run without a pid file prints no line naming the recorded one.
        let none = Identity {
            pidfile: None,
            ..us()
        };
        assert_eq!(
            none.localize(&h, "Removing pidfile /tmp/imapsync.pid"),
            None
        );
    }

    #[test]
    fn numbers_are_replaced_whole() {
        assert_eq!(
            replace_number("PID 8793 {87930} 8793", "8793", "42"),
            "PID 42 {87930} 42"
        );
        assert_eq!(replace_number("x18793", "8793", "42"), "x18793");
    }
}
