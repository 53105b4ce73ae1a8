//! A `bunker://` URI (pasted by a user, or sent by an app).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<nip46::BunkerUri>();
    }
});
