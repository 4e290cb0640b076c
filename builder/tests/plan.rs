//! The build plan as a value: which stages, in which waves, with which cache keys.

use std::collections::HashMap;

use berth_builder::ResolveError;
use berth_builder::context::{Matcher, ScannedContext, StatIndex, scan};
use berth_builder::instructions::parse_dockerfile;
use berth_builder::instructions::stages::Platforms;
use berth_builder::plan::{Base, BaseImage, BuildGraph, Resolver, StepKind, plan};
use berth_oci::{Digest, ImageConfig};

struct Images(HashMap<String, BaseImage>);

impl Resolver for Images {
    fn resolve(&self, name: &str, _platform: Option<&str>) -> Result<BaseImage, ResolveError> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| ResolveError::NotFound(name.to_owned()))
    }
}

fn images(manifest_seed: &str) -> Images {
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    config.config.env = Some(vec!["PATH=/bin".into()]);
    Images(HashMap::from([(
        "busybox".to_owned(),
        BaseImage {
            manifest: Digest::of(manifest_seed.as_bytes()),
            id: Digest::of(format!("config {manifest_seed}").as_bytes()),
            config,
            remote: None,
        },
    )]))
}

fn context(files: &[(&str, &str)]) -> (tempfile::TempDir, ScannedContext) {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        std::fs::write(dir.path().join(p), c).unwrap();
    }
    let s = scan(dir.path(), &Matcher::default(), &mut StatIndex::default()).unwrap();
    (dir, s)
}

fn graph(
    text: &str,
    args: &[(&str, &str)],
    target: Option<&str>,
    imgs: &Images,
    ctx: &ScannedContext,
) -> BuildGraph {
    let df = parse_dockerfile(text).unwrap();
    let args = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    plan(&df, &args, target, &Platforms::default(), imgs, ctx, None).unwrap()
}

fn keys(g: &BuildGraph) -> Vec<String> {
    g.stages
        .iter()
        .flat_map(|s| s.steps.iter().map(|st| st.key.to_string()))
        .collect()
}

const APP: &str =
    "FROM busybox\nCOPY a /a\nLABEL v=1\nARG V=1\nRUN echo $V\nCOPY b /b\nCMD [\"sh\"]\n";

#[test]
fn keys_are_stable_and_layers_chain() {
    let (_d, ctx) = context(&[("a", "A"), ("b", "B")]);
    let imgs = images("m1");
    let g1 = graph(APP, &[], None, &imgs, &ctx);
    let g2 = graph(APP, &[], None, &imgs, &ctx);
    assert_eq!(keys(&g1), keys(&g2));
    let kinds: Vec<StepKind> = g1.stages[0].steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::Layer,
            StepKind::Config,
            StepKind::Config,
            StepKind::Layer,
            StepKind::Layer,
            StepKind::Config
        ]
    );
    assert!(matches!(&g1.stages[0].base, Base::Image { name, .. } if name == "busybox"));
    assert_eq!(
        g1.stages[0].layer_key, g1.stages[0].steps[4].key,
        "the stage's layer key is its last layer's"
    );
}

#[test]
fn a_build_arg_invalidates_only_what_sees_it() {
    let (_d, ctx) = context(&[("a", "A"), ("b", "B")]);
    let imgs = images("m1");
    let one = keys(&graph(APP, &[("V", "1")], None, &imgs, &ctx));
    let two = keys(&graph(APP, &[("V", "2")], None, &imgs, &ctx));
    assert_eq!(one[0], two[0], "COPY a comes before the ARG");
    assert_eq!(one[1], two[1], "LABEL does not see V");
    assert_ne!(one[3], two[3], "RUN sees V in its environment");
    assert_ne!(one[4], two[4], "COPY b builds on the RUN layer");
    // A proxy ARG given without a declaration changes nothing.
    let proxied = keys(&graph(
        APP,
        &[("V", "1"), ("HTTP_PROXY", "http://p")],
        None,
        &imgs,
        &ctx,
    ));
    assert_eq!(one, proxied);
}

#[test]
fn a_config_change_rebuilds_no_layer() {
    let (_d, ctx) = context(&[("a", "A"), ("b", "B")]);
    let imgs = images("m1");
    let base = graph(APP, &[], None, &imgs, &ctx);
    let relabeled = graph(
        &APP.replace("LABEL v=1", "LABEL v=2"),
        &[],
        None,
        &imgs,
        &ctx,
    );
    assert_ne!(
        base.stages[0].steps[1].key,
        relabeled.stages[0].steps[1].key
    );
    assert_eq!(
        base.stages[0].steps[3].key, relabeled.stages[0].steps[3].key,
        "RUN unchanged"
    );
    assert_eq!(base.stages[0].layer_key, relabeled.stages[0].layer_key);
    // But ENV reaches RUN through its environment, and USER/WORKDIR through what RUN sees.
    for change in ["ENV X=1\n", "USER nobody\n", "WORKDIR /srv\n"] {
        let changed = graph(
            &APP.replace("ARG V=1\n", &format!("ARG V=1\n{change}")),
            &[],
            None,
            &imgs,
            &ctx,
        );
        assert_ne!(
            base.stages[0].layer_key, changed.stages[0].layer_key,
            "{change}"
        );
    }
}

#[test]
fn copy_keys_follow_contents_not_times() {
    let (dir, ctx) = context(&[("a", "A"), ("b", "B")]);
    let imgs = images("m1");
    let before = graph(APP, &[], None, &imgs, &ctx);
    let f = std::fs::File::options()
        .append(true)
        .open(dir.path().join("a"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(100))
        .unwrap();
    let touched = scan(dir.path(), &Matcher::default(), &mut StatIndex::default()).unwrap();
    assert_eq!(
        keys(&before),
        keys(&graph(APP, &[], None, &imgs, &touched)),
        "touch keeps every key"
    );
    std::fs::write(dir.path().join("a"), "changed").unwrap();
    let edited = scan(dir.path(), &Matcher::default(), &mut StatIndex::default()).unwrap();
    let after = keys(&graph(APP, &[], None, &imgs, &edited));
    assert_ne!(keys(&before)[0], after[0]);
    let chowned = keys(&graph(
        &APP.replace("COPY a /a", "COPY --chown=1000:1000 a /a"),
        &[],
        None,
        &imgs,
        &ctx,
    ));
    assert_ne!(
        keys(&before)[0],
        chowned[0],
        "--chown is part of what is copied"
    );
    let other_base = keys(&graph(APP, &[], None, &images("m2"), &ctx));
    assert_ne!(
        keys(&before)[0],
        other_base[0],
        "a new base image changes every layer"
    );
}

#[test]
fn unused_stages_are_skipped_and_independent_ones_share_a_wave() {
    let (_d, ctx) = context(&[("a", "A")]);
    let imgs = images("m1");
    let text = "FROM busybox AS a\nRUN work a\nFROM busybox AS b\nRUN work b\nFROM busybox AS unused\nRUN nothing\nFROM scratch AS final\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n";
    let g = graph(text, &[], None, &imgs, &ctx);
    assert_eq!(g.skipped, [2]);
    assert_eq!(g.waves, [vec![0, 1], vec![3]]);
    let a_key = g
        .stages
        .iter()
        .find(|s| s.index == 0)
        .unwrap()
        .layer_key
        .clone();
    // COPY --from=a follows stage a's layer key.
    let changed = graph(
        &text.replace("RUN work a", "RUN work a2"),
        &[],
        None,
        &imgs,
        &ctx,
    );
    let final_before = &g.stages.last().unwrap().steps[0].key;
    let final_after = &changed.stages.last().unwrap().steps[0].key;
    assert_ne!(final_before, final_after);
    assert_ne!(a_key, changed.stages[0].layer_key);
    assert_eq!(
        g.stages[1].layer_key, changed.stages[1].layer_key,
        "stage b is unaffected"
    );
    assert_eq!(graph(text, &[], Some("b"), &imgs, &ctx).waves, [vec![1]]);
}

#[test]
fn an_unknown_base_image_names_its_line() {
    let (_d, ctx) = context(&[]);
    let df = parse_dockerfile("FROM scratch\nRUN x\nFROM nosuch\n").unwrap();
    let err = plan(
        &df,
        &HashMap::new(),
        None,
        &Platforms::default(),
        &images("m"),
        &ctx,
        None,
    )
    .unwrap_err();
    let at = err.location().expect("a located error");
    assert_eq!(at.start_line, 3);
    assert!(err.to_string().contains("no such image: nosuch"), "{err}");
}

/// The `created_by` of every step of the last stage, and the stage's steps.
fn history(text: &str, args: &[(&str, &str)]) -> (Vec<String>, BuildGraph) {
    let (_d, ctx) = context(&[]);
    let g = graph(text, args, None, &images("h"), &ctx);
    let last = g.stages.last().unwrap();
    let h = last
        .steps
        .iter()
        .map(berth_builder::exec::config::created_by)
        .collect();
    (h, g)
}

#[test]
fn run_history_shows_the_args_the_process_gets_with_its_heredocs() {
    let (h, _) = history(
        "FROM busybox\nRUN <<EOF\necho one > /one\necho two > /two\nEOF\n\
         RUN <<EOF\n#!/bin/sh\necho hi\nEOF\n\
         RUN <<EOF sh -e\necho x\nEOF\n\
         RUN <<A cat > /a && <<-B cat > /b\nfrom a\nA\n\tfrom b\n\tB\n\
         RUN [\"echo\", \"a b\"]\n",
        &[],
    );
    assert_eq!(
        h,
        [
            "RUN /bin/sh -c echo one > /one\necho two > /two\n # buildkit",
            "RUN /bin/sh -c /dev/pipes/EOF # buildkit",
            "RUN /bin/sh -c <<EOF sh -e\necho x\nEOF # buildkit",
            // The shell is given a `<<-` body as written, tabs and all.
            "RUN /bin/sh -c <<A cat > /a && <<-B cat > /b\nfrom a\nA\n\tfrom b\nB # buildkit",
            "RUN echo a b # buildkit",
        ]
    );
}

#[test]
fn run_history_lists_every_declared_arg_with_the_value_the_step_sees() {
    let (h, _) = history("FROM busybox\nARG L\nENV L=e\nRUN true\n", &[]);
    assert_eq!(h[2], "RUN |1 L=e /bin/sh -c true # buildkit");
    // Declared proxy args are listed; undeclared ones given as build args are not.
    let (h, _) = history(
        "FROM busybox\nARG HTTP_PROXY=http://x\nARG A=1 B\nARG A=2\nRUN true\n",
        &[("HTTPS_PROXY", "http://y")],
    );
    assert_eq!(
        h[3],
        "RUN |3 HTTP_PROXY=http://x A=2 B= /bin/sh -c true # buildkit"
    );
    // A declared proxy arg's URL credentials stay out of the image.
    let (h, _) = history(
        "FROM busybox\nARG https_proxy\nRUN true\n",
        &[("https_proxy", "http://user:pass@127.0.0.1:9")],
    );
    assert_eq!(
        h[1],
        "RUN |1 https_proxy=http://xxxxx@127.0.0.1:9 /bin/sh -c true # buildkit"
    );
    // A stage built on another starts with its ARGs.
    let (h, _) = history(
        "FROM busybox AS base\nARG P=1\nFROM base\nARG C=2\nRUN true\n",
        &[],
    );
    assert_eq!(h[1], "RUN |2 P=1 C=2 /bin/sh -c true # buildkit");
}

#[test]
fn a_later_arg_wins_over_an_earlier_env_for_the_steps() {
    let (h, g) = history(
        "FROM busybox\nENV V=env\nARG V=arg\nENV W=$V\nRUN echo $V\nARG X=arg\nENV X=env\nRUN true\n",
        &[],
    );
    let steps = &g.stages[0].steps;
    let run = &steps[3].context;
    assert!(run.env.contains(&"V=arg".to_owned()), "{:?}", run.env);
    assert!(run.env.contains(&"W=arg".to_owned()), "{:?}", run.env);
    assert_eq!(h[3], "RUN |1 V=arg /bin/sh -c echo $V # buildkit");
    assert!(steps[6].context.env.contains(&"X=env".to_owned()));
    assert_eq!(h[6], "RUN |2 V=arg X=env /bin/sh -c true # buildkit");
    // The image's Env is ENV's alone.
    assert!(g.stages[0].end.env.contains(&"V=env".to_owned()));
}

#[test]
fn an_absolute_workdir_is_kept_as_written_and_a_relative_one_joined() {
    let (h, g) = history(
        "FROM busybox\nWORKDIR /w/x/..\nRUN pwd\nWORKDIR y/../z\nRUN pwd\nWORKDIR /a//b/\n",
        &[],
    );
    assert_eq!(
        [h[0].as_str(), h[2].as_str(), h[4].as_str()],
        ["WORKDIR /w/x/..", "WORKDIR /w/z", "WORKDIR /a//b/"]
    );
    let steps = &g.stages[0].steps;
    // Steps run in the cleaned directory.
    assert_eq!(steps[1].context.workdir, "/w");
    assert_eq!(steps[3].context.workdir, "/w/z");
    assert_eq!(g.stages[0].end.workdir, "/a/b");
}

#[test]
fn healthcheck_history_is_the_config_printed_as_the_current_frontend_does() {
    let (h, _) = history(
        "FROM busybox\nHEALTHCHECK NONE\n\
         HEALTHCHECK --interval=90s --timeout=1500ms --start-period=1h --start-interval=2s --retries=3 CMD curl -f x\n\
         HEALTHCHECK CMD [\"/bin/check\", \"a b\"]\n",
        &[],
    );
    assert_eq!(
        h,
        [
            "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
            "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:1m30s Timeout:1.5s StartPeriod:1h0m0s StartInterval:2s Retries:3}",
            "HEALTHCHECK {Test:[CMD /bin/check a b] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
        ]
    );
}

#[test]
fn durations_print_as_go_prints_them() {
    use berth_builder::exec::config::go_duration_string as d;
    assert_eq!(
        [
            d(0),
            d(999),
            d(1_500),
            d(100_000_000),
            d(2_000_000_000),
            d(90_500_000_000),
            d(3_600_000_000_000)
        ],
        ["0s", "999ns", "1.5µs", "100ms", "2s", "1m30.5s", "1h0m0s"]
    );
}

#[test]
fn a_missing_path_is_added_after_the_base_environment() {
    let mut env = vec!["A=1".to_owned()];
    berth_builder::plan::default_path(&mut env);
    assert_eq!(env[0], "A=1");
    assert!(env[1].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
    let mut env = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
    berth_builder::plan::default_path(&mut env);
    assert_eq!(env, ["PATH=/bin", "A=1"]);
}
