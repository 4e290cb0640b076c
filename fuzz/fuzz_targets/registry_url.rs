//! A URL handed back by a registry (`Link`, `Location`, a redirect, a realm), fuzzed against
//! an HTTP and an HTTPS registry: resolving it never panics, what it yields is http(s) with a
//! host and no userinfo, never a step down from HTTPS, and the registry's credential goes
//! along exactly when the result is on the registry's own origin.
#![no_main]
use berth_registry_client::origin::{Credential, Origin, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reference) = std::str::from_utf8(data) else { return };
    for base in ["http://127.0.0.1:5000/v2/a/tags/list?n=2", "https://registry.test/v2/b/blobs/uploads/x"] {
        let base = url::Url::parse(base).unwrap();
        let origin = Origin::of(&base).unwrap();
        let credential = Credential::new(origin.clone(), "Basic c2VjcmV0".into());
        let Ok(url) = resolve(&base, reference, "the link") else { continue };
        assert!(matches!(url.scheme(), "http" | "https"), "{url}");
        assert!(url.username().is_empty() && url.password().is_none(), "{url}");
        assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
        assert!(!(base.scheme() == "https" && url.scheme() == "http"), "{url}");
        let same = Origin::of(&url).as_ref() == Some(&origin);
        assert_eq!(credential.for_url(&url).is_some(), same, "{url}");
        // What the exchange sends is the URL's own text: parsed again, it names the same origin.
        let again = url::Url::parse(url.as_str()).unwrap();
        assert_eq!(Origin::of(&again), Origin::of(&url), "{url}");
    }
});
