//! What the prune commands share: Docker's `--filter until=…`/`label=…` for prune, the
//! confirmation prompt, and removing stopped containers and unused images (`container
//! prune`, `image prune` and `system prune` are these, combined).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read};
use std::time::{Duration, SystemTime};

use berth_store::Store;
use berth_store::containers::ContainerRecord;

use crate::UsageError;

/// Docker's prune filters. `until`: only what was created before that time. `label=K` /
/// `label=K=V`: only what carries one of those labels; `label!=K` / `label!=K=V`: only
/// what carries none of those. Different keys must all hold; values of one key are
/// alternatives, as Docker's reference says.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub until: Option<SystemTime>,
    pub labels: Vec<(String, Option<String>)>,
    pub not_labels: Vec<(String, Option<String>)>,
}

impl Filters {
    /// Parses `--filter` values; `allowed` names the keys this command takes.
    pub fn parse(values: &[String], allowed: &[&str]) -> Result<Filters, UsageError> {
        let mut f = Filters::default();
        for v in values {
            let (key, value, negated) = if let Some((k, rest)) = v.split_once("!=") {
                (k, rest, true)
            } else if let Some((k, rest)) = v.split_once('=') {
                (k, rest, false)
            } else {
                return Err(UsageError(format!(
                    "--filter {v:?}: expected KEY=VALUE (keys: {})",
                    allowed.join(", ")
                )));
            };
            let key = key.trim().to_ascii_lowercase();
            let name = if negated {
                format!("{key}!")
            } else {
                key.clone()
            };
            if !allowed.contains(&name.as_str()) {
                return Err(UsageError(format!(
                    "--filter {v:?}: invalid filter {name:?} (this command takes {})",
                    allowed.join(", ")
                )));
            }
            match (key.as_str(), negated) {
                ("until", false) => {
                    if f.until.is_some() {
                        return Err(UsageError(format!("--filter {v:?}: give until only once")));
                    }
                    f.until = Some(
                        parse_until(value, SystemTime::now())
                            .map_err(|e| UsageError(format!("--filter {v:?}: {e}")))?,
                    );
                }
                ("label", _) => {
                    if value.is_empty() {
                        return Err(UsageError(format!("--filter {v:?}: a label key is needed")));
                    }
                    let kv = match value.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (value.to_owned(), None),
                    };
                    if negated {
                        f.not_labels.push(kv);
                    } else {
                        f.labels.push(kv);
                    }
                }
                _ => unreachable!("checked against `allowed`"),
            }
        }
        Ok(f)
    }

    /// Whether something created at `created` (RFC 3339; `None` when unknown) with
    /// `labels` is to be removed. What has no known creation time is kept under `until`.
    pub fn matches(&self, created: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        if let Some(until) = self.until {
            let Some(t) = created.and_then(parse_time) else {
                return false;
            };
            if t >= until {
                return false;
            }
        }
        let has = |(k, v): &(String, Option<String>)| match (labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        };
        if !self.labels.is_empty() && !self.labels.iter().any(has) {
            return false;
        }
        if !self.not_labels.is_empty() && self.not_labels.iter().all(has) {
            return false;
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_none() && self.labels.is_empty() && self.not_labels.is_empty()
    }
}

/// `until`'s value as Docker reads it: a duration before `now` (`24h`, `1h30m`), Unix
/// seconds (`1700000000`, `1700000000.5`), or a date and time (RFC 3339, `2006-01-02T15:04:05`,
/// `2006-01-02T15:04`, `2006-01-02`; without a zone, UTC).
pub fn parse_until(value: &str, now: SystemTime) -> Result<SystemTime, String> {
    let value = value.trim();
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    if let Some((secs, nanos)) = value
        .split_once('.')
        .map(|(s, n)| (s, Some(n)))
        .or(Some((value, None)))
        && !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && nanos.is_none_or(|n| n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let s: u64 = secs.parse().map_err(|_| format!("{value:?}: too large"))?;
        let n: u32 = nanos
            .map(|n| format!("{n:0<9}").parse().unwrap_or(0))
            .unwrap_or(0);
        return Ok(SystemTime::UNIX_EPOCH + Duration::new(s, n));
    }
    let candidates = [
        value.to_owned(),
        format!("{value}:00"),
        format!("{value}T00:00:00"),
    ];
    for c in &candidates {
        if let Ok(t) = humantime::parse_rfc3339_weak(c) {
            return Ok(t);
        }
    }
    // With a zone offset: RFC 3339 proper.
    if let Ok(t) = parse_rfc3339_offset(value) {
        return Ok(t);
    }
    Err(format!(
        "{value:?} is not a duration (24h, 90m), Unix time or date (2006-01-02T15:04:05Z)"
    ))
}

/// An RFC 3339 time, with `Z` or an offset.
fn parse_time(t: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .or_else(|| parse_rfc3339_offset(t).ok())
}

/// `…±HH:MM` at the end of an RFC 3339 time (humantime takes only `Z`).
fn parse_rfc3339_offset(value: &str) -> Result<SystemTime, ()> {
    if value.len() < 6 {
        return Err(());
    }
    let (time, zone) = value.split_at(value.len() - 6);
    let sign = match zone.as_bytes()[0] {
        b'+' => 1i64,
        b'-' => -1,
        _ => return Err(()),
    };
    let (h, m) = zone[1..].split_once(':').ok_or(())?;
    let offset =
        sign * (h.parse::<i64>().map_err(|_| ())? * 3600 + m.parse::<i64>().map_err(|_| ())? * 60);
    let t = humantime::parse_rfc3339_weak(time).map_err(|_| ())?;
    if offset >= 0 {
        t.checked_sub(Duration::from_secs(offset as u64)).ok_or(())
    } else {
        t.checked_add(Duration::from_secs((-offset) as u64))
            .ok_or(())
    }
}

/// Docker's confirmation: prints `warning` and `Are you sure you want to continue? [y/N] `
/// on stdout and reads one line from stdin, whatever stdin is; only `y`, `Y` or `yes`
/// goes on (an empty or closed stdin is a no). `true` straight away with `force`.
pub fn confirm(warning: &str, force: bool) -> anyhow::Result<bool> {
    if force {
        return Ok(true);
    }
    crate::stdio::print_out(format_args!(
        "{warning}\nAre you sure you want to continue? [y/N] "
    ));
    let mut answer = String::new();
    // Bounded: one short answer is all that is read.
    std::io::stdin()
        .lock()
        .take(1024)
        .read_line(&mut answer)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    // The answer's line ended the prompt's; a closed stdin left it open.
    if !yes && !answer.ends_with('\n') {
        outln!();
    }
    Ok(yes)
}

/// The labels a container carries: its image's (berth's `run` adds none of its own).
fn container_labels(store: &Store, r: &ContainerRecord) -> BTreeMap<String, String> {
    store
        .image_by_manifest(&r.image)
        .ok()
        .and_then(|i| i.config.config.labels)
        .unwrap_or_default()
}

/// Removes the stopped containers `filters` select; their IDs and the bytes their
/// directories held.
pub fn prune_containers(store: &Store, filters: &Filters) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for r in store.container_records()? {
        // A running container is never pruned.
        if crate::containers::alive(&r) {
            continue;
        }
        if !filters.matches(Some(&r.created), &container_labels(store, &r)) {
            continue;
        }
        let dir = store.container_dir(&r.id)?;
        bytes += berth_store::volumes::tree_size(&dir);
        store.remove_container(&r.id)?;
        removed.push(r.id);
    }
    Ok((removed, bytes))
}

/// What [`prune_images`] removed: names untagged and images (IDs) no longer listed.
#[derive(Default)]
pub struct ImagesPruned {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

/// Removes the dangling images (`<none>`: no name) `filters` select, or with `all` every
/// image no container uses: names are untagged, unnamed entries dropped. Blobs and
/// snapshots go in the gc the caller runs after.
pub fn prune_images(store: &Store, all: bool, filters: &Filters) -> anyhow::Result<ImagesPruned> {
    let used: HashSet<_> = store
        .container_records()?
        .into_iter()
        .map(|c| c.image)
        .collect();
    let roots = store.roots()?;
    let mut out = ImagesPruned::default();
    let mut seen = HashSet::new();
    for (_, root) in &roots {
        if !seen.insert(root.digest.clone()) || used.contains(&root.digest) {
            continue;
        }
        let names: Vec<_> = roots
            .iter()
            .filter(|(n, d)| n.is_some() && d.digest == root.digest)
            .filter_map(|(n, _)| n.clone())
            .collect();
        if !all && !names.is_empty() {
            continue;
        }
        // An image that does not read (written by another tool) is kept when a filter must
        // look at it, and shown by its manifest digest.
        let image = store.load_image(root).ok();
        if !filters.is_empty() {
            let Some(image) = &image else { continue };
            let labels = image.config.config.labels.clone().unwrap_or_default();
            if !filters.matches(image.config.created.as_deref(), &labels) {
                continue;
            }
        }
        for name in &names {
            if store.remove_tag(name)? {
                out.untagged.push(name.familiar());
            }
        }
        store.remove_unnamed(&root.digest)?;
        out.deleted.push(
            image
                .as_ref()
                .map_or(root.digest.to_string(), |i| i.id().to_string()),
        );
    }
    Ok(out)
}

/// Prints what an image prune removed, in Docker's shape.
pub fn print_images(pruned: &ImagesPruned) {
    if pruned.untagged.is_empty() && pruned.deleted.is_empty() {
        return;
    }
    outln!("Deleted Images:");
    for t in &pruned.untagged {
        outln!("untagged: {t}");
    }
    for d in &pruned.deleted {
        outln!("deleted: {d}");
    }
    outln!();
}

/// Prints `Deleted Containers:` and the IDs, in Docker's shape.
pub fn print_containers(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    outln!("Deleted Containers:");
    for id in ids {
        outln!("{id}");
    }
    outln!();
}

/// Removes the volumes no container uses that `filters` select: with `all` every one,
/// else only anonymous ones. Their names and the bytes they held.
pub fn prune_volumes(
    store: &Store,
    all: bool,
    filters: &Filters,
) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for v in store.volumes()? {
        if !(all || v.anonymous()) || !filters.matches(Some(&v.created), &v.labels) {
            continue;
        }
        if let berth_store::volumes::VolumeRemoval::Removed { bytes: b } =
            store.remove_volume(&v.name)?
        {
            bytes += b;
            removed.push(v.name);
        }
    }
    Ok((removed, bytes))
}

/// Prints `Deleted Volumes:` and the names, in Docker's shape.
pub fn print_volumes(names: &[String]) {
    if names.is_empty() {
        return;
    }
    outln!("Deleted Volumes:");
    for n in names {
        outln!("{n}");
    }
    outln!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[&str]) -> Filters {
        Filters::parse(
            &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["until", "label", "label!"],
        )
        .unwrap()
    }

    #[test]
    fn until_reads_durations_unix_times_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_until("24h", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - 86400)
        );
        assert_eq!(
            parse_until("1h30m", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - 5400)
        );
        assert_eq!(
            parse_until("1700000000.5", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000)
        );
        let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_136_160_000);
        assert_eq!(parse_until("2006-01-02", now).unwrap(), day);
        assert_eq!(parse_until("2006-01-02T00:00:00Z", now).unwrap(), day);
        assert_eq!(parse_until("2006-01-02T00:00", now).unwrap(), day);
        assert_eq!(parse_until("2006-01-02T01:00:00+01:00", now).unwrap(), day);
        assert!(parse_until("soon", now).is_err());
        assert!(parse_until("", now).is_err());
    }

    #[test]
    fn labels_and_until_combine_as_docker_says() {
        let labels: BTreeMap<String, String> =
            [("a".to_owned(), "1".to_owned())].into_iter().collect();
        let none = BTreeMap::new();
        let old = Some("2000-01-01T00:00:00Z");
        assert!(f(&[]).matches(None, &none));
        assert!(f(&["label=a"]).matches(old, &labels));
        assert!(f(&["label=a=1"]).matches(old, &labels));
        assert!(!f(&["label=a=2"]).matches(old, &labels));
        assert!(f(&["label=a=2", "label=a=1"]).matches(old, &labels));
        assert!(!f(&["label=b"]).matches(old, &labels));
        assert!(f(&["label!=b"]).matches(old, &labels));
        assert!(!f(&["label!=a"]).matches(old, &labels));
        assert!(f(&["until=1h"]).matches(old, &labels));
        assert!(!f(&["until=1h"]).matches(None, &labels));
        assert!(!f(&["until=2000-01-01"]).matches(old, &labels));
        assert!(!f(&["until=1h", "label=b"]).matches(old, &labels));
        assert!(Filters::parse(&["dangling=true".into()], &["until"]).is_err());
        assert!(Filters::parse(&["until".into()], &["until"]).is_err());
        assert!(Filters::parse(&["label=x".into()], &["until"]).is_err());
    }
}
