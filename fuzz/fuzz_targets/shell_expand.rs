//! Shell-word expansion with both escape characters and a small environment.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let word = String::from_utf8_lossy(data);
    let env = [("A", "a b"), ("EMPTY", ""), ("P", "/x/y.tar.gz")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    for escape in ['\\', '`'] {
        let lex = berth_builder::dockerfile::shell::Lex::new(escape);
        let _ = lex.process_word(&word, &env);
        let _ = lex.process_words(&word, &env);
    }
});
