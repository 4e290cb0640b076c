//! Files inside a tree that may hold hostile symlinks, through [`berth_fsroot`]: every path
//! is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` against the tree's
//! root directory, so `..` and symlinks (absolute or relative) are followed as if the root
//! were `/` and never lead out of it. Used for both sides of COPY and ADD: reading a build
//! context or a stage, and writing into the image being built (a symlink `/app -> /etc` in
//! the image makes `COPY x /app/` write to the image's `/etc`, never the host's); for
//! WORKDIR, the cleanup of a RUN step's mount stubs and `--output type=local`.
//!
//! Final components are never followed when writing: a file or symlink is replaced, so a
//! symlink already at the destination cannot redirect the write. Only regular files are
//! opened for their contents, never blocking on a FIFO.

pub use berth_fsroot::{
    Meta, Resolve, Root as InRoot, components, copy_file, set_dir_time, write_dir, write_fifo,
    write_file, write_hard_link, write_symlink,
};
