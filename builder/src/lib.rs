//! The image builder (issues 3 and 6): Dockerfile text and a build context in, images in the
//! store out.
//!
//! Will own `dockerfile/` (parser, shell-word expansion, typed instructions), `context/`
//! (scan, .dockerignore, stat→digest index), `plan/` (the build graph and cache keys, a
//! value computed without root), `exec/` (steps through an `Executor` trait over the
//! runtime) and `commit/` (snapshot → layer → config → manifest, through
//! `berth_store::layer::pack` and `Store::write_image`). Crossing the boundary: the parsed
//! `Ast`, `Stage`s, the `BuildGraph`, and a `build` entry point taking a resolver for `FROM`
//! images that `cli` provides (the builder never imports the registry client).
//!
//! Not written yet: this crate is a placeholder until issues 3 and 6 land.
