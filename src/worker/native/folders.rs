//! Folders: listing each side (namespace prefix, delimiter, attributes, subscriptions) and
//! mapping source folders to destination names.
//!
//! A name is reduced to its path components below the personal namespace prefix and rebuilt
//! with the destination's prefix and delimiter, so `Projects/2024/Q1` on a `/` server becomes
//! `Projects.2024.Q1` on a `.` server (a component that contains the destination's delimiter
//! gets `_` in its place, as it cannot be represented). Names are handled in UTF-8 and
//! encoded to modified UTF-7 on the wire. Special-use folders (RFC 6154) go to the
//! destination's folder with the same role when it has one; virtual ones (`\All`,
//! `\Flagged`: Gmail's All Mail and Starred) are skipped, as copying them would duplicate
//! every message. The engine and the verifier share this mapping, so they agree on what
//! should be where.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use super::{
    NativeError,
    conn::{Arg, Conn},
    utf7,
    wire::{Resp, Value},
};
use crate::service::hosts::Provider;

/// Special-use roles mapped between servers, with the name used when the destination has
/// no folder with that role yet and the source is a provider with its own names.
const ROLES: [(&str, &str); 5] = [
    ("\\sent", "Sent"),
    ("\\drafts", "Drafts"),
    ("\\trash", "Trash"),
    ("\\junk", "Junk"),
    ("\\archive", "Archive"),
];
/// Virtual folders (views of other folders' messages).
const VIRTUAL: [&str; 3] = ["\\all", "\\flagged", "\\important"];

#[derive(Clone, Debug)]
pub struct Folder {
    /// The name in UTF-8, as on the server (prefix and delimiter included).
    pub name: String,
    /// Lower-cased attributes (`\noselect`, `\sent`...).
    pub attrs: Vec<String>,
}

impl Folder {
    pub fn selectable(&self) -> bool {
        !self
            .attrs
            .iter()
            .any(|a| a == "\\noselect" || a == "\\nonexistent")
    }

    fn role(&self) -> Option<&'static str> {
        ROLES
            .iter()
            .find(|(r, _)| self.attrs.iter().any(|a| a == r))
            .map(|(r, _)| *r)
    }

    fn is_virtual(&self) -> bool {
        self.attrs.iter().any(|a| VIRTUAL.contains(&a.as_str()))
    }
}

/// One side's folders.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub folders: Vec<Folder>,
    pub delim: Option<char>,
    /// Personal namespace prefix (`""`, `INBOX.`).
    pub prefix: String,
    pub subscribed: HashSet<String>,
}

impl Listing {
    pub fn get(&self, name: &str) -> Option<&Folder> {
        self.folders.iter().find(|f| f.name == name)
    }

    /// Path components below the personal prefix; INBOX is always `["INBOX"]`.
    fn components(&self, name: &str) -> Vec<String> {
        if name.eq_ignore_ascii_case("INBOX") {
            return vec!["INBOX".into()];
        }
        let rest = name.strip_prefix(self.prefix.as_str()).unwrap_or(name);
        match self.delim {
            Some(d) => rest.split(d).map(str::to_owned).collect(),
            None => vec![rest.to_owned()],
        }
    }

    /// The name for `components` on this side.
    fn name_for(&self, components: &[String]) -> String {
        if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        let mut comps: &[String] = components;
        // `INBOX/x` into an `INBOX.` namespace is `INBOX.x`, not `INBOX.INBOX.x`.
        let prefix_is_inbox = self
            .prefix
            .trim_end_matches(|c| Some(c) == self.delim)
            .eq_ignore_ascii_case("INBOX");
        if prefix_is_inbox && comps.len() > 1 && comps[0].eq_ignore_ascii_case("INBOX") {
            comps = &comps[1..];
        }
        let delim = self.delim.unwrap_or('/');
        let joined: Vec<String> = comps.iter().map(|c| c.replace(delim, "_")).collect();
        format!("{}{}", self.prefix, joined.join(&delim.to_string()))
    }

    /// Is `name` in the personal namespace (not shared/public)?
    fn personal(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("INBOX") || name.starts_with(self.prefix.as_str())
    }
}

/// Lists one side: NAMESPACE (when offered), LIST and LSUB.
pub async fn list(conn: &mut Conn) -> Result<Listing, NativeError> {
    let mut listing = Listing::default();
    if conn.has("NAMESPACE") {
        let data = conn.run_ok("NAMESPACE", &[Arg::Raw(b"NAMESPACE")]).await?;
        for r in data {
            if let Resp::Data { name, values, .. } = r
                && name == "NAMESPACE"
                && let Some(first) = values.first().and_then(Value::list).and_then(|l| l.first())
                && let Some(pair) = first.list()
            {
                listing.prefix = pair.first().and_then(Value::text).unwrap_or_default();
                listing.prefix = utf7::decode(&listing.prefix).unwrap_or(listing.prefix);
                listing.delim = pair
                    .get(1)
                    .and_then(Value::text)
                    .and_then(|d| d.chars().next());
            }
        }
    }
    let data = conn.run_ok("LIST", &[Arg::Raw(b"LIST \"\" \"*\"")]).await?;
    for r in data {
        if let Some((name, delim, attrs)) = list_entry(&r, "LIST") {
            listing.delim = listing.delim.or(delim);
            if listing.personal(&name) {
                listing.folders.push(Folder { name, attrs });
            }
        }
    }
    let data = conn.run_ok("LSUB", &[Arg::Raw(b"LSUB \"\" \"*\"")]).await?;
    for r in data {
        if let Some((name, _, _)) = list_entry(&r, "LSUB") {
            listing.subscribed.insert(name);
        }
    }
    listing.folders.sort_by(|a, b| a.name.cmp(&b.name));
    listing.folders.dedup_by(|a, b| a.name == b.name);
    Ok(listing)
}

/// `* LIST (attrs) "delim" name` → (UTF-8 name, delimiter, lower-cased attributes).
fn list_entry(r: &Resp, want: &str) -> Option<(String, Option<char>, Vec<String>)> {
    let Resp::Data { name, values, .. } = r else {
        return None;
    };
    if name != want || values.len() < 3 {
        return None;
    }
    let attrs = values[0]
        .list()?
        .iter()
        .filter_map(Value::text)
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let delim = values[1].text().and_then(|d| d.chars().next());
    let raw = String::from_utf8_lossy(values[2].bytes()?).into_owned();
    // Servers that send raw UTF-8 (not valid modified UTF-7) keep their name as is.
    let name = utf7::decode(&raw).unwrap_or(raw);
    let name = if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name
    };
    Some((name, delim, attrs))
}

/// Which source folders to copy: imapsync's `--include`/`--exclude`, matched against the
/// source name in UTF-8 with the source's delimiter.
#[derive(Clone, Debug, Default)]
pub struct FolderFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl FolderFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let compile = |list: &[String]| {
            list.iter()
                .map(|r| Regex::new(r).map_err(|e| format!("folder regex {r:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    pub fn wants(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(name)))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }
}

/// One source folder and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub src: String,
    pub dst: String,
    pub exists_on_dst: bool,
    pub subscribed: bool,
    /// Path depth, for creating parents first.
    pub depth: usize,
}

#[derive(Clone, Debug, Default)]
pub struct FolderPlan {
    /// In creation order: parents before children.
    pub folders: Vec<Mapping>,
    /// Source folders left out, with the reason (for the log).
    pub skipped: Vec<(String, &'static str)>,
    /// Destination names to subscribe to (subscribed on host1, not yet on host2).
    pub subscribe: Vec<String>,
    /// Selectable destination folders that no source folder maps to (and that the filters
    /// would not have excluded).
    pub extra_on_dst: Vec<String>,
    /// Destination subscriptions that host1 does not have (among mapped folders).
    pub extra_subscriptions: Vec<String>,
}

pub fn plan(
    src: &Listing,
    dst: &Listing,
    filter: &FolderFilter,
    provider1: Provider,
) -> FolderPlan {
    let mut plan = FolderPlan::default();
    let mut wanted = Vec::new();
    for f in &src.folders {
        if !f.selectable() {
            plan.skipped
                .push((f.name.clone(), "not selectable (\\Noselect)"));
        } else if f.is_virtual() {
            plan.skipped.push((
                f.name.clone(),
                "virtual folder (\\All or \\Flagged): its messages are in other folders",
            ));
        } else if !filter.wants(&f.name) {
            plan.skipped
                .push((f.name.clone(), "excluded by the folder filters"));
        } else {
            wanted.push(f);
        }
    }
    let plain: HashMap<&str, String> = wanted
        .iter()
        .map(|f| (f.name.as_str(), dst.name_for(&src.components(&f.name))))
        .collect();
    let plain_targets: HashSet<&String> = plain.values().collect();
    let provider_names = matches!(provider1, Provider::Gmail | Provider::Office365);
    for f in &wanted {
        let mut target = plain[f.name.as_str()].clone();
        if let Some(role) = f.role() {
            let by_role = dst
                .folders
                .iter()
                .find(|d| d.selectable() && d.attrs.iter().any(|a| a == role))
                .map(|d| d.name.clone())
                .or_else(|| {
                    let std = ROLES.iter().find(|(r, _)| *r == role).map(|(_, n)| *n)?;
                    provider_names.then(|| dst.name_for(&[std.to_owned()]))
                });
            // Never merge two source folders into one: a plain name wins.
            if let Some(t) = by_role.filter(|t| *t == target || !plain_targets.contains(t)) {
                target = t;
            }
        }
        let comps = dst.components(&target);
        plan.folders.push(Mapping {
            exists_on_dst: dst.get(&target).is_some_and(Folder::selectable),
            subscribed: src.subscribed.contains(&f.name),
            src: f.name.clone(),
            dst: target,
            depth: comps.len(),
        });
    }
    plan.folders
        .sort_by(|a, b| (a.depth, &a.dst).cmp(&(b.depth, &b.dst)));
    // Two source folders can still meet when only the destination delimiter tells them
    // apart (`a.b` and `a/b` into a `.` server): keep the first, skip the others.
    let mut seen = HashSet::new();
    plan.folders.retain(|m| {
        let fresh = seen.insert(m.dst.clone());
        if !fresh {
            plan.skipped.push((
                m.src.clone(),
                "maps to the same destination folder as another one",
            ));
        }
        fresh
    });
    let targets: HashSet<&str> = plan.folders.iter().map(|m| m.dst.as_str()).collect();
    for m in &plan.folders {
        if m.subscribed && !dst.subscribed.contains(&m.dst) {
            plan.subscribe.push(m.dst.clone());
        }
        if !m.subscribed && dst.subscribed.contains(&m.dst) {
            plan.extra_subscriptions.push(m.dst.clone());
        }
    }
    for d in &dst.folders {
        if !d.selectable() || d.is_virtual() || targets.contains(d.name.as_str()) {
            continue;
        }
        // Would the filters have left it out had it been on the source?
        let as_src = src.name_for(&dst.components(&d.name));
        if filter.wants(&as_src) {
            plan.extra_on_dst.push(d.name.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(prefix: &str, delim: char, names: &[(&str, &[&str])], subs: &[&str]) -> Listing {
        Listing {
            folders: names
                .iter()
                .map(|(n, a)| Folder {
                    name: (*n).into(),
                    attrs: a.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            delim: Some(delim),
            prefix: prefix.into(),
            subscribed: subs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn targets(plan: &FolderPlan) -> Vec<(&str, &str)> {
        plan.folders
            .iter()
            .map(|m| (m.src.as_str(), m.dst.as_str()))
            .collect()
    }

    #[test]
    fn separators_prefixes_and_parents_first() {
        let src = listing(
            "",
            '/',
            &[
                ("INBOX", &[]),
                ("Projects/2024/Q1", &[]),
                ("Projects", &[]),
                ("Projects/2024", &[]),
                ("Données/Été 2023", &[]),
                ("a.b", &[]),
                ("Gone", &["\\noselect"]),
            ],
            &["INBOX", "Projects"],
        );
        let dst = listing("INBOX.", '.', &[("INBOX", &[])], &[]);
        let p = plan(&src, &dst, &FolderFilter::default(), Provider::Other);
        assert_eq!(
            targets(&p),
            [
                ("INBOX", "INBOX"),
                ("Projects", "INBOX.Projects"),
                ("a.b", "INBOX.a_b"),
                ("Données/Été 2023", "INBOX.Données.Été 2023"),
                ("Projects/2024", "INBOX.Projects.2024"),
                ("Projects/2024/Q1", "INBOX.Projects.2024.Q1"),
            ]
        );
        assert!(p.folders[0].exists_on_dst && !p.folders[1].exists_on_dst);
        assert_eq!(p.subscribe, ["INBOX", "INBOX.Projects"]);
        assert_eq!(p.skipped.len(), 1);
        // And back: `INBOX.x` loses the prefix, `INBOX` stays INBOX.
        let p = plan(&dst, &src, &FolderFilter::default(), Provider::Other);
        assert_eq!(targets(&p), [("INBOX", "INBOX")]);
        let back = listing("INBOX.", '.', &[("INBOX.Projects.2024", &[])], &[]);
        let p = plan(&back, &src, &FolderFilter::default(), Provider::Other);
        assert_eq!(targets(&p), [("INBOX.Projects.2024", "Projects/2024")]);
    }

    #[test]
    fn special_use_virtual_and_filters() {
        let src = listing(
            "",
            '/',
            &[
                ("INBOX", &[]),
                ("[Gmail]", &["\\noselect"]),
                ("[Gmail]/All Mail", &["\\all"]),
                ("[Gmail]/Sent Mail", &["\\sent"]),
                ("[Gmail]/Trash", &["\\trash"]),
                ("[Gmail]/Spam", &["\\junk"]),
                ("Trash", &[]),
                ("Private", &[]),
            ],
            &[],
        );
        let dst = listing("", '.', &[("INBOX", &[]), ("Sent Items", &["\\sent"])], &[]);
        let filter = FolderFilter::new(&[], &["^Priv".into()]).unwrap();
        let p = plan(&src, &dst, &filter, Provider::Gmail);
        assert_eq!(
            targets(&p),
            [
                ("INBOX", "INBOX"),
                ("[Gmail]/Spam", "Junk"),
                ("[Gmail]/Sent Mail", "Sent Items"),
                ("Trash", "Trash"),
                // "Trash" is taken by a plain folder: no merge.
                ("[Gmail]/Trash", "[Gmail].Trash"),
            ]
        );
        assert_eq!(p.skipped.len(), 3);
        assert_eq!(p.extra_on_dst, Vec::<String>::new());
        assert!(FolderFilter::new(&["(".into()], &[]).is_err());
    }

    #[test]
    fn extras_on_destination_respect_filters() {
        let src = listing("", '/', &[("INBOX", &[]), ("A", &[])], &["A"]);
        let dst = listing(
            "",
            '.',
            &[("INBOX", &[]), ("A", &[]), ("B", &[]), ("Skip", &[])],
            &["INBOX"],
        );
        let filter = FolderFilter::new(&[], &["^Skip$".into()]).unwrap();
        let p = plan(&src, &dst, &filter, Provider::Other);
        assert_eq!(p.extra_on_dst, ["B"]);
        assert_eq!(p.extra_subscriptions, ["INBOX"]);
        assert_eq!(p.subscribe, ["A"]);
    }
}
