//! Kind-24133 events as the bunker receives them, through the engine's own
//! `handle_event` (routing, envelope checks, replay window, signature,
//! decryption with the cached conversation, request parsing, dispatch):
//! the input as a whole event, and as the content of a well-signed event
//! from a connected client (so undecryptable and hostile ciphertexts reach
//! the decryption and everything after it).
#![no_main]
use std::sync::{Arc, Mutex, OnceLock};

use bunker::engine::{Engine, EngineConfig, Snapshot, TransportKey};
use bunker::vault::{self, Passphrase, Vault};
use bunker::{Millis, Randomness};
use libfuzzer_sys::fuzz_target;
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{
    Event, EventBuilder, FinalizeEvent, Keys, Kind, PublicKey, SecretKey, Tag, Timestamp,
};
use nip46::Preset;
use store::{KeyId, Session, SessionOrigin};

const NOW: u64 = 1_700_000_000;

struct Counter(u64);

impl Randomness for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 += 1;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

struct Fixture {
    engine: Engine,
    rng: Counter,
    signer: PublicKey,
    client: Keys,
}

fn keys(byte: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[byte; 32]).expect("a valid secret key"))
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pass = Passphrase::new("fuzz");
        let user = keys(1);
        let stored = vault::seal_key("fuzz", user.secret_key(), KeySecurity::Medium, &pass, 1, Timestamp::from_secs(NOW))
            .expect("seal")
            .stored(KeyId(1));
        let mut vault = Vault::unlock(std::slice::from_ref(&stored), &pass).expect("unlock");
        let signer = vault.take_signer(KeyId(1)).expect("signer");
        let signer_pk = signer.public_key();
        let config = EngineConfig {
            replay_capacity: 10_000,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(
            config,
            Arc::new(vault),
            vec![TransportKey { key_id: KeyId(1), signer }],
        );
        let client = keys(2);
        let session = Session::new(
            KeyId(1),
            client.public_key(),
            &Preset::Full.permissions(),
            SessionOrigin::Bunker,
            Timestamp::from_secs(NOW),
        );
        let mut rng = Counter(0);
        let snapshot = Snapshot {
            keys: vec![KeyId(1)],
            tokens: vec![],
            sessions: vec![session],
            approvals: vec![],
        };
        engine.reload(Millis(NOW * 1000), snapshot, &mut rng);
        Mutex::new(Fixture {
            engine,
            rng,
            signer: signer_pk,
            client,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let f = &mut *guard;
    let now = Millis(NOW * 1000);
    if let Ok(event) = Event::from_json(data) {
        let _ = f.engine.handle_event(now, &event, &mut f.rng);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let event = EventBuilder::new(Kind::NostrConnect, text)
            .tag(Tag::public_key(f.signer))
            .custom_created_at(Timestamp::from_secs(NOW))
            .finalize(&f.client)
            .expect("sign");
        let _ = f.engine.handle_event(now, &event, &mut f.rng);
    }
});
