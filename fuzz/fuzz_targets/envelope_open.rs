//! Kind-24133 events as the bunker receives them: the input as a whole event
//! through the engine's own `handle_event` (routing, envelope checks, replay
//! window, signature, decryption, request parsing, dispatch); and the input
//! as the content of an event from a connected client, through the steps
//! the engine takes once the signature holds — `Conversation::decrypt` with
//! the cached conversation key, then `Request::parse` — without signing an
//! event per input (the signature path is the first half's).
#![no_main]
use std::sync::{Arc, Mutex, OnceLock};

use bunker::engine::{Engine, EngineConfig, Snapshot, TransportKey};
use bunker::vault::{self, Passphrase, Vault};
use bunker::{Millis, Randomness};
use libfuzzer_sys::fuzz_target;
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Event, Keys, SecretKey, Timestamp};
use nip46::{Conversation, Preset};
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
    /// The signer key and its conversation with the connected client, as
    /// the engine caches it.
    signer_keys: Keys,
    conversation: Conversation,
}

fn keys(byte: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[byte; 32]).expect("a valid secret key"))
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pass = Passphrase::new("fuzz");
        let user = keys(1);
        let kek = vault::Kek::create(&pass, 1).expect("vault key");
        let stored = vault::seal_key("fuzz", user.secret_key(), KeySecurity::Medium, &kek, Timestamp::from_secs(NOW))
            .expect("seal")
            .stored(KeyId(1));
        let (mut vault, _) = Vault::unlock(std::slice::from_ref(&stored), &kek, &pass).expect("unlock");
        let signer = vault.take_signer(KeyId(1)).expect("signer");
        let signer_keys = signer.clone();
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
            locked: vec![],
            sensitive: vec![],
            quorums: vec![],
            operators: vec![],
            tokens: vec![],
            sessions: vec![session],
            approvals: vec![],
        };
        engine.reload(Millis(NOW * 1000), snapshot, &mut rng);
        let conversation = Conversation::new(&signer_keys, client.public_key()).expect("conversation");
        Mutex::new(Fixture {
            engine,
            rng,
            signer_keys,
            conversation,
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
        if let Ok((_scheme, body)) = f.conversation.decrypt(&f.signer_keys, text) {
            let _ = nip46::Request::parse(&body);
        }
    }
});
