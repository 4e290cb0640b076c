//! `berth debug dockerfile [-f FILE]`: the parsed Dockerfile as BuildKit's s-expression dump
//! (what BuildKit's parser tests compare), after the full typed check, so every syntax or
//! semantic error shows here as it would in a build: `Dockerfile:LINE`, the lines around it
//! with a caret, exit code 2. Warnings go to stderr.

use std::path::PathBuf;

use crate::UsageError;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Parse a Dockerfile and print its AST
    Dockerfile {
        /// The Dockerfile (`-` for stdin)
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<u8> {
    let Command::Dockerfile { file } = command;
    let (text, name) = if file.as_os_str() == "-" {
        (
            std::io::read_to_string(std::io::stdin())?,
            "Dockerfile".to_owned(),
        )
    } else {
        let text = std::fs::read(&file)
            .map_err(|e| UsageError(format!("reading {}: {e}", file.display())))?;
        (
            String::from_utf8_lossy(&text).into_owned(),
            file.file_name()
                .map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned()),
        )
    };
    let show = |e: berth_builder::dockerfile::ParseError| {
        UsageError(e.render(&text, &name).trim_end().to_owned())
    };
    let parsed = berth_builder::dockerfile::parse(&text).map_err(show)?;
    let typed = berth_builder::instructions::parse_dockerfile(&text).map_err(show)?;
    for w in &typed.warnings {
        eprintln!("WARNING: {name}:{}: {}", w.line, w.message);
    }
    println!("{}", parsed.ast.dump());
    Ok(0)
}
