//! `USER` resolution: the string and the container's `/etc/passwd` and `/etc/group` text in,
//! numeric ids, supplementary groups and home directory out (Docker's rules: a name must
//! exist in passwd; a number need not; `user:group` takes the group from group/number; the
//! supplementary groups are those listing the user by name).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// An id that is not a number: the entry is refused, never read as 0 (root), as runc.
    #[error("the {file} entry of {name:?} has an invalid id {id:?}")]
    BadId {
        file: &'static str,
        name: String,
        id: String,
    },
    /// A numeric user or group above 2^31 - 1.
    #[error("the id {0} is out of range (at most 2147483647)")]
    OutOfRange(String),
}

/// The largest id taken: 2^31 - 1, as runc. 4294967295 is -1 to `setresuid` ("leave it as
/// it is", so root would stay root), and the kernel refuses larger ones.
pub const MAX_ID: u32 = i32::MAX as u32;

fn id(file: &'static str, name: &str, text: &str) -> Result<u32, UserError> {
    text.parse()
        .ok()
        .filter(|n| *n <= MAX_ID)
        .ok_or_else(|| UserError::BadId {
            file,
            name: name.to_owned(),
            id: text.to_owned(),
        })
}

/// A number given for a user or a group: `None` when it is none, an error when it is out of
/// range.
fn number(text: &str) -> Result<Option<u32>, UserError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n)),
        _ => Err(UserError::OutOfRange(text.to_owned())),
    }
}

/// Whether resolving `spec` can do without `/etc/passwd` and `/etc/group`: its user (and its
/// group, when it names one) is a number. Without the files such a user gets what a number
/// the image does not list gets (group 0 unless one is given, home `/`).
pub fn is_numeric(spec: &str) -> bool {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    (user.is_empty() || numeric(user)) && grp.is_none_or(numeric)
}

pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user);
    let by_id = number(user)?;
    let entry =
        by_name.or_else(|| by_id.and_then(|id| entries.iter().find(|f| f[2].parse() == Ok(id))));
    let (uid, mut gid, name, home) = match (entry, by_id) {
        (Some(f), _) if by_name.is_some() || by_id.is_some() => (
            id("/etc/passwd", f[0], f[2])?,
            id("/etc/passwd", f[0], f[3])?,
            Some(f[0].to_owned()),
            f[5].to_owned(),
        ),
        // A uid the image does not list runs with group 0, as Docker and runc.
        (None, Some(id)) => (id, 0, None, "/".to_owned()),
        _ => return Err(UserError::NoUser(user.to_owned())),
    };
    let groups_table: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    if let Some(g) = grp {
        gid = match groups_table.iter().find(|f| f[0] == g) {
            Some(f) => id("/etc/group", f[0], f[2])?,
            None => number(g)?.ok_or_else(|| UserError::NoGroup(g.to_owned()))?,
        };
    }
    // Supplementary groups as runc's GetExecUser gives them: the groups of /etc/group that
    // list the user by name, and only when no group was named; never the primary group
    // itself (so `id` in a container prints what it prints under Docker).
    let mut groups = Vec::new();
    if let (Some(name), None) = (&name, grp) {
        for f in &groups_table {
            if f[3].split(',').any(|m| m == name)
                && let Ok(id) = f[2].parse::<u32>()
                && id <= MAX_ID
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nstaff:x:50:\n";

    #[test]
    fn an_id_that_is_not_a_number_is_refused_never_root() {
        let passwd = "app:x:99999999999:1000::/home/app:/bin/sh\nb:x:5:x1::/:/bin/sh\n";
        let group = "g:x:abc:\n";
        for (spec, file) in [
            ("app", "/etc/passwd"),
            ("b", "/etc/passwd"),
            ("0:g", "/etc/group"),
        ] {
            match resolve(spec, passwd, group) {
                Err(UserError::BadId { file: f, .. }) => assert_eq!(f, file, "{spec}"),
                other => panic!("{spec}: {other:?}"),
            }
        }
    }

    /// 4294967295 is -1 to `setresuid`/`setresgid` ("no change"): taken, it would leave
    /// the process root. Refused as a number, in passwd and in group.
    #[test]
    fn ids_above_2_to_the_31_are_refused() {
        for spec in ["4294967295", "2147483648", "0:4294967295", "99999999999"] {
            assert!(
                matches!(resolve(spec, PASSWD, GROUP), Err(UserError::OutOfRange(_))),
                "{spec}"
            );
        }
        let passwd = "big:x:4294967295:0::/:/bin/sh\nbg:x:5:4294967295::/:/bin/sh\n";
        let group = "neg:x:4294967295:\n";
        for spec in ["big", "bg", "0:neg"] {
            assert!(
                matches!(resolve(spec, passwd, group), Err(UserError::BadId { .. })),
                "{spec}"
            );
        }
        assert_eq!(resolve("2147483647", "", "").unwrap().uid, 2147483647);
    }

    #[test]
    fn numeric_users_need_no_files() {
        for spec in ["", "0", "0:0", "1000:50", ":0"] {
            assert!(is_numeric(spec), "{spec}");
        }
        for spec in ["app", "0:wheel", "app:0", "1x"] {
            assert!(!is_numeric(spec), "{spec}");
        }
    }

    #[test]
    fn resolves_names_ids_and_groups() {
        assert_eq!(
            resolve("", PASSWD, GROUP).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups, app.home.as_str()),
            (1000, 1000, vec![10], "/home/app")
        );
        let staff = resolve("1000:staff", PASSWD, GROUP).unwrap();
        assert_eq!(
            (staff.gid, staff.groups),
            (50, vec![]),
            "a named group: no others"
        );
        let nobody = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((nobody.uid, nobody.gid), (4242, 4343));
        let unlisted = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!(
            (unlisted.uid, unlisted.gid, unlisted.groups),
            (4242, 0, vec![])
        );
        assert_eq!(
            resolve("ghost", PASSWD, GROUP),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(UserError::NoGroup("ghosts".into()))
        );
    }
}
