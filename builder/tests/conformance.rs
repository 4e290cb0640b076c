//! BuildKit's parser and shell corpora (`../shared/conformance/buildkit`, from moby/buildkit
//! at the commit in `COMMIT`), used as they are: one test per folder, enumerating every
//! case as BuildKit's own tests do, and reporting the counts. The corpus lives outside the
//! repository: `BERTH_CONFORMANCE_DIR` names the folder holding `buildkit/`, else it is
//! looked for beside the checkout; without it each test says `skipped: needs the
//! conformance corpus (...)` (a failure under `BERTH_NO_SKIP=1`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_builder::dockerfile::parse;
use berth_builder::dockerfile::shell::Lex;

/// The `buildkit/` folder of the corpus: under `BERTH_CONFORMANCE_DIR` when it is set,
/// else under `../shared/conformance` beside the checkout (or `shared/conformance` in it).
/// `None` when it is not there, after saying the test skips.
fn corpus() -> Option<PathBuf> {
    let candidates = match std::env::var_os("BERTH_CONFORMANCE_DIR") {
        Some(dir) => vec![PathBuf::from(dir).join("buildkit")],
        None => {
            let root = berth_test_support::workspace_root();
            vec![
                root.join("../shared/conformance/buildkit"),
                root.join("shared/conformance/buildkit"),
            ]
        }
    };
    if let Some(found) = candidates.iter().find(|p| p.is_dir()) {
        return Some(found.clone());
    }
    berth_test_support::skip(&format!(
        "the conformance corpus (no {}; set BERTH_CONFORMANCE_DIR to the folder holding buildkit/)",
        candidates[0].display()
    ));
    None
}

fn cases(corpus: &Path, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus.join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn parse_cases_dump_exactly_their_result() {
    let Some(corpus) = corpus() else { return };
    let mut failures = Vec::new();
    let all = cases(&corpus, "parser/testfiles");
    for case in &all {
        let text = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result"))
            .unwrap()
            .replace("\r\n", "\n");
        match parse(&text) {
            Ok(r) => {
                let got = r.ast.dump() + "\n";
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    eprintln!(
        "parser/testfiles: {} of {} identical",
        all.len() - failures.len(),
        all.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(all.len() >= 33);
}

#[test]
fn negative_cases_fail() {
    let Some(corpus) = corpus() else { return };
    let all = cases(&corpus, "parser/testfiles-negative");
    for case in &all {
        let text = std::fs::read_to_string(case.join("Dockerfile")).unwrap_or_default();
        assert!(parse(&text).is_err(), "{} parsed", case.display());
    }
    eprintln!(
        "parser/testfiles-negative: {} of {} rejected",
        all.len(),
        all.len()
    );
    assert_eq!(all.len(), 4);
}

#[test]
fn line_ranges_match() {
    let Some(corpus) = corpus() else { return };
    let text = std::fs::read_to_string(corpus.join("parser/testfile-line/Dockerfile")).unwrap();
    let r = parse(&text).unwrap();
    assert_eq!((r.ast.start_line, r.ast.end_line), (5, 31));
    let ranges: Vec<(usize, usize)> = r
        .ast
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(ranges, [(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn env_var_test_rows() {
    let Some(corpus) = corpus() else { return };
    let text = std::fs::read_to_string(corpus.join("shell/envVarTest")).unwrap();
    let env: HashMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let lex = Lex::new('\\');
    let (mut ran, mut failures) = (0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(parts.len(), 3, "line {}", n + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        ran += 1;
        let got = lex.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => w == e,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} → {got:?}, want {expected:?}",
                n + 1
            ));
        }
    }
    eprintln!(
        "shell/envVarTest: {} of {ran} A|/U| rows as expected",
        ran - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn words_test_rows() {
    let Some(corpus) = corpus() else { return };
    let text = std::fs::read_to_string(corpus.join("shell/wordsTest")).unwrap();
    let lex = Lex::new('\\');
    let mut env: HashMap<String, String> = HashMap::new();
    let (mut ran, mut failures) = (0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start_matches(' ').split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}", n + 1);
        let source = parts[0].trim();
        let expected: Vec<String> = parts[1]
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_owned)
            .collect();
        ran += 1;
        let got = lex
            .process_words(source, &env)
            .unwrap_or_else(|_| vec!["error".to_owned()]);
        if got != expected {
            failures.push(format!(
                "line {}: {source:?} → {got:?}, want {expected:?}",
                n + 1
            ));
        }
    }
    eprintln!(
        "shell/wordsTest: {} of {ran} rows as expected",
        ran - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
