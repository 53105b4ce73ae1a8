//! A decrypted response, as the client reads it (`Response::parse`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nip46::Response::parse(text);
    }
});
