//! Extended attributes a layer never carries, and a snapshot berth mounts never keeps.

/// Whether xattr `name` is an overlay filesystem's own metadata: overlayfs's
/// (`trusted.overlay.*`, and the `user.overlay.*` it reads under `userxattr`) or
/// fuse-overlayfs's (`user.fuseoverlayfs.*`: its opaque mark, and the origin it follows into
/// the layers below). In a layer or a snapshot such an xattr would steer the overlay:
/// unpacking drops them, packing leaves them out, and an upper fuse-overlayfs wrote loses
/// them before it becomes a snapshot.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    [
        &b"trusted.overlay."[..],
        b"user.overlay.",
        b"user.fuseoverlayfs.",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_xattrs_are_told_from_others() {
        for name in [
            "trusted.overlay.opaque",
            "user.overlay.redirect",
            "user.fuseoverlayfs.origin",
        ] {
            assert!(is_overlay_xattr(name.as_bytes()), "{name}");
        }
        for name in [
            "user.mime_type",
            "security.capability",
            "trusted.overlayx",
            "user.overlay",
        ] {
            assert!(!is_overlay_xattr(name.as_bytes()), "{name}");
        }
    }
}
