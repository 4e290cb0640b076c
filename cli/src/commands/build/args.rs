//! `berth build`'s flags, and the [`BuildRequest`] they make.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use berth_builder::{BuildRequest, DockerfileSource};
use berth_oci::Reference;

use crate::UsageError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name and optionally tag the image (name:tag); may be repeated
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile; `-` reads it
    /// from stdin; inside the archive for a context from stdin or a URL)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages
    #[arg(long)]
    pub no_cache_filter: Vec<String>,
    /// Target platform (os/arch[/variant]) for FROM resolution and TARGETPLATFORM
    #[arg(long)]
    pub platform: Option<String>,
    /// Output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    pub progress: String,
    /// Print only the image ID (same as --progress=quiet)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Set a label on the image (KEY=VALUE)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Network for RUN steps: default (as root the default bridge: outbound access through
    /// NAT, not the host's loopback; rootless, slirp4netns's where it is installed), bridge,
    /// none, host, or slirp4netns (a network of its own with outbound access and no way to
    /// the host's loopback, without root)
    #[arg(long, default_value = "default", value_parser = ["default", "bridge", "none", "host", "slirp4netns"])]
    pub network: String,
    /// Grant an entitlement to the Dockerfile: network.host (RUN --network=host),
    /// security.insecure (RUN --security=insecure); may be repeated or comma-separated
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<berth_builder::exec::policy::Entitlement>,
    /// A resource limit for RUN steps, NAME=SOFT[:HARD] (as `run --ulimit`)
    #[arg(long = "ulimit", value_parser = berth_runtime::spec::Rlimit::parse)]
    pub ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// Set every time in the image to this Unix time (as SOURCE_DATE_EPOCH)
    #[arg(long)]
    pub timestamp: Option<u64>,
    /// Keep the full output of every RUN step in this file
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret` (id=ID,src=FILE or id=ID,env=VAR); never stored
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` (or `ID`) forwards $SSH_AUTH_SOCK,
    /// `ID=SOCKET` another agent, `ID=KEY[,KEY]` private key files; may be repeated
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Also write the result: type=oci|docker,dest=FILE (an image archive), type=tar,dest=FILE
    /// (the files as a tar), type=local,dest=DIR (the files); dest=- is stdout; a bare path
    /// is type=local, `-` is type=tar,dest=-
    #[arg(short = 'o', long)]
    pub output: Vec<String>,
    /// Layer compression for --output type=oci and --push: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Read a build cache: type=registry,ref=NAME, type=local,src=DIR[,tag=T], or NAME (a
    /// cache or an image with inline cache records); may be repeated
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Write the build cache: type=registry,ref=NAME, type=local,dest=DIR[,tag=T] (each with
    /// mode=min|max and compression=gzip|zstd), or type=inline (records in the image); may
    /// be repeated
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Check the registry for a newer version of every FROM image
    #[arg(long)]
    pub pull: bool,
    /// Push every -t name to its registry when the build is done
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub tls: crate::wiring::TlsArgs,
    /// The build context: a directory, `-` (a tar on stdin, plain or gzip, zstd, bzip2 or xz
    /// compressed, or a Dockerfile, with an empty context), an http(s) URL of either, or a
    /// git URL (`https://HOST/REPO.git#REF:SUBDIR`, `git://...`, `git@HOST:REPO.git`)
    pub context: PathBuf,
}

impl Args {
    /// The build these flags ask for (the Dockerfile from stdin for `-f -`; a `--build-arg`
    /// without a value taken from the environment, and left out when it has none there).
    pub fn request(
        &self,
        tags: &[Reference],
        context: &super::context::Context,
    ) -> anyhow::Result<BuildRequest> {
        let dockerfile = match (&self.file, &context.dockerfile) {
            (Some(f), Some(_)) if f.as_os_str() != "-" => {
                return Err(UsageError(format!(
                    "-f {}: the context from {} is a Dockerfile, not an archive",
                    f.display(),
                    context.received_from.as_deref().unwrap_or("stdin"),
                ))
                .into());
            }
            (_, Some(text)) => DockerfileSource::Text {
                text: String::from_utf8_lossy(text).into_owned(),
                name: "Dockerfile".into(),
            },
            (Some(f), None) if f.as_os_str() == "-" => DockerfileSource::Text {
                text: std::io::read_to_string(std::io::stdin())?,
                name: "Dockerfile".into(),
            },
            (Some(f), None) if context.received_from.is_some() => {
                DockerfileSource::File(Some(super::context::dockerfile_in(&context.dir, f)))
            }
            (f, None) => DockerfileSource::File(f.clone()),
        };
        let build_args: HashMap<String, String> = key_values(&self.build_args, "--build-arg")?
            .into_iter()
            .filter_map(|(k, v)| Some((k.clone(), v.or_else(|| std::env::var(&k).ok())?)))
            .collect();
        let labels: BTreeMap<String, String> = key_values(&self.labels, "--label")?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        Ok(BuildRequest {
            context: context.dir.clone(),
            received_from: context.received_from.clone(),
            dockerfile,
            build_args,
            target: self.target.clone(),
            platform: self.platform.as_deref().map(str::parse).transpose()?,
            timestamp: self.timestamp,
            env_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            secrets: self.secrets.clone(),
            ssh: self.ssh.clone(),
            labels,
            tags: tags.to_vec(),
            no_cache: self.no_cache,
            no_cache_filter: self.no_cache_filter.clone(),
            network: match self.network.as_str() {
                "default" => crate::rootless::default_build_network(),
                "bridge" if berth_runtime::userns::rootless() => {
                    return Err(crate::UsageError(
                        "--network bridge needs root; rootless, use --network slirp4netns".into(),
                    )
                    .into());
                }
                other => other.parse().map_err(crate::UsageError)?,
            },
            allow: self.allow.clone(),
            ulimits: self.ulimits.clone(),
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            exe: std::fs::read_link("/proc/self/exe")?,
            inline_cache: false,
            lazy_layers: false,
        })
    }
}

fn key_values(list: &[String], what: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Some(v.to_owned()))),
            None if !kv.is_empty() => Ok((kv.clone(), None)),
            _ => Err(UsageError(format!("{what} {kv:?}: expected KEY=VALUE")).into()),
        })
        .collect()
}
