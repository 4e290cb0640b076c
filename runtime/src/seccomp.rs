//! The default seccomp filter: an allowlist in the shape of Docker's default profile,
//! compiled to BPF programs that the init installs just before it drops privileges.
//!
//! What a container may call is [`ALLOWED`] (plus [`ALLOWED_ARCH`]) and, with conditions on
//! their arguments: `clone` without namespace flags, `socket` for any family but `AF_VSOCK`,
//! `personality` for the five personas Docker lets through. Every other system call the
//! profile knows of fails with EPERM; that covers what Docker refuses to a container with its
//! default capabilities: kernel modules, kexec, the keyring, bpf, perf_event_open,
//! userfaultfd, reboot, swap, clock changes, mount and the new mount API, pivot_root, setns and
//! unshare, new user namespaces, io_uring (refused by Docker since 25.0 and by containerd),
//! NUMA policy calls, and the legacy calls.
//!
//! A call numbered above every call the profile names gets ENOSYS, as runc does for profiles
//! older than the kernel: libc and language runtimes probe new calls (`clone3`, `fchmodat2`,
//! `statmount`, ...) and fall back only on ENOSYS, where EPERM would break them, while a call
//! nobody has reviewed is still refused. `clone3` gets ENOSYS too, as in Docker's profile:
//! its flags live in memory a filter cannot read, and libc then falls back to `clone`, whose
//! flags are checked.
//!
//! [`default_program`] compiles all of that into one BPF program that searches the call
//! number (see there for why not seccompiler, which the tests keep as the reference). It is
//! installed with `seccomp(2)` directly (sys/linux.rs), without `no_new_privs`: Docker does
//! not set it, and setuid programs inside containers must keep working. Installing without
//! `no_new_privs` needs CAP_SYS_ADMIN, which the init still holds at that point.
//! `--privileged` installs nothing. As in Docker's profile, a capability added with
//! `--cap-add` lets through the calls it governs ([`granted_by`], [`program_for`]):
//! `SYS_ADMIN` `mount`, `unshare`, `setns` and namespace flags to `clone`, `SYS_TIME` the
//! clock calls, `SYS_PTRACE` `ptrace` and `process_vm_*`, and so on.
//!
//! Not done: the program checks the architecture and kills a process that calls through
//! another ABI, so 32-bit x86 programs, which Docker lets through as a sub-architecture, are
//! killed in berth's containers. (x32 calls, numbered from 0x4000_0000, get ENOSYS.)

/// `io_pgetevents`, which the libc crate does not name.
#[cfg(target_arch = "x86_64")]
const SYS_IO_PGETEVENTS: libc::c_long = 333;
#[cfg(target_arch = "aarch64")]
const SYS_IO_PGETEVENTS: libc::c_long = 292;

/// Allowed without conditions on every architecture berth supports.
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_adjtimex,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_chroot,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_get_robust_list,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_ioctl,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    SYS_IO_PGETEVENTS,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_mincore,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_name_to_handle_at,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pselect6,
    libc::SYS_ptrace,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_set_robust_list,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_set_tid_address,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
];

/// The calls only one architecture has (the old path-based calls on x86_64, which aarch64
/// never had).
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_ctl_old,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_get_thread_area,
    libc::SYS_inotify_init,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_modify_ldt,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_set_thread_area,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];
#[cfg(target_arch = "aarch64")]
const ALLOWED_ARCH: &[libc::c_long] = &[];

/// Known to the profile and refused (EPERM): listed so that the ENOSYS threshold lies above
/// them, which tells "refused" from "too new to know".
const REFUSED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pivot_root,
    libc::SYS_process_madvise,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_set_mempolicy_home_node,
    libc::SYS_setdomainname,
    libc::SYS_sethostname,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
];

/// Docker's list of personas `personality(2)` may switch to: Linux, Linux with 32-bit
/// addresses, the same two with unique-ids (`UNAME26` off), and the query `0xffffffff`.
const PERSONAS: &[u64] = &[0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// The namespace flags `clone` may not carry.
const NEW_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// The first system call number the profile does not know: it and everything above it get
/// ENOSYS.
pub fn first_unknown() -> libc::c_long {
    ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .chain(REFUSED)
        .chain(&[
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_personality,
        ])
        .max()
        .copied()
        .unwrap_or(0)
        + 1
}

/// A BPF program: classic BPF instructions, as `seccomp(2)` takes them.
pub type BpfProgram = Vec<libc::sock_filter>;

/// The profile's answer to one call number, before any argument is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// Known and refused, or below the threshold and not listed.
    Refuse,
    /// Too new for the profile, or `clone3`.
    NotImplemented,
    /// `clone`: allowed without namespace flags.
    Clone,
    /// `socket`: allowed for every family but `AF_VSOCK`.
    Socket,
    /// `personality`: allowed for [`PERSONAS`].
    Personality,
}

/// The calls Docker's profile allows only to a container that holds a capability (its
/// `includes.caps` rules): `--cap-add SYS_TIME` lets `clock_settime` through, `SYS_ADMIN`
/// `mount`, `unshare`, `setns` and `clone` with namespace flags, and so on.
pub fn granted_by(cap: oci_spec::runtime::Capability) -> &'static [libc::c_long] {
    use oci_spec::runtime::Capability as C;
    match cap {
        C::Bpf => &[libc::SYS_bpf],
        C::DacReadSearch => &[libc::SYS_open_by_handle_at],
        C::Perfmon => &[libc::SYS_perf_event_open],
        C::SysAdmin => &[
            libc::SYS_bpf,
            libc::SYS_clone,
            libc::SYS_fanotify_init,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fsopen,
            libc::SYS_fspick,
            libc::SYS_lookup_dcookie,
            libc::SYS_mount,
            libc::SYS_mount_setattr,
            libc::SYS_move_mount,
            libc::SYS_name_to_handle_at,
            libc::SYS_open_tree,
            libc::SYS_perf_event_open,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_setdomainname,
            libc::SYS_sethostname,
            libc::SYS_setns,
            libc::SYS_syslog,
            libc::SYS_umount2,
            libc::SYS_unshare,
        ],
        C::SysBoot => &[libc::SYS_reboot],
        C::SysChroot => &[libc::SYS_chroot],
        C::SysModule => &[
            libc::SYS_delete_module,
            libc::SYS_init_module,
            libc::SYS_finit_module,
        ],
        C::SysPacct => &[libc::SYS_acct],
        C::SysPtrace => &[
            libc::SYS_kcmp,
            libc::SYS_pidfd_getfd,
            libc::SYS_process_madvise,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_ptrace,
        ],
        #[cfg(target_arch = "x86_64")]
        C::SysRawio => &[libc::SYS_iopl, libc::SYS_ioperm],
        C::SysTime => &[libc::SYS_settimeofday, libc::SYS_clock_settime],
        C::SysTtyConfig => &[libc::SYS_vhangup],
        C::SysNice => &[
            libc::SYS_get_mempolicy,
            libc::SYS_mbind,
            libc::SYS_set_mempolicy,
            libc::SYS_set_mempolicy_home_node,
        ],
        C::Syslog => &[libc::SYS_syslog],
        _ => &[],
    }
}

fn verdict(nr: u32, granted: &[libc::c_long]) -> Verdict {
    let n = libc::c_long::from(nr);
    if n == libc::SYS_clone3 || n >= first_unknown() {
        Verdict::NotImplemented
    } else if granted.contains(&n) {
        Verdict::Allow
    } else if n == libc::SYS_clone {
        Verdict::Clone
    } else if n == libc::SYS_socket {
        Verdict::Socket
    } else if n == libc::SYS_personality {
        Verdict::Personality
    } else if ALLOWED.contains(&n) || ALLOWED_ARCH.contains(&n) {
        Verdict::Allow
    } else {
        Verdict::Refuse
    }
}

// Classic BPF opcodes (linux/filter.h: class | size/op | mode/source), and seccomp's answers.
/// `BPF_LD | BPF_W | BPF_ABS`.
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JA`.
const BPF_JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGE | BPF_K`.
const BPF_JMP_JGE_K: u16 = 0x35;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const BPF_JMP_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const RET_EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Offsets in `struct seccomp_data`: the call number, the architecture, and the low 32 bits
/// of the first argument (the arguments are 64-bit, little-endian here).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
#[cfg(target_endian = "little")]
const DATA_ARG0_LOW: u32 = 16;

/// `AUDIT_ARCH_*` of the architecture berth is built for (linux/audit.h).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The call-number line cut into runs of one verdict: (first number, verdict), ascending,
/// from 0, each run up to the next one's start (the last up to `u32::MAX`).
fn runs(granted: &[libc::c_long]) -> Vec<(u32, Verdict)> {
    let threshold = u32::try_from(first_unknown()).expect("call numbers are small");
    let mut runs: Vec<(u32, Verdict)> = Vec::new();
    for nr in 0..=threshold {
        let v = verdict(nr, granted);
        if runs.last().is_none_or(|(_, last)| *last != v) {
            runs.push((nr, v));
        }
    }
    runs
}

/// The instructions that answer for one run; the accumulator holds the call number.
fn leaf(v: Verdict) -> BpfProgram {
    match v {
        Verdict::Allow => vec![insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)],
        Verdict::Refuse => vec![insn(BPF_RET_K, 0, 0, RET_EPERM)],
        Verdict::NotImplemented => vec![insn(BPF_RET_K, 0, 0, RET_ENOSYS)],
        // NEW_NAMESPACES lies in the low 32 bits of the flags.
        Verdict::Clone => vec![
            insn(BPF_LD_W_ABS, 0, 0, DATA_ARG0_LOW),
            insn(BPF_JMP_JSET_K, 1, 0, NEW_NAMESPACES as u32),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            insn(BPF_RET_K, 0, 0, RET_EPERM),
        ],
        Verdict::Socket => vec![
            insn(BPF_LD_W_ABS, 0, 0, DATA_ARG0_LOW),
            insn(BPF_JMP_JEQ_K, 1, 0, libc::AF_VSOCK as u32),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            insn(BPF_RET_K, 0, 0, RET_EPERM),
        ],
        Verdict::Personality => {
            // LD; one JEQ per persona, each jumping to the final ALLOW; EPERM; ALLOW.
            let n = PERSONAS.len();
            let mut p = vec![insn(BPF_LD_W_ABS, 0, 0, DATA_ARG0_LOW)];
            for (i, persona) in PERSONAS.iter().enumerate() {
                let to_allow = u8::try_from(n - i).expect("a few personas");
                p.push(insn(BPF_JMP_JEQ_K, to_allow, 0, *persona as u32));
            }
            p.push(insn(BPF_RET_K, 0, 0, RET_EPERM));
            p.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
            p
        }
    }
}

/// A balanced binary search over `runs` (the accumulator holds the call number): each node
/// is `JGE first-of-the-upper-half`, its lower half right behind it, its upper half after
/// that; a jump longer than 255 instructions goes through a `JA`.
fn search(runs: &[(u32, Verdict)]) -> BpfProgram {
    if let [(_, v)] = runs {
        return leaf(*v);
    }
    let mid = runs.len() / 2;
    let (lower, upper) = (search(&runs[..mid]), search(&runs[mid..]));
    let boundary = runs[mid].0;
    let mut p = Vec::with_capacity(lower.len() + upper.len() + 2);
    match u8::try_from(lower.len()) {
        Ok(skip) => p.push(insn(BPF_JMP_JGE_K, skip, 0, boundary)),
        Err(_) => {
            p.push(insn(BPF_JMP_JGE_K, 0, 1, boundary));
            p.push(insn(BPF_JMP_JA, 0, 0, lower.len() as u32));
        }
    }
    p.extend(lower);
    p.extend(upper);
    p
}

/// The default profile as one BPF program: another architecture's calls kill the process,
/// then a binary search over the call number finds its run's answer.
///
/// Compiled here rather than with seccompiler (which the tests keep as the reference):
/// seccompiler tests the rules one after another, 1515 instructions for this profile, which
/// the kernel checks and JIT-compiles at every container start (0.6 ms on the development
/// VM) and which a call near the end of the list walks through on every system call. This
/// program has 144 instructions, and no call runs more than 16 of them.
pub fn default_program() -> BpfProgram {
    program_with(&[])
}

/// The default profile for a process holding `caps` (its bounding set): the calls
/// [`granted_by`] them allowed too, as Docker's profile does.
pub fn program_for<'a>(
    caps: impl IntoIterator<Item = &'a oci_spec::runtime::Capability>,
) -> BpfProgram {
    let granted: Vec<libc::c_long> = caps
        .into_iter()
        .flat_map(|c| granted_by(*c).iter().copied())
        .collect();
    program_with(&granted)
}

fn program_with(granted: &[libc::c_long]) -> BpfProgram {
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        insn(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
    ];
    p.extend(search(&runs(granted)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    #[cfg(target_arch = "x86_64")]
    const TARGET: TargetArch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    const TARGET: TargetArch = TargetArch::aarch64;
    /// `AUDIT_ARCH_I386`: a 32-bit x86 call.
    const OTHER_ARCH: u32 = 0x4000_0003;

    /// What a filter sees: call number, architecture, the first argument.
    #[derive(Debug, Clone, Copy)]
    struct Call {
        nr: u32,
        arch: u32,
        arg0: u64,
    }

    fn load(call: &Call, offset: u32) -> u32 {
        match offset {
            0 => call.nr,
            4 => call.arch,
            16 => call.arg0 as u32,
            20 => (call.arg0 >> 32) as u32,
            _ => panic!("the programs read no other field: offset {offset}"),
        }
    }

    /// A classic BPF interpreter for the instructions both compilers emit; also returns how
    /// many instructions ran.
    fn interpret(program: &[libc::sock_filter], call: &Call) -> (u32, usize) {
        let (mut pc, mut a, mut steps) = (0usize, 0u32, 0usize);
        loop {
            let i = program[pc];
            steps += 1;
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                BPF_LD_W_ABS => a = load(call, i.k),
                0x54 => a &= i.k, // BPF_ALU | BPF_AND | BPF_K
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K => pc += jump(a == i.k),
                BPF_JMP_JGE_K => pc += jump(a >= i.k),
                0x25 => pc += jump(a > i.k), // BPF_JMP | BPF_JGT | BPF_K
                BPF_JMP_JSET_K => pc += jump(a & i.k != 0),
                BPF_RET_K => return (i.k, steps),
                code => panic!("unexpected opcode {code:#x}"),
            }
        }
    }

    /// The kernel's answer for several filters: each runs, the most recently installed first,
    /// and an answer replaces the one so far only when its action takes precedence.
    fn kernel_answer(programs: &[BpfProgram], call: &Call) -> u32 {
        let precedence = |ret: u32| (ret & 0xffff_0000) as i32;
        let mut answer = SECCOMP_RET_ALLOW;
        for p in programs.iter().rev() {
            let (ret, _) = interpret(p, call);
            if precedence(ret) < precedence(answer) {
                answer = ret;
            }
        }
        answer
    }

    fn condition(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompRule {
        SeccompRule::new(vec![SeccompCondition::new(arg, len, op, value).unwrap()]).unwrap()
    }

    /// The reference: the same profile as berth installed it before it had its own compiler,
    /// seccompiler's allowlist (every other call EPERM) and, after it, a program that answers
    /// ENOSYS for `clone3` and from the threshold up.
    fn reference_programs() -> Vec<BpfProgram> {
        let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
            .iter()
            .chain(ALLOWED_ARCH)
            .map(|n| (*n, Vec::new()))
            .collect();
        rules.insert(
            libc::SYS_clone,
            vec![condition(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(NEW_NAMESPACES),
                0,
            )],
        );
        rules.insert(
            libc::SYS_socket,
            vec![condition(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_VSOCK as u64,
            )],
        );
        rules.insert(
            libc::SYS_personality,
            PERSONAS
                .iter()
                .map(|p| condition(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *p))
                .collect(),
        );
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            TARGET,
        )
        .unwrap();
        let allowlist: seccompiler::BpfProgram = filter.try_into().unwrap();
        let convert = |i: &seccompiler::sock_filter| insn(i.code, i.jt, i.jf, i.k);
        let enosys = vec![
            insn(BPF_LD_W_ABS, 0, 0, 0),
            insn(BPF_JMP_JEQ_K, 2, 0, libc::SYS_clone3 as u32),
            insn(BPF_JMP_JGE_K, 1, 0, first_unknown() as u32),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            insn(BPF_RET_K, 0, 0, RET_ENOSYS),
        ];
        vec![allowlist.iter().map(convert).collect(), enosys]
    }

    fn calls() -> impl Iterator<Item = Call> {
        let first_args = [
            0,
            libc::SIGCHLD as u64,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
            libc::CLONE_NEWNS as u64,
            (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64,
            1 << 32,
            (1 << 32) | libc::CLONE_NEWNET as u64,
            libc::AF_INET as u64,
            libc::AF_UNIX as u64,
            libc::AF_VSOCK as u64,
            (1 << 32) | libc::AF_VSOCK as u64,
            0x0008,
            0x20000,
            0x20008,
            0x40000,
            0x0040_0000,
            0xffff_ffff,
            u64::MAX,
        ];
        let numbers = (0..1100)
            .chain(0x4000_0000..0x4000_0200)
            .chain([u32::MAX - 1, u32::MAX]);
        numbers.flat_map(move |nr| {
            [AUDIT_ARCH, OTHER_ARCH]
                .into_iter()
                .flat_map(move |arch| first_args.map(|arg0| Call { nr, arch, arg0 }))
        })
    }

    #[test]
    fn the_search_answers_as_the_reference_does_for_every_call() {
        let program = default_program();
        let reference = reference_programs();
        let mut checked = 0;
        for call in calls() {
            assert_eq!(
                interpret(&program, &call).0,
                kernel_answer(&reference, &call),
                "{call:?}"
            );
            checked += 1;
        }
        assert!(checked > 50_000);
    }

    #[test]
    fn a_capability_lets_its_calls_through_as_dockers_profile() {
        use oci_spec::runtime::Capability as C;
        let answer = |program: &BpfProgram, nr: libc::c_long, arg0: u64| {
            let call = Call {
                nr: nr as u32,
                arch: AUDIT_ARCH,
                arg0,
            };
            interpret(program, &call).0
        };
        let default = default_program();
        let time = program_for(&[C::SysTime]);
        let admin = program_for(&[C::SysAdmin, C::Chown]);
        assert_eq!(answer(&default, libc::SYS_clock_settime, 0), RET_EPERM);
        assert_eq!(answer(&time, libc::SYS_clock_settime, 0), SECCOMP_RET_ALLOW);
        assert_eq!(answer(&time, libc::SYS_mount, 0), RET_EPERM);
        assert_eq!(answer(&admin, libc::SYS_mount, 0), SECCOMP_RET_ALLOW);
        let newns = libc::CLONE_NEWNS as u64;
        assert_eq!(answer(&default, libc::SYS_clone, newns), RET_EPERM);
        assert_eq!(answer(&admin, libc::SYS_clone, newns), SECCOMP_RET_ALLOW);
        assert_eq!(answer(&admin, libc::SYS_clone3, 0), RET_ENOSYS);
        assert_eq!(answer(&admin, libc::SYS_kexec_load, 0), RET_EPERM);
        // The default set grants nothing the default program refuses.
        let defaults = crate::spec::DEFAULT_CAPABILITIES;
        assert_eq!(program_for(defaults).len(), default.len());
    }

    #[test]
    fn the_search_is_small_and_shallow() {
        let program = default_program();
        let reference: usize = reference_programs().iter().map(Vec::len).sum();
        assert!(
            program.len() * 4 < reference,
            "{} instructions against seccompiler's {reference}",
            program.len()
        );
        let deepest = calls().map(|c| interpret(&program, &c).1).max().unwrap();
        assert!(deepest <= 24, "{deepest} instructions on the longest path");
    }

    #[test]
    fn the_profile_answers_as_docker_documents() {
        let program = default_program();
        let answer = |nr: libc::c_long, arg0: u64| {
            let call = Call {
                nr: nr as u32,
                arch: AUDIT_ARCH,
                arg0,
            };
            interpret(&program, &call).0
        };
        assert_eq!(answer(libc::SYS_read, 0), SECCOMP_RET_ALLOW);
        assert_eq!(answer(libc::SYS_execve, 0), SECCOMP_RET_ALLOW);
        for refused in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_kexec_load,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_io_uring_setup,
        ] {
            assert_eq!(answer(refused, 0), RET_EPERM, "call {refused}");
        }
        let fork_flags = libc::SIGCHLD as u64;
        assert_eq!(answer(libc::SYS_clone, fork_flags), SECCOMP_RET_ALLOW);
        let new_user = (libc::CLONE_NEWUSER as u64) | fork_flags;
        assert_eq!(answer(libc::SYS_clone, new_user), RET_EPERM);
        assert_eq!(answer(libc::SYS_clone3, 0), RET_ENOSYS);
        assert_eq!(
            answer(libc::SYS_socket, libc::AF_INET as u64),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(answer(libc::SYS_socket, libc::AF_VSOCK as u64), RET_EPERM);
        assert_eq!(answer(libc::SYS_personality, 0x0008), SECCOMP_RET_ALLOW);
        assert_eq!(answer(libc::SYS_personality, 0x0040_0000), RET_EPERM);
        assert_eq!(answer(first_unknown(), 0), RET_ENOSYS);
        let i386 = Call {
            nr: 1,
            arch: OTHER_ARCH,
            arg0: 0,
        };
        assert_eq!(interpret(&program, &i386).0, SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn no_call_is_both_allowed_and_refused() {
        let allowed: std::collections::BTreeSet<_> = ALLOWED.iter().chain(ALLOWED_ARCH).collect();
        assert_eq!(
            allowed.len(),
            ALLOWED.len() + ALLOWED_ARCH.len(),
            "listed twice"
        );
        for n in REFUSED {
            assert!(
                !allowed.contains(n),
                "syscall {n} is both allowed and refused"
            );
        }
        for n in [
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_personality,
        ] {
            assert!(!allowed.contains(&n), "syscall {n} has conditions");
        }
    }

    #[test]
    fn the_enosys_threshold_lies_above_every_listed_call() {
        // On x86_64, fchmodat2 (452) is the newest call Docker's profile allows; mseal (462)
        // and the *xattrat calls (463..) are too new for it.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(first_unknown(), 453);
        assert!(first_unknown() > libc::SYS_clone3);
    }
}
