//! A frame a client sends the embedded relay: parsed as the connection
//! parses it, then, for an event, the relay's kind policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nip46::nostr::prelude::ClientMessage;
use relay::server::KindPolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(ClientMessage::Event(event)) = ClientMessage::from_json(data) {
        let _ = KindPolicy::default().refusal(&event);
        let _ = event.verify_id();
    }
});
