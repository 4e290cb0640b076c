//! Tar streams written header by header, so tests can put anything in a name or link target
//! (the tar crate's builder rightly refuses `..`).

/// A tar stream being built.
#[derive(Debug, Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    fn header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> &mut RawTar {
        let mut h = tar::Header::new_gnu();
        // Names and link targets of 100 bytes or more go in GNU long-name records first.
        let long_records = [
            (Some(name), tar::EntryType::GNULongName),
            (link, tar::EntryType::GNULongLink),
        ];
        for (value, kind) in long_records {
            let Some(value) = value.filter(|v| v.len() >= 100) else {
                continue;
            };
            let mut long = tar::Header::new_gnu();
            long.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            long.set_entry_type(kind);
            long.set_size(value.len() as u64 + 1);
            long.set_mode(0o644);
            long.set_cksum();
            self.bytes.extend_from_slice(long.as_bytes());
            let mut n = value.to_vec();
            n.push(0);
            self.pad(&n);
        }
        let field = &mut h.as_old_mut().name;
        let len = name.len().min(99);
        field[..len].copy_from_slice(&name[..len]);
        if let Some(link) = link {
            let lf = &mut h.as_old_mut().linkname;
            lf[..link.len().min(99)].copy_from_slice(&link[..link.len().min(99)]);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.pad(data);
        self
    }

    fn pad(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let rem = data.len() % 512;
        if rem != 0 {
            self.bytes.extend(std::iter::repeat_n(0u8, 512 - rem));
        }
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut RawTar {
        self.header(name.as_bytes(), tar::EntryType::Regular, 0o644, data, None)
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut RawTar {
        self.header(name.as_bytes(), tar::EntryType::Regular, mode, data, None)
    }

    pub fn file_bytes(&mut self, name: &[u8], data: &[u8]) -> &mut RawTar {
        self.header(name, tar::EntryType::Regular, 0o644, data, None)
    }

    pub fn dir(&mut self, name: &str) -> &mut RawTar {
        self.header(name.as_bytes(), tar::EntryType::Directory, 0o755, b"", None)
    }

    pub fn dir_mode(&mut self, name: &str, mode: u32) -> &mut RawTar {
        self.header(name.as_bytes(), tar::EntryType::Directory, mode, b"", None)
    }

    /// A PAX extended header whose `path` record renames the next entry.
    pub fn pax_path(&mut self, path: &str) -> &mut RawTar {
        self.pax("path", path)
    }

    /// A PAX extended header whose `linkpath` record retargets the next entry's link.
    pub fn pax_linkpath(&mut self, target: &str) -> &mut RawTar {
        self.pax("linkpath", target)
    }

    fn pax(&mut self, key: &str, value: &str) -> &mut RawTar {
        // A record is "LEN KEY=VALUE\n" where LEN counts the whole record, itself included.
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        let record = format!("{len}{body}");
        self.header(
            b"PaxHeader",
            tar::EntryType::XHeader,
            0o644,
            record.as_bytes(),
            None,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some(target.as_bytes()),
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.header(
            name.as_bytes(),
            tar::EntryType::Link,
            0o644,
            b"",
            Some(target.as_bytes()),
        )
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> &mut RawTar {
        self.header(name.as_bytes(), tar::EntryType::Char, 0o666, b"", None);
        let start = self.bytes.len() - 512;
        let mut h = tar::Header::from_byte_slice(&self.bytes[start..]).clone();
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.bytes[start..].copy_from_slice(h.as_bytes());
        self
    }

    /// A header claiming `size` bytes with none following (a truncated or lying stream).
    pub fn lying_size(&mut self, name: &str, size: u64) -> &mut RawTar {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self
    }

    /// The stream with its two closing zero blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}
