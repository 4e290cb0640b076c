//! `berth build [OPTIONS] CONTEXT`: reads the Dockerfile, scans the context (the stat index
//! kept in the store makes an unchanged context cost no file reads), plans the build
//! (cache keys, stages the target needs) and runs it; tags the image.
//!
//! Output (`--progress`): `plain` prints one line per event, prefixed with the step
//! (`#3 [build 2/5] RUN make`, `#3 CACHED`, `#3 <output line>`, `#3 DONE 1.2s`); `tty` is
//! a live view (indicatif): one line per step with a spinner, its elapsed time and its last
//! line of output while it runs, `CACHED` or its duration when done; `quiet` prints only the
//! image ID; `auto` (the default) is `tty` when stderr is a terminal, else `plain`.
//! `--log-file` keeps every line of every RUN step, whatever the view.
//!
//! FROM images come from the local store (`berth import`/`load`; pulling is issue 7).
//! RUN steps get the host's network by default (`--network default` is `host`: berth has
//! no bridge network, and builds expect to reach package mirrors); `--network none`
//! isolates them. A Dockerfile cannot widen that: `RUN --network=host` needs
//! `--allow network.host`, `RUN --security=insecure` needs `--allow security.insecure`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_builder::exec::{BuildError, BuildOptions, Event, Progress};
use berth_builder::instructions::stages;
use berth_builder::plan::{BaseImage, Resolver};
use berth_oci::{Platform, Reference};
use berth_store::Store;

use crate::UsageError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name and optionally tag the image (name:tag); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Do not use the cache for these stages
    #[arg(long)]
    no_cache_filter: Vec<String>,
    /// Target platform (os/arch[/variant]) for FROM resolution and TARGETPLATFORM
    #[arg(long)]
    platform: Option<String>,
    /// Output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    progress: String,
    /// Print only the image ID (same as --progress=quiet)
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to this file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set a label on the image (KEY=VALUE)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Network for RUN steps: default (the host's), none or host
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    network: String,
    /// Grant an entitlement to the Dockerfile: network.host (RUN --network=host),
    /// security.insecure (RUN --security=insecure); may be repeated or comma-separated
    #[arg(long = "allow", value_delimiter = ',')]
    allow: Vec<berth_builder::exec::policy::Entitlement>,
    /// A resource limit for RUN steps, NAME=SOFT[:HARD] (as `run --ulimit`)
    #[arg(long = "ulimit", value_parser = berth_runtime::spec::Rlimit::parse)]
    ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// Set every time in the image to this Unix time (as SOURCE_DATE_EPOCH)
    #[arg(long)]
    timestamp: Option<u64>,
    /// Keep the full output of every RUN step in this file
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret` (id=ID,src=FILE or id=ID,env=VAR); never stored
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Also write the result: type=oci,dest=FILE | type=docker,dest=FILE | type=local,dest=DIR
    /// (a bare path is type=local)
    #[arg(short = 'o', long)]
    output: Vec<String>,
    /// Layer compression for --output type=oci and --push: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    /// Check the registry for a newer version of every FROM image
    #[arg(long)]
    pull: bool,
    /// Push every -t name to its registry when the build is done
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    tls: crate::wiring::TlsArgs,
    /// The build context directory
    context: PathBuf,
}

/// FROM images: the local store, else pulled from their registry (always checked again with
/// `--pull`; each image at most once per build).
struct StoreResolver {
    store: Arc<Store>,
    pull: bool,
    quiet: bool,
    options: berth_registry_client::Options,
    pulled: Mutex<std::collections::HashSet<String>>,
}

impl Resolver for StoreResolver {
    /// The store's image when it is for `platform` (default: the host's), else a pull of
    /// that platform (as BuildKit, which never builds on an image of another platform than
    /// the one asked for).
    fn resolve(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, String> {
        let wanted = match platform {
            Some(p) => p
                .parse::<Platform>()
                .map_err(|e| format!("base image {name:?}: {e}"))?,
            None => Platform::host(),
        };
        let found = |image: berth_store::Image| BaseImage {
            manifest: image.manifest.digest.clone(),
            config: image.config,
        };
        let platform_of = |image: &berth_store::Image| {
            let c = &image.config;
            Platform::new(&c.os, &c.architecture, c.variant.as_deref())
        };
        // Configs without a platform (some old images) fit any.
        let fits = |image: &berth_store::Image| {
            image.config.architecture.is_empty() || wanted.matches(&platform_of(image))
        };
        let pulled_key = format!("{name} {wanted}");
        let done = self.pulled.lock().expect("no panics").contains(&pulled_key);
        let mut other_platform = None;
        if !self.pull || done {
            match self.store.resolve_for(name, &wanted) {
                Ok(image) if fits(&image) => return Ok(found(image)),
                Ok(image) => other_platform = Some(platform_of(&image)),
                Err(berth_store::StoreError::NoSuchImage(_)) if !done => {}
                Err(e) => return Err(format!("base image {name:?}: {e}")),
            }
        }
        let failed = |e: String| match &other_platform {
            Some(have) => format!(
                "base image {name:?}: the store has it for {have}, not {wanted}, and pulling {wanted} failed: {e}"
            ),
            None => format!("base image {name:?}: {e}"),
        };
        let reference = Reference::parse(name).map_err(|e| failed(e.to_string()))?;
        if !self.quiet {
            eprintln!("pulling {} ({wanted}) for FROM", reference.familiar());
        }
        crate::block_on(crate::transfer::pull_image(
            self.store.clone(),
            &reference,
            &self.options,
            Some(wanted.clone()),
            self.quiet,
        ))
        .map_err(|e| failed(format!("{e:#}")))?;
        self.pulled.lock().expect("no panics").insert(pulled_key);
        let image = self
            .store
            .resolve_for(&reference.to_string(), &wanted)
            .map_err(|e| format!("base image {name:?}: {e}"))?;
        if !fits(&image) {
            return Err(format!(
                "base image {name:?}: the registry gave an image for {}, not {wanted}",
                platform_of(&image)
            ));
        }
        Ok(found(image))
    }
}

/// `ADD http(s)://`: a plain GET, streamed into the file. HTTPS trusts the system's roots
/// plus the CAs of the host's certs.d directory, the same place as for registries
/// (`/etc/docker/certs.d/<host[:port]>/*.crt`, `BERTH_CERTS_DIR`).
#[derive(Debug)]
struct Download {
    certs_dirs: Vec<PathBuf>,
}

impl berth_builder::exec::Fetch for Download {
    fn fetch(&self, url: &str, out: &mut dyn Write) -> Result<Option<i64>, String> {
        // Every message names the URL without its credentials (reqwest's errors name it too).
        let redact = |m: String| berth_builder::redact::url_credentials(&m).into_owned();
        crate::block_on(async {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("ADD {url}: {e}"))?;
            let host = match (parsed.host_str(), parsed.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => String::new(),
            };
            let (tls, _) =
                berth_registry_client::tls::client_config(&host, &self.certs_dirs, true)?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())?;
            let mut resp = client.get(url).send().await.map_err(|e| {
                format!(
                    "ADD {url}: {}",
                    berth_registry_client::client::network_error(&host, &e)
                )
            })?;
            if !resp.status().is_success() {
                return Err(format!("ADD {url}: the server answered {}", resp.status()));
            }
            let modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(httpdate)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("ADD {url}: {e}"))? {
                out.write_all(&chunk)
                    .map_err(|e| format!("ADD {url}: {e}"))?;
            }
            Ok(modified)
        })
        .map_err(redact)
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate).
fn httpdate(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}

/// `--progress=plain`, and the log file.
struct Plain {
    quiet: bool,
    numbers: Mutex<(HashMap<String, usize>, usize)>,
    log: Option<Mutex<std::fs::File>>,
}

impl Plain {
    fn number(&self, id: &str) -> usize {
        let mut n = self.numbers.lock().expect("no panics");
        if let Some(k) = n.0.get(id) {
            return *k;
        }
        n.1 += 1;
        let k = n.1;
        n.0.insert(id.to_owned(), k);
        k
    }
}

impl Progress for Plain {
    fn event(&self, event: Event) {
        let line = match &event {
            Event::Step { id, text } => format!(
                "#{} [{id}] {}",
                self.number(id),
                crate::output::terminal_safe_text(text)
            ),
            Event::Cached { id } => format!("#{} CACHED", self.number(id)),
            // A step's output shows as text: its escapes never reach the terminal (or a
            // terminal that shows the log file).
            Event::Output { id, line } => format!(
                "#{} {}",
                self.number(id),
                crate::output::terminal_safe_text(line)
            ),
            Event::Committed {
                id,
                digest,
                size,
                elapsed,
            } => format!(
                "#{} layer {} {} committed in {:.2}s",
                self.number(id),
                &digest.hex()[..12],
                crate::output::human_size(*size),
                elapsed.as_secs_f64()
            ),
            Event::Done { id, elapsed } => {
                format!("#{} DONE {:.1}s", self.number(id), elapsed.as_secs_f64())
            }
        };
        if let Some(log) = &self.log {
            let _ = writeln!(log.lock().expect("no panics"), "{line}");
        }
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// `--output`: where and in which form.
#[derive(Debug)]
struct Output {
    kind: String,
    dest: PathBuf,
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    if !spec.contains('=') {
        return Ok(Output {
            kind: "local".into(),
            dest: PathBuf::from(spec),
        });
    }
    let (mut kind, mut dest) = (None, None);
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(UsageError(format!(
                    "--output {spec:?}: expected type=oci|docker|local,dest=PATH"
                ))
                .into());
            }
        }
    }
    match (kind, dest) {
        (Some(k), Some(d)) if matches!(k.as_str(), "oci" | "docker" | "local") => {
            Ok(Output { kind: k, dest: d })
        }
        (Some(k), _) if k == "registry" || k == "image" => Err(UsageError(format!(
            "--output type={k} needs the registry client, which is not written yet"
        ))
        .into()),
        _ => Err(UsageError(format!(
            "--output {spec:?}: expected type=oci|docker|local,dest=PATH"
        ))
        .into()),
    }
}

fn write_output(
    store: &Store,
    image: &berth_store::Image,
    tags: &[Reference],
    out: &Output,
    compression: &str,
) -> anyhow::Result<()> {
    if out.kind == "local" {
        berth_builder::exec::export_rootfs(store, image, &out.dest)
            .map_err(|e| anyhow::anyhow!("--output {}: {e}", out.dest.display()))?;
        return Ok(());
    }
    let image = if out.kind == "oci" {
        store.distribution_image(image, crate::wiring::compression(compression))?
    } else {
        image.clone()
    };
    let images = [(image, tags.to_vec())];
    crate::output_file::write_atomically(&out.dest, crate::output_file::ARCHIVE_MODE, |f| {
        match out.kind.as_str() {
            "docker" => berth_store::archive::write_docker_archive(store, &images, f)?,
            _ => berth_store::archive::write_oci_archive(store, &images, f)?,
        }
        Ok(())
    })
    .map_err(|e| e.context(format!("writing {}", out.dest.display())))
}

/// How many of a running step's last output lines the tty view shows under it.
const TTY_OUTPUT_LINES: usize = 3;

/// A running step's bar, its title, and its last lines of output.
type StepBar = (indicatif::ProgressBar, String, Vec<String>);

/// `--progress=tty`: a live view of the running steps.
struct Tty {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, StepBar>>,
    log: Option<Mutex<std::fs::File>>,
}

impl Progress for Tty {
    fn event(&self, event: Event) {
        use std::time::Duration;
        let style = |t: &str| indicatif::ProgressStyle::with_template(t).expect("a valid template");
        let mut bars = self.bars.lock().expect("no panics");
        if let Some(log) = &self.log {
            let line = match &event {
                Event::Step { id, text } => {
                    format!("[{id}] {}", crate::output::terminal_safe_text(text))
                }
                Event::Cached { id } => format!("[{id}] CACHED"),
                Event::Output { id, line } => {
                    format!("[{id}] {}", crate::output::terminal_safe_text(line))
                }
                Event::Committed { id, size, .. } => format!("[{id}] layer of {size} bytes"),
                Event::Done { id, elapsed } => format!("[{id}] DONE {:.1}s", elapsed.as_secs_f64()),
            };
            let _ = writeln!(log.lock().expect("no panics"), "{line}");
        }
        match event {
            Event::Step { id, text } => {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style(" {spinner} {elapsed:>4} {msg}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                let title = format!("[{id}] {}", crate::output::terminal_safe_text(&text));
                bar.set_message(title.clone());
                bars.insert(id, (bar, title, Vec::new()));
            }
            Event::Output { id, line } => {
                if let Some((bar, title, last)) = bars.get_mut(&id) {
                    if last.len() == TTY_OUTPUT_LINES {
                        last.remove(0);
                    }
                    // The live view draws lines inside its own: a step's escapes must not
                    // move the cursor or rewrite the terminal under it.
                    last.push(
                        crate::output::terminal_safe_text(&line)
                            .chars()
                            .take(100)
                            .collect(),
                    );
                    let mut message = title.clone();
                    for l in last.iter() {
                        message.push_str("\n        | ");
                        message.push_str(l);
                    }
                    bar.set_message(message);
                }
            }
            Event::Committed { .. } => {}
            Event::Cached { id } => {
                if let Some((bar, title, _)) = bars.get(&id) {
                    bar.set_style(style(" = CACHED {msg}"));
                    bar.finish_with_message(title.clone());
                }
            }
            Event::Done { id, elapsed } => {
                if let Some((bar, title, _)) = bars.remove(&id)
                    && !bar.is_finished()
                {
                    bar.set_style(style(" = {prefix:>6} {msg}"));
                    bar.set_prefix(format!("{:.1}s", elapsed.as_secs_f64()));
                    bar.finish_with_message(title);
                }
            }
        }
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

pub fn run(shared: Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let store: &Store = &shared;
    let started = Instant::now();
    if !args.context.is_dir() {
        return Err(UsageError(format!(
            "context {} is not a directory",
            args.context.display()
        ))
        .into());
    }
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let (text, name) = if file.as_os_str() == "-" {
        (
            std::io::read_to_string(std::io::stdin())?,
            "Dockerfile".to_owned(),
        )
    } else {
        // The context's Dockerfile is read inside the context (symlinks resolved there,
        // regular files only, bounded); one the user names outside it is read as given.
        let bytes = berth_builder::context::read_dockerfile(&args.context, args.file.as_deref())
            .map_err(|e| UsageError(format!("{:#}", anyhow::Error::from(e))))?;
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            file.file_name()
                .map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned()),
        )
    };
    let show = |e: berth_builder::dockerfile::ParseError| {
        UsageError(
            berth_builder::redact::url_credentials(e.render(&text, &name).trim_end()).into_owned(),
        )
    };
    let df = berth_builder::instructions::parse_dockerfile(&text).map_err(show)?;
    let mut build_args = HashMap::new();
    for (k, v) in key_values(&args.build_args, "--build-arg")? {
        match v.or_else(|| std::env::var(&k).ok()) {
            Some(v) => {
                build_args.insert(k, v);
            }
            None => continue,
        }
    }
    let labels: BTreeMap<String, String> = key_values(&args.labels, "--label")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let epoch = match args.timestamp {
        Some(t) => Some(t),
        None => build_args
            .get("SOURCE_DATE_EPOCH")
            .cloned()
            .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| UsageError(format!("SOURCE_DATE_EPOCH {s:?}: expected seconds")))
            })
            .transpose()?,
    };
    let mut platforms = stages::Platforms::default();
    if let Some(p) = &args.platform {
        platforms.target = p.parse::<Platform>()?;
    }
    let outputs = args
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    // The context: .dockerignore, then a scan that reuses the saved stat index.
    let matcher = berth_builder::context::load_matcher(&args.context, args.file.as_deref())?;
    let mut index = store
        .read_context_index(&args.context)
        .map(|b| berth_builder::context::StatIndex::from_bytes(&b))
        .unwrap_or_default();
    let context = berth_builder::context::scan(&args.context, &matcher, &mut index)?;
    store.write_context_index(&args.context, &index.to_bytes())?;
    let registry_options = crate::wiring::options(&args.tls);
    let graph = berth_builder::plan::plan(
        &df,
        &build_args,
        args.target.as_deref(),
        &platforms,
        &StoreResolver {
            store: shared.clone(),
            pull: args.pull,
            quiet: args.quiet || args.progress == "quiet",
            options: registry_options.clone(),
            pulled: Mutex::new(Default::default()),
        },
        &context,
    )
    .map_err(show)?;
    let quiet = args.quiet || args.progress == "quiet";
    let needed: Vec<usize> = graph.stages.iter().map(|s| s.index).collect();
    let mut warnings = df.warnings.clone();
    warnings.extend(stages::unused_build_args_warning(
        &stages::unused_build_args(&df, &needed, &build_args),
    ));
    if !quiet {
        for w in &warnings {
            match w.line {
                0 => eprintln!("WARNING: {}", crate::output::terminal_safe_text(&w.message)),
                line => eprintln!(
                    "WARNING: {name}:{line}: {}",
                    crate::output::terminal_safe_text(&w.message)
                ),
            }
        }
    }
    let log = match &args.log_file {
        Some(p) => Some(Mutex::new(crate::output_file::open_append_log(p).map_err(
            |e| UsageError(format!("creating the log file {}: {e:#}", p.display())),
        )?)),
        None => None,
    };
    let tty = match args.progress.as_str() {
        "tty" => true,
        "auto" => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        _ => false,
    } && !quiet;
    let progress: Box<dyn Progress> = if tty {
        Box::new(Tty {
            multi: indicatif::MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            log,
        })
    } else {
        Box::new(Plain {
            quiet,
            numbers: Mutex::new((HashMap::new(), 0)),
            log,
        })
    };
    let mut secrets = BTreeMap::new();
    for spec in &args.secrets {
        let (id, secret) = berth_builder::exec::mounts::Secret::parse(spec).map_err(UsageError)?;
        secrets.insert(id, secret);
    }
    let options = BuildOptions {
        fetch: Some(Arc::new(Download {
            certs_dirs: registry_options.certs_dirs.clone(),
        })),
        secrets,
        exe: std::fs::read_link("/proc/self/exe")?,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        labels,
        network: match args.network.as_str() {
            "none" => berth_runtime::spec::NetworkMode::None,
            _ => berth_runtime::spec::NetworkMode::Host,
        },
        allow: args.allow.clone(),
        epoch,
        platform: platforms.target.clone(),
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        ulimits: args.ulimits.clone(),
    };
    let built = match berth_builder::exec::build(store, &df, &graph, &context, &options, &*progress)
    {
        Ok(b) => b,
        Err(BuildError::Step {
            line,
            message,
            tail,
        }) => {
            if quiet {
                for l in &tail {
                    eprintln!("{}", crate::output::terminal_safe_text(l));
                }
            }
            let e = berth_builder::dockerfile::ParseError::at(line, message);
            let shown = e.render(&text, &name);
            eprintln!(
                "{}",
                crate::output::terminal_safe_text(&berth_builder::redact::url_credentials(
                    shown.trim_end()
                ))
            );
            return Err(anyhow::anyhow!("the build failed at {name}:{line}"));
        }
        Err(e) => return Err(e.into()),
    };
    let desc = built.manifest.descriptor();
    if tags.is_empty() {
        store.add_untagged(&desc)?;
    }
    for t in &tags {
        store.set_tag(t, &desc)?;
    }
    let image = store.resolve(&desc.digest.to_string())?;
    let id = image.id().clone();
    for spec in &outputs {
        write_output(store, &image, &tags, spec, &args.compression)?;
    }
    if args.push {
        if tags.is_empty() {
            return Err(UsageError("--push needs a name: -t REGISTRY/NAME:TAG".into()).into());
        }
        for t in &tags {
            let digest = crate::block_on(crate::transfer::push_image(
                shared.clone(),
                &image,
                t,
                &registry_options,
                &args.compression,
                quiet,
            ))?;
            if !quiet {
                eprintln!("pushed {} ({digest})", t.familiar());
            }
        }
    }
    if let Some(p) = &args.iidfile {
        crate::output_file::write_bytes(
            p,
            id.to_string().as_bytes(),
            crate::output_file::PUBLIC_MODE,
        )
        .map_err(|e| e.context(format!("writing --iidfile {}", p.display())))?;
    }
    if quiet {
        println!("{id}");
    } else {
        let names: Vec<String> = tags.iter().map(|t| t.familiar()).collect();
        eprintln!(
            "built {id}{} in {:.1}s ({} steps run, {} cached)",
            if names.is_empty() {
                String::new()
            } else {
                format!(" as {}", names.join(", "))
            },
            started.elapsed().as_secs_f64(),
            built.executed,
            built.cached
        );
    }
    Ok(0)
}
