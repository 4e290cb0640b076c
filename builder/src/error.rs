//! What can go wrong in a build, as one enum: the request, the Dockerfile (with the lines
//! concerned), a base image, a step (with, for RUN, the process's exit code), the context,
//! the store, an export. Errors found where the Dockerfile's text is not at hand carry only
//! their lines; [`crate::build`] adds the file's name and the excerpt BuildKit shows
//! ([`BuildError::locate`]).

use berth_store::StoreError;

use crate::context::ContextError;
use crate::dockerfile::ParseError;

/// The lines of the Dockerfile an error is about, and how they are shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub start_line: usize,
    pub end_line: usize,
    /// The file and its lines, once located ([`BuildError::locate`]).
    pub shown: Option<Box<Shown>>,
}

/// A located error's Dockerfile and excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The Dockerfile's name.
    pub file: String,
    /// The lines around, the ones concerned marked `>>>`, and a caret.
    pub excerpt: String,
}

impl Location {
    pub fn line(line: usize) -> Location {
        Location::lines(line, line)
    }

    pub fn lines(start_line: usize, end_line: usize) -> Location {
        Location {
            start_line,
            end_line,
            shown: None,
        }
    }

    /// The excerpt, or `""` before the error is located.
    pub fn excerpt(&self) -> &str {
        self.shown.as_ref().map_or("", |s| s.excerpt.as_str())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shown {
            None => write!(f, "line {}", self.start_line),
            Some(s) => write!(f, "{}:{}", s.file, self.start_line),
        }
    }
}

/// Why a `FROM` (or `--from`) image could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name or platform is not one (a usage error).
    #[error("{0}")]
    Invalid(String),
    #[error("no such image: {0}")]
    NotFound(String),
    /// The store has the image for another platform than the one the build needs, and
    /// pulling that platform failed.
    #[error("the store has it for {have}, not {wanted}, and pulling {wanted} failed: {pull}")]
    StorePlatform {
        have: String,
        wanted: String,
        pull: String,
    },
    /// The registry answered with an image for another platform.
    #[error("the registry gave an image for {have}, not {wanted}")]
    PulledPlatform { have: String, wanted: String },
    /// Pulling it failed (the registry's or the network's error, with its causes).
    #[error("{0}")]
    Pull(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a step's own work failed (COPY, ADD, WORKDIR, a RUN's mounts and policy, a config
/// instruction), before its Dockerfile line is attached ([`BuildError::Step`]).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// What the instruction asks cannot be done: a source not found, a value out of range.
    #[error("{0}")]
    Invalid(String),
    /// The build's policy refuses it (`--allow`, `--network none`).
    #[error("{0}")]
    NotAllowed(String),
    /// A file operation failed (`action` the path: creating, reading, copying ...). The
    /// message holds the OS error: a step's error is shown as one line.
    #[error("{action} {path:?}: {error}")]
    Io {
        action: String,
        path: String,
        error: std::io::Error,
    },
    /// The build context changed since the scan, under a step that reads it.
    #[error("{0}")]
    ContextChanged(String),
    /// A download for `ADD http(s)://`.
    #[error("{0}")]
    Download(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Mounting or running what the step needs.
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
}

impl StepError {
    /// `action path: error`; a full disk is said to be the store's, where the step writes.
    pub fn io(action: &str, path: &str, source: std::io::Error) -> StepError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StepError::Store(StoreError::io(format!("{action} {path:?}"), source));
        }
        StepError::Io {
            action: action.to_owned(),
            path: path.to_owned(),
            error: source,
        }
    }

    /// [`StepError::io`] for a host path.
    pub fn io_at(action: &str, path: &std::path::Path, source: std::io::Error) -> StepError {
        StepError::io(action, &path.to_string_lossy(), source)
    }
}

/// A message of what the instruction asks that cannot be done.
impl From<String> for StepError {
    fn from(message: String) -> StepError {
        StepError::Invalid(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> StepError {
        StepError::Invalid(message.to_owned())
    }
}

/// Why an export of the built image (an `--output`, a push) failed.
pub type ExportError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request itself: a value of a flag (exit code 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    /// The Dockerfile could not be read.
    #[error(transparent)]
    ReadDockerfile(ContextError),
    /// The Dockerfile: its syntax, or what planning found wrong in it.
    #[error("{}", excerpt_or(at, message))]
    Dockerfile { at: Location, message: String },
    /// A `FROM` or `--from` image.
    #[error("{}", excerpt_or(at, &format!("base image {name:?}: {error}")))]
    Base {
        at: Location,
        name: String,
        /// Shown in the message (not a separate cause, which would print it twice).
        error: Box<ResolveError>,
    },
    /// A step failed; for a RUN whose process ran, `exit_code` is its code.
    #[error("{}", excerpt_or(at, message))]
    Step {
        at: Location,
        message: String,
        exit_code: Option<i32>,
        /// The last lines of the step's output.
        tail: Vec<String>,
    },
    /// The build context (its scan).
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing or sending the built image (`what`: `--output DEST`, `writing FILE`, `push`).
    /// The message holds the error's own text, once.
    #[error("{what}: {error}")]
    Export { what: String, error: ExportError },
    /// An imported cache (`--cache-from`) gave a blob that is not what it said, or none.
    #[error("{0}")]
    Cache(String),
}

fn excerpt_or(at: &Location, message: &str) -> String {
    match at.excerpt() {
        "" => message.to_owned(),
        excerpt => excerpt.trim_end().to_owned(),
    }
}

impl BuildError {
    /// A step's failure at its line.
    pub fn step(line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            at: Location::line(line),
            message: message.into(),
            exit_code: None,
            tail: Vec::new(),
        }
    }

    /// Where in the Dockerfile the error is, for those that have a place.
    pub fn location(&self) -> Option<&Location> {
        match self {
            BuildError::Dockerfile { at, .. }
            | BuildError::Base { at, .. }
            | BuildError::Step { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The error with the Dockerfile's name and the excerpt of its lines (`source` is the
    /// Dockerfile's text; URL credentials in it are left out of the excerpt).
    pub fn locate(mut self, source: &str, file: &str) -> BuildError {
        let message = match &self {
            BuildError::Base { name, error, .. } => format!("base image {name:?}: {error}"),
            BuildError::Dockerfile { message, .. } | BuildError::Step { message, .. } => {
                message.clone()
            }
            _ => return self,
        };
        if let Some(at) = match &mut self {
            BuildError::Dockerfile { at, .. }
            | BuildError::Base { at, .. }
            | BuildError::Step { at, .. } => Some(at),
            _ => None,
        } {
            let excerpt =
                ParseError::span(at.start_line, at.end_line, message).render(source, file);
            at.shown = Some(Box::new(Shown {
                file: file.to_owned(),
                excerpt: crate::redact::url_credentials(&excerpt).into_owned(),
            }));
        }
        self
    }
}

impl From<ParseError> for BuildError {
    fn from(e: ParseError) -> BuildError {
        BuildError::Dockerfile {
            at: Location::lines(e.start_line, e.end_line),
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its causes, as `{:#}` prints a chain: each cause after a colon.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        text
    }

    #[test]
    fn a_cause_is_shown_once() {
        let disk = || std::io::Error::other("disk on fire");
        let export = BuildError::Export {
            what: "writing out.tar".into(),
            error: Box::new(StepError::io("creating", "out.tar", disk())),
        };
        let base = BuildError::Base {
            at: Location::line(1),
            name: "app".into(),
            error: Box::new(ResolveError::Pull("registry said no".into())),
        };
        for (e, inner) in [
            (&export as &dyn std::error::Error, "disk on fire"),
            (&base, "registry said no"),
        ] {
            let shown = chain(e);
            assert_eq!(shown.matches(inner).count(), 1, "{shown}");
        }
        assert_eq!(
            chain(&export),
            "writing out.tar: creating \"out.tar\": disk on fire"
        );
    }

    #[test]
    fn a_located_error_shows_its_lines_without_credentials() {
        let text = "FROM scratch\nADD https://user:secret@example.invalid/f /f\n";
        let e = BuildError::step(2, "ADD https://user:secret@example.invalid/f: refused")
            .locate(text, "Dockerfile");
        let at = e.location().expect("located");
        assert_eq!(at.to_string(), "Dockerfile:2");
        assert!(at.excerpt().contains(">>>"), "{}", at.excerpt());
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
