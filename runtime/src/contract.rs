//! What berth's side and the container's init agree on beyond the OCI runtime spec: the
//! annotations through which [`spec`](crate::spec) hands the init berth's own settings (read
//! by [`init`](crate::init), [`rootfs`](crate::rootfs) and [`pid1`](crate::pid1)), the exit
//! codes the init and PID 1 report their own failures with (Docker's), and the signals they
//! pass on to the container.

use nix::sys::signal::Signal;

/// Annotation carrying the unresolved `USER` (name or id, `[:group]`); the init resolves it
/// in the container's own `/etc/passwd` and `/etc/group` after pivot_root.
pub const ANNOTATION_USER: &str = "berth.user";

/// Annotation naming the seccomp profile: `default` (berth's built-in, see seccomp.rs) or
/// `unconfined`. berth does not interpret OCI seccomp JSON.
pub const ANNOTATION_SECCOMP: &str = "berth.seccomp";

/// Annotation present when the container is not privileged: the rootfs and every bind are
/// mounted `nodev` (see rootfs.rs), so only the nodes in `/dev`'s own tmpfs can be opened.
pub const ANNOTATION_NODEV: &str = "berth.nodev";

/// Annotation present when the container's network namespace is carried out by slirp4netns:
/// the init starts it from the host's network namespace once the namespace exists, and
/// releases PID 1 when `tap0` is configured. Its value is the JSON list of ports to publish
/// ([`net::Port`](crate::net::Port)s, forwarded by slirp4netns from the host to `tap0`;
/// `1`, or an empty list, publishes none).
pub const ANNOTATION_SLIRP4NETNS: &str = "berth.slirp4netns";

/// Annotation carrying the container's place on a bridge network, a JSON
/// [`net::Attachment`](crate::net::Attachment): the init makes its veth and publishes its
/// ports at start, and removes the ports when the container ends.
pub const ANNOTATION_NETWORK: &str = "berth.network";

/// Annotation with the host path of the terminal to bind onto `/dev/console` (`run -t`).
pub const ANNOTATION_CONSOLE: &str = "berth.console";

/// Annotation asking for `--init`: PID 1 is [`pid1`](crate::pid1), the command its child.
pub const ANNOTATION_INIT: &str = "berth.init";

/// Annotation listing environment variables whose values the init reads from descriptors
/// it inherits (a build secret's `env=`): JSON `[["NAME", FD], ...]`. The value never
/// enters the spec, so it is never written with the bundle.
pub const ANNOTATION_ENV_FDS: &str = "berth.env-fds";

/// The largest value read for [`ANNOTATION_ENV_FDS`]: 512 KiB, far above a token or a key;
/// a longer one fails the start (and `execve` refuses a string past its own limit).
pub const MAX_ENV_FD_VALUE: usize = 512 << 10;

/// The container could not be set up (or the runtime failed).
pub const EXIT_SETUP: i32 = 125;
/// The command was found but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Signals forwarded from the init, and from PID 1, to the container's command.
pub(crate) const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];
