//! Platforms: `os/arch[/variant]` strings in, a normalized [`Platform`] out, and the rule
//! that picks a manifest from an index for a wanted platform.
//!
//! Normalization follows containerd's `platforms` package: `x86_64`→`amd64`,
//! `aarch64`→`arm64`, `armhf`→`arm/v7`, `armel`→`arm/v6`, `i386`→`386`; `arm64` without a
//! variant means `v8`, `arm` without one means `v7`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
pub struct PlatformError(pub String);

impl Platform {
    /// A normalized platform.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, implied) = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64", None),
            "aarch64" | "arm64" => ("arm64", Some("v8")),
            "armhf" => ("arm", Some("v7")),
            "armel" => ("arm", Some("v6")),
            "arm" => ("arm", Some("v7")),
            "i386" | "i686" | "386" => ("386", None),
            other => {
                return Platform {
                    os,
                    architecture: other.to_owned(),
                    variant: variant.map(str::to_owned),
                };
            }
        };
        let variant = match variant.map(str::to_ascii_lowercase) {
            Some(v) if architecture == "arm64" && v == "8" => Some("v8".to_owned()),
            Some(v) if architecture == "arm" && v.len() == 1 => Some(format!("v{v}")),
            Some(v) => Some(v),
            None => implied.map(str::to_owned),
        };
        Platform {
            os,
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// The platform this process runs on.
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// Whether an image for `candidate` runs on `self`. A variant is compared only where the
    /// architecture has them; an image without a variant matches any (as containerd does).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let candidate = Platform::new(
            &candidate.os,
            &candidate.architecture,
            candidate.variant.as_deref(),
        );
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && match (&self.variant, &candidate.variant) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok_part) {
            return Err(PlatformError(s.to_owned()));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            "linux/aarch64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            "linux/x86_64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            "linux/armhf".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "linux/arm/6".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v6"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_respects_variants() {
        let want: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(want.matches(&Platform::new("linux", "arm64", None)));
        assert!(!want.matches(&Platform::new("linux", "amd64", None)));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!v7.matches(&Platform::new("linux", "arm", Some("v6"))));
        assert!(!want.matches(&Platform::new("windows", "arm64", None)));
    }
}
