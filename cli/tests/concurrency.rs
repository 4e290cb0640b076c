//! Many berth processes on one store: no tag is lost.

use std::process::Child;

use berth_test_support::Sandbox;

#[test]
fn eight_processes_tagging_at_once_lose_no_tag() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("base");
    let children: Vec<Child> = (0..8)
        .map(|p| {
            let script: String = (0..10)
                .map(|i| format!("\"$B\" tag base p{p}:t{i} || exit 1\n"))
                .collect();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("B", env!("CARGO_BIN_EXE_berth"))
                .env("BERTH_ROOT", s.store())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let names: Vec<serde_json::Value> = s
        .ok(&["images", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(names.len(), 81, "80 tags plus base");
    s.assert_clean();
}
