//! The default seccomp filter: berth's profile in, BPF programs out, installed by the init
//! just before it drops privileges.
//!
//! It refuses (EPERM) what Docker's default profile refuses to a container without extra
//! capabilities: kernel modules, kexec, the keyring, bpf, perf_event_open, userfaultfd,
//! reboot, swap, clock changes, mount and the new mount API, pivot_root, setns and unshare,
//! `clone` with CLONE_NEWUSER (new user namespaces), process_vm_*, handle-based opens,
//! io_uring, NUMA policy calls, and the legacy calls Docker lists. `clone3` gets ENOSYS, as in
//! Docker's profile: its flags live in memory a filter cannot read, and libc then falls back
//! to `clone`, whose flags can be checked.
//!
//! seccompiler compiles the rules; the programs are installed with `seccomp(2)` directly
//! (sys.rs) rather than with `seccompiler::apply_filter`, which always sets `no_new_privs`:
//! Docker does not, and setuid programs inside containers must keep working. Installing
//! without `no_new_privs` needs CAP_SYS_ADMIN, which the init still holds at that point.
//! `--privileged` installs nothing.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::RuntimeError;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// Refused on every architecture berth supports.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_init_module,
    libc::SYS_kcmp,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_keyctl,
    libc::SYS_request_key,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    libc::SYS_move_pages,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_fanotify_init,
];

/// (`create_module`, `get_kernel_syms` and `query_module`, also in Docker's list, are gone
/// from the kernel since 2.6 and return ENOSYS anyway.)
#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[libc::c_long] = &[
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_nfsservctl,
];
#[cfg(target_arch = "aarch64")]
const DENIED_ARCH: &[libc::c_long] = &[];

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, RuntimeError> {
    let err = |e: seccompiler::BackendError| RuntimeError::Seccomp(e.to_string());
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        ARCH,
    )
    .map_err(err)?;
    filter.try_into().map_err(err)
}

/// The default profile as BPF programs, in the order to install them.
pub fn default_programs() -> Result<Vec<BpfProgram>, RuntimeError> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .chain(DENIED_ARCH)
        .map(|n| (*n, Vec::new()))
        .collect();
    let new_user = libc::CLONE_NEWUSER as u64;
    let cond = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(new_user),
        new_user,
    )
    .map_err(|e| RuntimeError::Seccomp(e.to_string()))?;
    deny.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![cond]).map_err(|e| RuntimeError::Seccomp(e.to_string()))?],
    );
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    Ok(vec![
        compile(clone3, libc::ENOSYS)?,
        compile(deny, libc::EPERM)?,
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_profile_compiles() {
        let programs = super::default_programs().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
}
