//! .dockerignore patterns (first line: a path to test; the rest: the file).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, patterns) = text.split_once('\n').unwrap_or(("a/b", &text));
    if let Ok(m) = berth_builder::context::Matcher::parse(patterns) {
        let _ = m.excluded(path);
        let _ = m.may_include_under(path);
    }
});
