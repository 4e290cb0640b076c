//! The image builder: Dockerfile text and a build context in, images in the store out.
//!
//! | module | state |
//! |---|---|
//! | [`dockerfile`] | parser, AST and BuildKit dump, shell-word expansion (issue 3) |
//! | `instructions/`, `context/` | typed stages, .dockerignore, content digests (issue 3, not yet) |
//! | [`plan`] | typed stages + build inputs + resolved bases + context → the `BuildGraph`: stages, waves, cache keys |
//! | `exec/`, `commit/` | execution and layers (issue 6, not yet) |
//!
//! Crossing the boundary: the AST and parse errors now; later the `Stage`s, the
//! `BuildGraph`, and a `build` entry point taking a resolver for `FROM` images that `cli`
//! provides (the builder never imports the registry client).

pub mod context;
pub mod dockerfile;
pub mod instructions;
pub mod plan;
