//! A `/.well-known/nostr.json` body, read as NIP-05 login reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let address: client::nip05::Nip05Address = "_@signer.example".parse().expect("valid address");
    let _ = address.read_body(data, "https://signer.example/.well-known/nostr.json");
});
