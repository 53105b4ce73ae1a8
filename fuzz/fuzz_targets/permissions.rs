//! A permission list (`connect`'s third param, URIs' `perms`, grants).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(set) = text.parse::<nip46::PermissionSet>() {
            // What it prints parses back to the same set.
            let again: nip46::PermissionSet = set.to_string().parse().expect("round trip");
            assert_eq!(again.to_string(), set.to_string());
        }
    }
});
