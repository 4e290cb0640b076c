//! The image builder: Dockerfile text and a build context in, images in the store out.
//!
//! | module | in → out |
//! |---|---|
//! | [`dockerfile`] | text → AST (BuildKit's parser and dump), shell-word expansion |
//! | [`instructions`] | AST → typed stages (ARG/ENV scopes, targets, dependencies) |
//! | [`context`] | a context directory → included entries with content digests (.dockerignore, stat index) |
//! | [`plan`] | typed stages + build inputs + resolved bases + context → the `BuildGraph`: stages, waves, cache keys |
//! | [`exec`] | the graph → steps run (or found in the cache), layers committed, the image written |
//! | [`redact`] | text → the same text without the credentials of URLs in it |
//!
//! Crossing the boundary: [`parse_dockerfile`](instructions::parse_dockerfile), the
//! `BuildGraph` ([`plan::plan`], with a [`plan::Resolver`] for `FROM` images that `cli`
//! provides: the builder never imports the registry client) and [`exec::build`].

pub mod context;
pub mod dockerfile;
pub mod error;
pub mod exec;
pub mod instructions;
pub mod plan;
pub mod redact;
pub mod session;

pub use error::{BuildError, Location, ResolveError};
pub use session::{
    BuildRequest, DockerfileSource, Exporter, LocalExport, Outcome, Services, build,
};
