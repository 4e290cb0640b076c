//! How a build shows its progress (`--progress`): `plain` prints one line per event,
//! prefixed with the step (`#3 [build 2/5] RUN make`, `#3 CACHED`, `#3 <output line>`,
//! `#3 DONE 1.2s`); `tty` is a live view (indicatif): one line per step with a spinner, its
//! elapsed time and its last lines of output while it runs, `CACHED` or its duration when
//! done; `quiet` prints nothing; `auto` is `tty` when stderr is a terminal, else `plain`.
//! `--log-file` keeps every line of every RUN step, whatever the view. What a step prints is
//! shown as text: its escapes never reach the terminal.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use berth_builder::exec::{Event, Progress};

use crate::UsageError;

/// The view `--progress` (and `--quiet`, `--log-file`) ask for.
pub fn view(
    progress: &str,
    quiet: bool,
    log_file: Option<&Path>,
) -> anyhow::Result<Box<dyn Progress>> {
    let log = match log_file {
        Some(p) => Some(Mutex::new(crate::output_file::open_append_log(p).map_err(
            |e| UsageError(format!("creating the log file {}: {e:#}", p.display())),
        )?)),
        None => None,
    };
    let tty = match progress {
        "tty" => true,
        "auto" => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        _ => false,
    } && !quiet;
    Ok(if tty {
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
    })
}

/// `WARNING: Dockerfile:3: ...`.
fn warning(file: &str, line: usize, message: &str) -> String {
    let message = crate::output::terminal_safe_text(message);
    match line {
        0 => format!("WARNING: {message}"),
        line => format!("WARNING: {file}:{line}: {message}"),
    }
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
    fn shows_misses(&self) -> bool {
        !self.quiet || self.log.is_some()
    }

    fn event(&self, event: Event) {
        let line = match &event {
            Event::Warning {
                file,
                line,
                message,
            } => warning(file, *line, message),
            Event::Step { id, text } => format!(
                "#{} [{id}] {}",
                self.number(id),
                crate::output::terminal_safe_text(text)
            ),
            Event::Cached { id } => format!("#{} CACHED", self.number(id)),
            Event::Miss { id, reason } => format!(
                "#{} cache miss: {}",
                self.number(id),
                crate::output::terminal_safe_text(reason)
            ),
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
            errln!("{line}");
        }
    }
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
    /// The live view has no room for them; the log file keeps them.
    fn shows_misses(&self) -> bool {
        self.log.is_some()
    }

    fn event(&self, event: Event) {
        use std::time::Duration;
        let style = |t: &str| indicatif::ProgressStyle::with_template(t).expect("a valid template");
        let mut bars = self.bars.lock().expect("no panics");
        if let Event::Warning {
            file,
            line,
            message,
        } = &event
        {
            let shown = warning(file, *line, message);
            if let Some(log) = &self.log {
                let _ = writeln!(log.lock().expect("no panics"), "{shown}");
            }
            self.multi.suspend(|| errln!("{shown}"));
            return;
        }
        if let Some(log) = &self.log {
            let line = match &event {
                Event::Step { id, text } => {
                    format!("[{id}] {}", crate::output::terminal_safe_text(text))
                }
                Event::Cached { id } => format!("[{id}] CACHED"),
                Event::Miss { id, reason } => format!(
                    "[{id}] cache miss: {}",
                    crate::output::terminal_safe_text(reason)
                ),
                Event::Output { id, line } => {
                    format!("[{id}] {}", crate::output::terminal_safe_text(line))
                }
                Event::Committed { id, size, .. } => format!("[{id}] layer of {size} bytes"),
                Event::Done { id, elapsed } => format!("[{id}] DONE {:.1}s", elapsed.as_secs_f64()),
                Event::Warning { .. } => unreachable!("shown above"),
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
            Event::Committed { .. } | Event::Warning { .. } | Event::Miss { .. } => {}
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
