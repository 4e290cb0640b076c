//! A static probe run inside containers by `cli/tests/escape.rs`: makes system calls with
//! arguments that the kernel itself would answer with something other than EPERM or ENOSYS,
//! so each answer shows what the seccomp filter decided. Prints `name answer` per call,
//! where the answer is `ok` or the errno's number. x86_64 numbers.

use std::ffi::{c_int, c_long};

extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
    fn __errno_location() -> *mut c_int;
}

fn probe(name: &str, number: c_long, args: [c_long; 4]) {
    // SAFETY: every probe passes numbers or null pointers, which the kernel checks; none of
    // them creates a process or changes memory the probe uses.
    let (ret, errno) = unsafe {
        let ret = syscall(number, args[0], args[1], args[2], args[3]);
        (ret, *__errno_location())
    };
    if ret < 0 {
        println!("{name} {errno}");
    } else {
        println!("{name} ok");
    }
}

fn main() {
    let root = c"/".as_ptr() as c_long;
    probe("getpid", 39, [0; 4]);
    // The kernel: EINVAL (a null argument block). The profile: ENOSYS.
    probe("clone3", 435, [0, 0, 0, 0]);
    // CLONE_NEWUSER with CLONE_FS: the kernel refuses the pair with EINVAL.
    probe("clone_newuser", 56, [0x1000_0000 | 0x200, 0, 0, 0]);
    probe("clone_newns", 56, [0x0002_0000 | 0x200, 0, 0, 0]);
    probe("unshare_newuser", 272, [0x1000_0000, 0, 0, 0]);
    // AF_VSOCK: the kernel answers EAFNOSUPPORT without the module, or a socket.
    probe("socket_vsock", 41, [40, 1, 0, 0]);
    probe("socket_unix", 41, [1, 1, 0, 0]);
    // READ_IMPLIES_EXEC: the kernel allows it.
    probe("personality_exec", 135, [0x0040_0000, 0, 0, 0]);
    probe("personality_query", 135, [0xffff_ffff, 0, 0, 0]);
    // io_uring_setup with a null params pointer: the kernel says EFAULT.
    probe("io_uring_setup", 425, [1, 0, 0, 0]);
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): the kernel answers.
    probe("keyctl", 250, [0, -3, 0, 0]);
    // Too new for the profile: mseal (462) and file_setattr (469); 1000 exists nowhere.
    probe("mseal", 462, [0, 0, 0, 0]);
    probe("file_setattr", 469, [-1, 0, 0, 0]);
    probe("nr_1000", 1000, [0; 4]);
    // Allowed: name_to_handle_at with null buffers (EFAULT), ptrace of no process (ESRCH).
    probe("name_to_handle_at", 303, [-100, root, 0, 0]);
    probe("ptrace_peek", 101, [2, 0x7fff_ffff, 0, 0]);
    probe("mount", 165, [0, 0, 0, 0]);
}
