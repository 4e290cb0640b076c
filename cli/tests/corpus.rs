//! Every image of the differential corpus (`testdata/compare/`, [`berth_test_support::corpus`])
//! is one that strict readers accept: berth builds each case, and `skopeo inspect` reads it
//! from the store, `umoci unpack` unpacks its OCI archive, and Docker 20.10 (`docker.io`, a
//! `dockerd` of the test's own) loads its docker archive and runs a container of it. A case
//! marked `FAILS` must fail to build. How each image compares with BuildKit's is `bench
//! compare`'s work (it needs minutes and BuildKit); this test needs only the readers.

use berth_test_support::corpus::{self, Kind};
use berth_test_support::dockerd::{Dockerd, which};
use berth_test_support::{Tier, tier};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

#[test]
fn every_corpus_image_is_accepted_by_skopeo_umoci_and_docker() {
    let Some(s) = ROOT.sandbox() else { return };
    let docker = which("docker").filter(|p| p.starts_with("/usr/bin"));
    if !tier::needs("docker.io (dockerd and /usr/bin/docker)", docker.is_some()) {
        return;
    }
    let docker = docker.expect("checked");
    let work = s.path().join("corpus");
    std::fs::create_dir_all(&work).unwrap();
    let Some((_dockerd, host)) = Dockerd::start(&work) else {
        panic!(
            "dockerd did not start: see {}",
            work.join("dockerd.err").display()
        );
    };
    let d = |args: &[&str]| {
        let out = std::process::Command::new(&docker)
            .env("DOCKER_HOST", &host)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let registry = berth_test_support::TestRegistry::start(Default::default());
    corpus::docker_typed_base(
        &|args| {
            let mut c = s.cmd();
            c.args(args);
            c
        },
        &registry.host,
    );

    let cases = corpus::cases(&[]);
    assert!(cases.len() >= 10, "the corpus is there");
    // Two at a time: a build waits on its disk as much as on a core.
    let check_case = |case: &corpus::Case| -> Vec<String> {
        let mut failures = Vec::new();
        let ctx = case.prepare(&work.join("cases"));
        let tag = format!("corpus-{}:1", case.name);
        let built = s.run(&["build", "-q", "-t", &tag, ctx.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&ctx);
        if case.kind == Kind::Fails {
            if built.status.success() {
                failures.push(format!("{}: built, but must fail", case.name));
            }
            return failures;
        }
        if !built.status.success() {
            failures.push(format!(
                "{}: build failed: {}",
                case.name,
                String::from_utf8_lossy(&built.stderr)
            ));
            return failures;
        }
        let mut check = |what: &str, ok: bool, output: String| {
            if !ok {
                failures.push(format!("{}: {what}: {output}", case.name));
            }
        };
        let full = format!("docker.io/library/{tag}");
        let inspect = std::process::Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:{full}", s.store().display())])
            .output()
            .unwrap();
        check(
            "skopeo inspect",
            inspect.status.success(),
            String::from_utf8_lossy(&inspect.stderr).into_owned(),
        );

        let dir = work.join(&case.name);
        std::fs::create_dir_all(dir.join("layout")).unwrap();
        let oci = dir.join("oci.tar");
        s.ok(&["save", "--format", "oci", "-o", oci.to_str().unwrap(), &tag]);
        let unpacked = std::process::Command::new("tar")
            .args(["-C", "layout", "-xf", "oci.tar"])
            .current_dir(&dir)
            .status()
            .unwrap()
            .success()
            && {
                let out = std::process::Command::new("umoci")
                    .args(["unpack", "--image", &format!("layout:{full}"), "bundle"])
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    check(
                        "umoci unpack",
                        false,
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    );
                }
                out.status.success()
            };
        if unpacked {
            check(
                "umoci's bundle",
                dir.join("bundle/config.json").is_file(),
                "no config.json".into(),
            );
        }

        let archive = dir.join("docker.tar");
        s.ok(&[
            "save",
            "--format",
            "docker",
            "-o",
            archive.to_str().unwrap(),
            &tag,
        ]);
        let (ok, out) = d(&["load", "-i", archive.to_str().unwrap()]);
        check("docker load", ok, out);
        // A command of its own: some images name none, and Docker refuses to create those.
        let (ok, out) = d(&["create", &tag, "/none"]);
        check("docker create", ok, out.clone());
        if ok {
            d(&["rm", out.trim()]);
        }
        d(&["rmi", &tag]);
        s.ok(&["rmi", &tag]);
        let _ = std::fs::remove_dir_all(&dir);
        failures
    };
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let cases = &cases;
                let check_case = &check_case;
                scope.spawn(move || {
                    cases
                        .iter()
                        .skip(w)
                        .step_by(2)
                        .flat_map(check_case)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("no panics"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
