//! A frame a relay sends the pool, parsed as the pool's connection parses it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nip46::nostr::prelude::RelayMessage;

fuzz_target!(|data: &[u8]| {
    let _ = RelayMessage::from_json(data);
});
