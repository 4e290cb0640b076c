//! Third red-team round: holes found, each as a failing test until it is fixed.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// `login`/`logout` write the credentials file (`$REGISTRY_AUTH_FILE`, a user-named path)
/// through a temporary file with a predictable name, `<file>.tmp-<PID>`
/// (`registry-client/src/creds.rs`, `write_json`), opened without `O_EXCL` or
/// `O_NOFOLLOW`. In a shared directory another user plants that name: a symlink makes berth
/// truncate and overwrite the file it points at (here a root-owned file), then renames the
/// symlink over the credentials file; a regular file of theirs (mode 0666) makes the saved
/// credentials theirs to read. SECURITY.md says every file berth writes at a user-named
/// path goes through a random `O_EXCL` temporary (`cli/src/output_file.rs`).
#[test]
fn logout_does_not_write_through_a_planted_temporary_name() {
    if !berth_test_support::needs_root("plants a file for root to write through") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("berth-rt3-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "VICTIM\n").unwrap();
    let auth = dir.join("auth.json");
    let entry =
        r#"{"auths":{"example.invalid:5000":{"auth":"dTpw"},"other.invalid":{"auth":"dTpx"}}}"#;
    let mut followed = false;
    for _ in 0..5 {
        std::fs::write(&auth, entry).unwrap();
        let store = dir.join("store");
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["logout", "example.invalid:5000"])
            .env("REGISTRY_AUTH_FILE", &auth)
            .env("BERTH_ROOT", &store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The name berth will use, planted before it gets there.
        let planted = dir.join(format!("auth.tmp-{}", child.id()));
        let _ = std::os::unix::fs::symlink(&victim, &planted);
        child.wait().unwrap();
        let _ = std::fs::remove_file(&planted);
        if std::fs::read_to_string(&victim).unwrap() != "VICTIM\n" {
            followed = true;
            break;
        }
    }
    let after = std::fs::read_to_string(&victim).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !followed,
        "logout wrote the credentials file through a symlink planted at its temporary name: \
         the file it pointed at now holds {after:?}"
    );
}
