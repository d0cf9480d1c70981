//! The stand-in's command line (imapsync style) and the settings that may ride in `--user1`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

/// imapsync options that take a value. Any other option takes one when the next word does not
/// start with `-` (unknown options are tolerated, so their arity is guessed).
const VALUED: &str = "host1 host2 port1 port2 user1 user2 passfile1 passfile2 password1 password2 \
    authuser1 authuser2 authmech1 authmech2 pidfile tmpdir logdir logfile timeout timeout1 \
    timeout2 folder include exclude regextrans2 maxage minage maxsize errorsmax subfolder1 subfolder2";

/// The parsed command line, in order; flags have no value.
#[derive(Debug, Default)]
pub struct Args {
    pub opts: Vec<(String, Option<String>)>,
}

impl Args {
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut it = raw.iter().peekable();
        while let Some(word) = it.next() {
            let opt = word.strip_prefix("--").or_else(|| word.strip_prefix('-'));
            let opt = opt.ok_or_else(|| format!("Unknown argument: {word}"))?;
            let (name, inline) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (opt, None),
            };
            if name == "password1" || name == "password2" {
                return Err(format!(
                    "Unknown option: {name}\nimapsync-standin: passwords must be given with \
                     --passfile1/--passfile2, never on the command line"
                ));
            }
            let valued = VALUED.split_whitespace().any(|v| v == name);
            let value = match inline {
                Some(v) => Some(v),
                None if valued || it.peek().is_some_and(|n| !n.starts_with('-')) => {
                    let missing = || format!("Option {name} requires an argument");
                    Some(it.next().ok_or_else(missing)?.clone())
                }
                None => None,
            };
            args.opts.push((name.to_owned(), value));
        }
        Ok(args)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.opts.iter().rev().find(|(n, _)| n == name);
        found.and_then(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }

    /// `--host1`/`--host2` and `--user1`/`--user2`, as given (empty when absent).
    pub fn endpoints(&self) -> ([String; 2], [String; 2]) {
        let get = |name: &str| self.get(name).unwrap_or("").to_owned();
        ([get("host1"), get("host2")], [get("user1"), get("user2")])
    }

    /// A pass file must exist, be readable and be mode 0600; without one, imapsync would prompt
    /// on a terminal, which pymap must never make it do.
    pub fn check_passwords(&self) -> Result<(), String> {
        for n in ["1", "2"] {
            let Some(path) = self.get(&format!("passfile{n}")) else {
                if std::env::var_os(format!("IMAPSYNC_PASSWORD{n}")).is_some() {
                    continue;
                }
                return Err(format!(
                    "Failure: no password for user{n}: use --passfile{n}"
                ));
            };
            let bad = |e: std::io::Error| format!("Failure: passfile{n} {path}: {e}");
            let meta = fs::metadata(path).map_err(bad)?;
            fs::read(path).map_err(bad)?;
            let mode = meta.permissions().mode() & 0o777;
            if !meta.is_file() || mode != 0o600 {
                return Err(format!(
                    "Failure: passfile{n} {path} must be mode 0600, not {mode:04o}"
                ));
            }
        }
        Ok(())
    }
}

/// What `--user1 standin-<id>+word+word@...` asks for (see the crate documentation).
#[derive(Debug, Default, PartialEq)]
pub struct UserSettings {
    pub scenario: String,
    pub speed: Option<f64>,
    pub repeat: Option<usize>,
    pub startup_ms: Option<u64>,
    pub hang: bool,
}

impl UserSettings {
    pub fn parse(user1: Option<&str>) -> Result<UserSettings, String> {
        let local = user1.unwrap_or("").split('@').next().unwrap_or("");
        let Some(rest) = local.strip_prefix("standin-") else {
            return Ok(UserSettings {
                scenario: "a".into(),
                ..UserSettings::default()
            });
        };
        let mut words = rest.split('+');
        let id = words.next().unwrap_or("");
        let mut s = UserSettings {
            scenario: if id.is_empty() { "a" } else { id }.to_owned(),
            ..UserSettings::default()
        };
        for word in words {
            let bad = || format!("imapsync-standin: bad setting {word:?} in user1 {local:?}");
            let num = |prefix: &str| word.strip_prefix(prefix).filter(|n| !n.is_empty());
            if word == "hang" {
                s.hang = true;
            } else if let Some(n) = num("speed") {
                s.speed = Some(n.parse().ok().filter(|x: &f64| *x >= 0.0).ok_or_else(bad)?);
            } else if let Some(n) = num("repeat") {
                s.repeat = Some(n.parse().map_err(|_| bad())?);
            } else if let Some(n) = num("startup") {
                s.startup_ms = Some(n.parse().map_err(|_| bad())?);
            } else {
                return Err(bad());
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<Args, String> {
        Args::parse(&words.split(' ').map(str::to_owned).collect::<Vec<_>>())
    }

    /// `standin-d@example.com` → `d`; anything else → `a`.
    fn scenario_from_user(user1: Option<&str>) -> String {
        UserSettings::parse(user1).map_or_else(|_| "a".to_owned(), |s| s.scenario)
    }

    #[test]
    fn argv() {
        let a =
            parse("--host1 h1 --port1=143 --nodockercontext --weird x --flag --user1 standin-c2@x")
                .unwrap();
        assert_eq!(
            (a.get("host1"), a.get("port1"), a.get("weird")),
            (Some("h1"), Some("143"), Some("x"))
        );
        assert!(a.has("nodockercontext") && a.has("flag") && a.get("flag").is_none());
        let (hosts, users) = a.endpoints();
        assert_eq!((hosts[0].as_str(), hosts[1].as_str()), ("h1", ""));
        assert_eq!(users[0], "standin-c2@x");
        assert_eq!(scenario_from_user(a.get("user1")), "c2");
        assert_eq!(scenario_from_user(Some("bob@x.org")), "a");
        assert_eq!(scenario_from_user(None), "a");
        let s = UserSettings::parse(Some("standin-h+speed2.5+repeat3+startup0+hang@x")).unwrap();
        let expected = UserSettings {
            scenario: "h".into(),
            speed: Some(2.5),
            repeat: Some(3),
            startup_ms: Some(0),
            hang: true,
        };
        assert_eq!(s, expected);
        assert_eq!(scenario_from_user(Some("standin-+speed9@x")), "a");
        for bad in [
            "standin-a+fast@x",
            "standin-a+speed@x",
            "standin-a+speed-1@x",
            "standin-a+repeatx",
        ] {
            assert!(UserSettings::parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(
            parse("--password1 s")
                .unwrap_err()
                .starts_with("Unknown option: password1\n")
        );
        assert!(parse("--password2=s").is_err());
        assert!(parse("--logfile").is_err());
        assert!(parse("stray").is_err());
    }
}
