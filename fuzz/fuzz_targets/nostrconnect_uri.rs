//! A `nostrconnect://` URI, as an app shows it (`rampart connect`, the dashboard).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<nip46::NostrConnectUri>();
    }
});
