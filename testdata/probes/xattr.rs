//! A static probe run inside containers by `cli/tests/rootless.rs` (busybox has no
//! `setfattr`): `xattr set PATH NAME VALUE` sets an xattr (not following a final symlink),
//! `xattr list PATH` prints its xattr names; each prints `ok`, the names one a line, or the
//! errno's number.

use std::ffi::{c_char, c_int, c_void, CString};

extern "C" {
    fn lsetxattr(
        path: *const c_char,
        name: *const c_char,
        value: *const c_void,
        size: usize,
        flags: c_int,
    ) -> c_int;
    fn llistxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize;
    fn __errno_location() -> *mut c_int;
}

fn errno() -> c_int {
    // SAFETY: the C library's thread-local errno, read right after the failed call.
    unsafe { *__errno_location() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = CString::new(args.get(2).cloned().unwrap_or_default()).unwrap();
    match args.get(1).map(String::as_str) {
        Some("set") if args.len() == 5 => {
            let name = CString::new(args[3].clone()).unwrap();
            let value = args[4].as_bytes();
            // SAFETY: NUL-terminated strings and a buffer of the size passed, all alive.
            let rc = unsafe {
                lsetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if rc == 0 {
                println!("ok");
            } else {
                println!("{}", errno());
            }
        }
        Some("list") => {
            let mut buf = vec![0u8; 65536];
            // SAFETY: a NUL-terminated path and a buffer of the size passed.
            let n = unsafe { llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                println!("{}", errno());
                return;
            }
            for name in buf[..n as usize].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                println!("{}", String::from_utf8_lossy(name));
            }
        }
        _ => {
            eprintln!("usage: xattr set PATH NAME VALUE | xattr list PATH");
            std::process::exit(2);
        }
    }
}
