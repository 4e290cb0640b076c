//! The image builder: Dockerfile text and a build context in, images in the store out.
//!
//! | module | in → out |
//! |---|---|
//! | [`dockerfile`] | text → AST (BuildKit's parser and dump), shell-word expansion |
//! | [`instructions`] | AST → typed stages (ARG/ENV scopes, targets, dependencies) |
//! | [`context`] | a context directory → included entries with content digests (.dockerignore, stat index) |
//! | [`plan`] | typed stages + build inputs + resolved bases + context → the `BuildGraph`: stages, waves, cache keys |
//! | [`exec`] | the graph → steps run (or found in the cache), layers committed, the image written |
//! | [`git`] | a git URL (BuildKit's rules) → the commit its ref names, and a bounded checkout of it in a private directory |
//! | [`redact`] | text → the same text without the credentials of URLs in it |
//! | [`error`] | every failure of a build: one [`BuildError`], located in the Dockerfile |
//! | [`session`] | a [`BuildRequest`] and the caller's [`Services`] → the whole build, one call |
//!
//! Crossing the boundary: [`build`] (the session). The caller provides what the builder must
//! not do itself: a [`plan::Resolver`] for `FROM` images (`cli` pulls through the registry
//! client; the builder never imports it), an [`exec::Fetch`] for `ADD http(s)://`, an
//! [`exec::Progress`] view and the [`Exporter`]s of the result.

pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod error;
pub mod exec;
pub mod git;
pub mod instructions;
pub mod plan;
pub mod redact;
pub mod session;

pub use error::{BuildError, Location, ResolveError};
pub use session::{
    BuildRequest, DockerfileSource, Exporter, LocalExport, Outcome, Services, build,
};
