//! The frontend's rules: errors with lines and suggestions, flags, stages and scopes,
//! expansion, ONBUILD, heredocs, warnings.

use std::collections::HashMap;

use berth_builder::dockerfile::parse;
use berth_builder::dockerfile::shell::Lex;
use berth_builder::instructions::stages::{
    Platforms, StageScope, dependencies, global_scope, onbuild_triggers, resolve_from,
    target_stages, unused_build_args,
};
use berth_builder::instructions::{Command, Instruction, parse_dockerfile};

fn args(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn unknown_instruction_names_the_line_and_suggests() {
    let text = "FROM busybox\n\nRUNN echo hi\n";
    let err = parse_dockerfile(text).unwrap_err();
    assert_eq!(err.start_line, 3);
    assert!(
        err.message
            .contains("unknown instruction: RUNN (did you mean RUN?)"),
        "{}",
        err.message
    );
    let shown = err.render(text, "Dockerfile");
    assert!(shown.starts_with("Dockerfile:3\n"), "{shown}");
    assert!(shown.contains(">>> RUNN echo hi"), "{shown}");
    assert!(shown.contains("^^^^"), "{shown}");
    let err = parse_dockerfile("FROM a\nCOPPY x y\n").unwrap_err();
    assert!(err.message.contains("did you mean COPY?"));
    let err = parse_dockerfile("FROM a\nXYZZY x\n").unwrap_err();
    assert!(!err.message.contains("did you mean"), "{}", err.message);
}

#[test]
fn flags_are_checked_per_instruction() {
    for (text, want) in [
        ("FROM a\nADD --from=b x y\n", "unknown flag: --from"),
        (
            "FROM a\nRUN --network=bridge true\n",
            "unsupported network mode",
        ),
        ("FROM a\nCOPY --chmod=999 x y\n", "invalid --chmod"),
        (
            "FROM a\nCOPY --from x y\n",
            "missing a value on flag: --from",
        ),
        ("FROM a\nWORKDIR --x=1 /a\n", "unknown flag: --x"),
        ("FROM --plat=x a\n", "unknown flag: --plat"),
        (
            "FROM a\nHEALTHCHECK --interval=soon CMD true\n",
            "invalid duration",
        ),
        ("FROM a\nCOPY x\n", "at least two arguments"),
        ("FROM a\nENV PATH\n", "must have two arguments"),
        ("FROM a\nSHELL /bin/sh -c\n", "JSON form"),
    ] {
        let err = parse_dockerfile(text).unwrap_err();
        assert!(
            err.message.contains(want),
            "{text:?}: {} (want {want:?})",
            err.message
        );
        assert_eq!(err.start_line, text.lines().count(), "{text:?}");
    }
    let df = parse_dockerfile("FROM a\nCOPY --from=b --chown=1:2 --chmod=u+x,g=r --link --parents --exclude=*.md --exclude=x a b /dst/\n").unwrap();
    let Instruction::Copy(c) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert_eq!(
        (
            c.from.as_deref(),
            c.chown.as_deref(),
            c.chmod.as_deref(),
            c.link,
            c.parents
        ),
        (Some("b"), Some("1:2"), Some("u+x,g=r"), true, true)
    );
    assert_eq!(c.exclude, ["*.md", "x"]);
    assert_eq!(
        (c.sources.as_slice(), c.dest.as_str()),
        (&["a".to_owned(), "b".to_owned()][..], "/dst/")
    );
}

#[test]
fn only_arg_before_from_and_stage_names() {
    assert!(
        parse_dockerfile("RUN true\nFROM a\n")
            .unwrap_err()
            .message
            .contains("no build stage")
    );
    assert!(parse_dockerfile("ARG V=1\nFROM a:$V\n").is_ok());
    assert!(
        parse_dockerfile("FROM a AS 1st\n")
            .unwrap_err()
            .message
            .contains("invalid name for build stage")
    );
    assert!(
        parse_dockerfile("FROM a AS x\nFROM b AS X\n")
            .unwrap_err()
            .message
            .contains("duplicate stage name")
    );
    assert!(
        parse_dockerfile("FROM a b\n")
            .unwrap_err()
            .message
            .contains("one or three arguments")
    );
    assert!(
        parse_dockerfile("ARG X\n")
            .unwrap_err()
            .message
            .contains("no FROM")
    );
    let df = parse_dockerfile("from a As Builder\n").unwrap();
    assert_eq!(df.stages[0].from.name.as_deref(), Some("builder"));
}

#[test]
fn onbuild_rules() {
    assert!(
        parse_dockerfile("FROM a\nONBUILD FROM b\n")
            .unwrap_err()
            .message
            .contains("FROM isn't allowed as an ONBUILD trigger")
    );
    assert!(
        parse_dockerfile("FROM a\nONBUILD ONBUILD RUN x\n")
            .unwrap_err()
            .message
            .contains("Chaining ONBUILD")
    );
    assert!(
        parse_dockerfile("FROM a\nONBUILD MAINTAINER me\n")
            .unwrap_err()
            .message
            .contains("MAINTAINER isn't allowed")
    );
    let df = parse_dockerfile("FROM a\nONBUILD  RUN echo hi\n").unwrap();
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Onbuild("RUN echo hi".into())
    );
    let triggers = onbuild_triggers(&["RUN echo hi".into(), "COPY . /app".into()], '\\').unwrap();
    assert!(
        matches!(&triggers[0].instruction, Instruction::Run(r) if r.command == Command::Shell("echo hi".into()))
    );
    assert!(matches!(&triggers[1].instruction, Instruction::Copy(_)));
    assert!(onbuild_triggers(&["FROM x".into()], '\\').is_err());
    assert!(onbuild_triggers(&["ONBUILD RUN x".into()], '\\').is_err());
}

#[test]
fn global_args_work_in_from_only_unless_redeclared() {
    let text = "ARG BASE=alpine\nARG TAG=3\nFROM ${BASE}:${TAG} AS one\nRUN echo\nARG TAG\nARG LOCAL=x-$TAG\nENV LOCAL=env-wins\nWORKDIR /w/$BASE/$TAG\n";
    let df = parse_dockerfile(text).unwrap();
    let build_args = args(&[("TAG", "3.19")]);
    let global = global_scope(&df, &build_args, &Platforms::default()).unwrap();
    let stage = &df.stages[0];
    assert_eq!(resolve_from(&df, stage, &global).unwrap().0, "alpine:3.19");
    let lex = Lex::new('\\');
    let mut scope = StageScope::default();
    let mut last = None;
    for l in &stage.instructions {
        last = Some(
            scope
                .apply(&l.instruction, &build_args, &global, &lex)
                .unwrap(),
        );
    }
    // BASE was not redeclared in the stage: empty there; TAG was, and takes the build arg.
    assert_eq!(last.unwrap(), Instruction::Workdir("/w//3.19".into()));
    let vars = scope.vars();
    assert_eq!(vars["LOCAL"], "env-wins", "ENV shadows ARG");
    assert!(!vars.contains_key("BASE"));
}

#[test]
fn automatic_platform_args_are_global() {
    let df = parse_dockerfile("FROM --platform=$BUILDPLATFORM img:$TARGETARCH\n").unwrap();
    let p = Platforms {
        build: "linux/amd64".parse().unwrap(),
        target: "linux/arm64".parse().unwrap(),
    };
    let global = global_scope(&df, &HashMap::new(), &p).unwrap();
    assert_eq!(
        resolve_from(&df, &df.stages[0], &global).unwrap(),
        ("img:arm64".into(), Some("linux/amd64".into()))
    );
    assert_eq!(global["TARGETVARIANT"], "v8");
}

#[test]
fn expansion_follows_the_reference_table() {
    let text = "FROM a\nENV D=/data F=file\nENV abc=hello\nENV abc=bye def=$abc\nCOPY $F ${D}/ \nRUN echo $D\nCMD echo $D\nCOPY \\$F /quux\nUSER ${U:-nobody}\nEXPOSE ${P:-80}/udp\nLABEL \"k\"=\"a b\"\n";
    let df = parse_dockerfile(text).unwrap();
    let lex = Lex::new('\\');
    let mut scope = StageScope::default();
    let out: Vec<Instruction> = df.stages[0]
        .instructions
        .iter()
        .map(|l| {
            scope
                .apply(&l.instruction, &HashMap::new(), &HashMap::new(), &lex)
                .unwrap()
        })
        .collect();
    assert_eq!(
        scope.vars()["def"],
        "hello",
        "one instruction sees the variables from before it"
    );
    let Instruction::Copy(c) = &out[3] else {
        panic!()
    };
    assert_eq!((c.sources[0].as_str(), c.dest.as_str()), ("file", "/data/"));
    assert!(
        matches!(&out[4], Instruction::Run(r) if r.command == Command::Shell("echo $D".into())),
        "RUN is the shell's"
    );
    assert_eq!(out[5], Instruction::Cmd(Command::Shell("echo $D".into())));
    let Instruction::Copy(c) = &out[6] else {
        panic!()
    };
    assert_eq!(c.sources[0], "$F");
    assert_eq!(out[7], Instruction::User("nobody".into()));
    assert_eq!(out[8], Instruction::Expose(vec!["80/udp".into()]));
    let Instruction::Label(l) = &out[9] else {
        panic!()
    };
    assert_eq!((l[0].key.as_str(), l[0].value.as_str()), ("k", "a b"));
}

#[test]
fn targets_dependencies_and_cycles() {
    let text = "FROM a AS base\nFROM base AS build\nRUN make\nFROM a AS unused\nFROM b AS test\nCOPY --from=build /x /x\nRUN --mount=type=bind,from=0,target=/m true\nFROM scratch\nARG SRC=build\nCOPY --from=$SRC /out /\n";
    let df = parse_dockerfile(text).unwrap();
    let global = global_scope(&df, &HashMap::new(), &Platforms::default()).unwrap();
    let deps = dependencies(&df, &HashMap::new(), &global).unwrap();
    assert_eq!(target_stages(&df, None, &deps).unwrap(), [0, 1, 4]);
    assert_eq!(target_stages(&df, Some("test"), &deps).unwrap(), [0, 1, 3]);
    assert_eq!(target_stages(&df, Some("base"), &deps).unwrap(), [0]);
    assert!(
        target_stages(&df, Some("nope"), &deps)
            .unwrap_err()
            .message
            .contains("could not be found")
    );

    let cyc = parse_dockerfile(
        "FROM a AS one\nCOPY --from=two /x /x\nFROM a AS two\nCOPY --from=one /y /y\n",
    )
    .unwrap();
    let g = global_scope(&cyc, &HashMap::new(), &Platforms::default()).unwrap();
    assert!(
        dependencies(&cyc, &HashMap::new(), &g)
            .unwrap_err()
            .message
            .contains("circular dependency")
    );
    let own = parse_dockerfile("FROM a AS me\nCOPY --from=me /x /x\n").unwrap();
    let err = dependencies(&own, &HashMap::new(), &g).unwrap_err();
    assert!(
        err.message
            .contains("circular dependency detected on stage: me")
            && err.start_line == 2
    );
}

#[test]
fn unused_build_args_are_reported() {
    let df =
        parse_dockerfile("ARG G\nFROM a\nARG USED\nFROM b AS other\nARG ONLY_OTHER\n").unwrap();
    let build_args = args(&[
        ("G", "1"),
        ("USED", "1"),
        ("ONLY_OTHER", "1"),
        ("TYPO", "1"),
        ("HTTP_PROXY", "x"),
    ]);
    assert_eq!(
        unused_build_args(&df, &[0], &build_args),
        ["ONLY_OTHER", "TYPO"]
    );
}

#[test]
fn heredocs_are_read_with_their_lines() {
    let text = "FROM a\nRUN <<EOF\necho $HOME\nEOF\nRUN <<-'EOT' bash\n\t\techo literal $x\n\tEOT\nRUN 3<<A cat /dev/fd/3 && cat <<\"B\"\nfirst\nA\nsecond\nB\nCOPY <<conf /etc/app.conf\nkey=value\nconf\nRUN echo done\n";
    let ast = parse(text).unwrap().ast;
    let run1 = &ast.children[1];
    assert_eq!((run1.start_line, run1.end_line), (2, 4));
    assert_eq!(run1.heredocs[0].content, "echo $HOME\n");
    assert!(run1.heredocs[0].expand);
    let run2 = &ast.children[2];
    assert_eq!(
        (
            run2.heredocs[0].name.as_str(),
            run2.heredocs[0].chomp,
            run2.heredocs[0].expand
        ),
        ("EOT", true, false)
    );
    assert_eq!(run2.heredocs[0].content, "echo literal $x\n");
    let run3 = &ast.children[3];
    assert_eq!(run3.heredocs.len(), 2);
    assert_eq!(
        (
            run3.heredocs[0].file_descriptor,
            run3.heredocs[0].content.as_str()
        ),
        (3, "first\n")
    );
    assert_eq!(
        (run3.heredocs[1].name.as_str(), run3.heredocs[1].expand),
        ("B", false)
    );
    let copy = &ast.children[4];
    assert_eq!(copy.heredocs[0].content, "key=value\n");
    assert_eq!(ast.children[5].start_line, 16);
    assert!(
        parse("FROM a\nRUN <<EOF\nno end\n")
            .unwrap_err()
            .message
            .contains("unterminated heredoc")
    );
}

#[test]
fn warnings_do_not_fail() {
    let df =
        parse_dockerfile("FROM a\nMAINTAINER me\nCMD echo hi\nRUN echo \\\n\n  there\n").unwrap();
    let all: Vec<&str> = df.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        all.iter()
            .any(|m| m.contains("MAINTAINER instruction is deprecated")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("JSON arguments recommended for CMD")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|m| m.contains("Empty continuation line")),
        "{all:?}"
    );
}

#[test]
fn directives_only_at_the_top() {
    let df =
        parse_dockerfile("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN echo `\n  hi\n")
            .unwrap();
    assert!(
        matches!(&df.stages[0].instructions[0].instruction, Instruction::Run(r) if r.command == Command::Shell("echo   hi".into()))
    );
    let r = parse("FROM a\n# escape=`\nRUN x\n").unwrap();
    assert_eq!(r.directives.escape, '\\');
    assert!(
        parse("# escape=\\\n# escape=`\nFROM a\n")
            .unwrap_err()
            .message
            .contains("only one escape")
    );
    assert!(
        parse("# check=skip=JSONArgsRecommended\nFROM a\n")
            .unwrap()
            .directives
            .check
            .is_some()
    );
}

#[test]
fn an_instruction_of_very_many_words_is_an_error_not_a_stack_overflow() {
    // 40,000 ENV pairs: a chain of 120,000 word nodes, run on a 2 MiB thread (the size of
    // a build's stage threads) so that any recursion over the chain would overflow.
    let pairs: String = (0..40_000).map(|i| format!(" K{i}=v")).collect();
    let text = format!("FROM scratch\nENV{pairs}\n");
    let err = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || parse_dockerfile(&text).map(|_| ()).unwrap_err().to_string())
        .unwrap()
        .join()
        .unwrap();
    assert!(err.contains("words"), "{err}");
    // A long but ordinary instruction still parses.
    let pairs: String = (0..1_000).map(|i| format!(" K{i}=v")).collect();
    assert!(parse_dockerfile(&format!("FROM scratch\nENV{pairs}\n")).is_ok());
}

#[test]
fn an_instruction_at_the_word_limit_parses_clones_and_compares_on_a_small_stack() {
    let pairs: String = (0..1_300).map(|i| format!(" K{i}=v")).collect();
    let text = format!("FROM scratch\nENV{pairs}\n");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let ast = parse(&text).unwrap().ast;
            let copy = ast.clone();
            assert!(copy == ast);
            assert!(ast.children[1].dump().starts_with("env"));
        })
        .unwrap()
        .join()
        .unwrap();
}
