//! Dropping privileges before the command runs: the container's user and capabilities in, a
//! process that can no longer undo them out. Every call goes through [`Sys`], so the order, on
//! which the security of the result depends, is unit-tested without root:
//!
//! 1. the seccomp filter, while CAP_SYS_ADMIN is still held (installed without
//!    `no_new_privs`, see seccomp.rs);
//! 2. supplementary groups, then the group: both need CAP_SETGID, lost with the user change;
//! 3. the bounding set cut: needs CAP_SETPCAP, which a non-root user loses;
//! 4. the user;
//! 5. the remaining capability sets (none for a non-root user) and an empty ambient set;
//! 6. the parent-death signal (SIGKILL) again: the kernel clears it when the user or group
//!    changes, and PID 1 must still die with the init (a rootless container has no cgroup
//!    to end it by);
//! 7. umask 022, every descriptor above 2 closed, signals unblocked and at their default
//!    action; then exec.
//!
//! Steps 1–5 are [`become_identity`]: `berth __exec` takes them in its parent, before it
//! forks the command (see exec.rs), and its child takes 6 and 7.

use oci_spec::runtime::LinuxCapabilities;

use crate::RuntimeError;
use crate::sys::Sys;

/// What the process becomes.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
    pub capabilities: Option<&'a LinuxCapabilities>,
    /// Install the default seccomp filter (not with `--privileged`).
    pub seccomp: bool,
    /// `process.rlimits` of the spec.
    pub rlimits: &'a [oci_spec::runtime::PosixRlimit],
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

/// Applies `id` in the order of the module doc: [`become_identity`], the parent-death
/// signal, the process prepared for exec.
pub fn drop_privileges(sys: &mut dyn Sys, id: &Identity<'_>) -> Result<(), RuntimeError> {
    become_identity(sys, id)?;
    sys.set_parent_death_signal(nix::sys::signal::Signal::SIGKILL)
        .map_err(setup("setting the parent-death signal again"))?;
    sys.finish_process().map_err(setup("preparing the process"))
}

/// Steps 1–5 of the module doc: rlimits, seccomp filter, groups, bounding set, user,
/// capability sets. The process keeps its descriptors, signal mask and handlers.
pub fn become_identity(sys: &mut dyn Sys, id: &Identity<'_>) -> Result<(), RuntimeError> {
    // Limits first: raising a hard limit needs CAP_SYS_RESOURCE, still held here.
    for r in id.rlimits {
        let what = format!("setting {:?}", r.typ());
        sys.set_rlimit(r.typ(), r.soft(), r.hard())
            .map_err(setup(&what))?;
    }
    if id.seccomp {
        let bounding = id.capabilities.and_then(|c| c.bounding().as_ref());
        sys.install_seccomp(&crate::seccomp::program_for(bounding.into_iter().flatten()))
            .map_err(setup("installing the seccomp filter"))?;
    }
    match sys.set_groups(id.groups) {
        // A user namespace that maps the user alone denies setgroups (rootless without
        // subordinate ids): the process keeps the groups it has.
        Err(nix::Error::EPERM)
            if sys
                .read_file(std::path::Path::new("/proc/self/setgroups"))
                .is_ok_and(|s| s.trim() == "deny") => {}
        other => other.map_err(setup("setting supplementary groups"))?,
    }
    sys.set_gid(id.gid).map_err(setup("setting the group"))?;
    if let Some(caps) = id.capabilities {
        sys.limit_bounding(caps)?;
    }
    sys.set_uid(id.uid).map_err(setup("setting the user"))?;
    if let Some(caps) = id.capabilities {
        sys.apply_capabilities(caps, id.uid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ProcessSettings, build_spec};
    use crate::sys::recording::RecordingSys;

    fn order(calls: &[String]) -> Vec<&str> {
        calls
            .iter()
            .map(|c| c.split_whitespace().next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn privileges_drop_in_the_safe_order() {
        let settings = ProcessSettings {
            rlimits: vec![crate::spec::Rlimit::parse("nofile=1024:2048").unwrap()],
            ..ProcessSettings::default()
        };
        let spec = build_spec(std::path::Path::new("/r"), &settings).unwrap();
        let process = spec.process().as_ref().unwrap();
        let caps = process.capabilities().clone().unwrap();
        let mut sys = RecordingSys::default();
        let id = Identity {
            uid: 1000,
            gid: 1000,
            groups: &[1000, 10],
            capabilities: Some(&caps),
            seccomp: true,
            rlimits: process.rlimits().as_deref().unwrap_or_default(),
        };
        drop_privileges(&mut sys, &id).unwrap();
        assert_eq!(
            order(&sys.calls),
            [
                "setrlimit",
                "seccomp",
                "setgroups",
                "setgid",
                "bounding",
                "setuid",
                "capabilities",
                "pdeathsig",
                "finish"
            ],
            "{:#?}",
            sys.calls
        );
        assert!(sys.calls.contains(&"setgroups 1000,10".to_owned()));
        assert!(sys.calls.contains(&"capabilities uid=1000".to_owned()));
        assert!(
            sys.calls
                .contains(&"setrlimit RlimitNofile 1024 2048".to_owned()),
            "{:#?}",
            sys.calls
        );
    }

    #[test]
    fn privileged_installs_no_filter() {
        let mut sys = RecordingSys::default();
        let id = Identity {
            uid: 0,
            gid: 0,
            groups: &[0],
            capabilities: None,
            seccomp: false,
            rlimits: &[],
        };
        drop_privileges(&mut sys, &id).unwrap();
        assert_eq!(
            order(&sys.calls),
            ["setgroups", "setgid", "setuid", "pdeathsig", "finish"]
        );
    }
}
