//! A small NIP-46 signer with switchable faults, to test the conformance
//! suite against: run with no fault it must pass every check; each fault
//! breaks one rule of the spec, and the suite must report exactly the
//! checks that rule covers. It approves every request of a connected
//! client; secrets are the tokens it was started with.
//!
//! It is a real signer on a real relay (the `nip46` crate's parsing and
//! envelopes, the `nostr` crate's signatures and encryption), only
//! deliberately wrong where told to be.

use std::collections::{HashMap, HashSet};

use nip46::envelope::{self, Entropy};
use nip46::nostr::nips::{nip04, nip44};
use nip46::nostr::prelude::{
    Event, EventId, Filter, Keys, Kind, PublicKey, RelayUrl, Signature, Tags, Timestamp,
    UnsignedEvent,
};
use nip46::{
    BunkerUri, Command, ConnectSecret, Conversation, ErrorCode, Request, Response, Scheme,
};
use relay::{PoolConfig, PoolEvent, RelayPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rules the signer breaks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Unknown methods get no reply (the spec: MUST reply with an error).
    pub silent_on_unknown_methods: bool,
    /// A used secret opens another session (the spec: SHOULD ignore it).
    pub reusable_secrets: bool,
    /// `sign_event` returns the event with a signature that does not verify.
    pub unsigned_events: bool,
    /// Answers carry no `p` tag (a relay still delivers them by author).
    pub untagged_answers: bool,
    /// `connect` answers the secret instead of `"ack"`.
    pub echoes_secret: bool,
    /// NIP-04 requests are answered in NIP-44.
    pub answers_nip04_in_nip44: bool,
    /// Clients that never connected are served.
    pub serves_strangers: bool,
    /// `logout` is acknowledged but the session stays.
    pub keeps_session_after_logout: bool,
    /// A `connect` whose first param is empty is refused.
    pub refuses_empty_first_param: bool,
}

/// A running scripted signer.
pub struct ScriptedSigner {
    /// Its `bunker://` tokens, one per secret.
    pub uris: Vec<String>,
    task: JoinHandle<()>,
}

impl ScriptedSigner {
    /// Start it on `relay` with `tokens` single-use secrets.
    pub async fn start(relay: &str, tokens: usize, faults: Faults) -> Self {
        let signer = Keys::generate();
        let user = Keys::generate();
        let secrets: Vec<String> = (0..tokens)
            .map(|i| format!("scripted-secret-{i}"))
            .collect();
        let relay_url = RelayUrl::parse(relay).expect("relay url");
        let uris = secrets
            .iter()
            .map(|s| {
                BunkerUri {
                    signer: signer.public_key(),
                    relays: vec![relay_url.clone()],
                    secret: Some(ConnectSecret::new(s.clone())),
                }
                .to_string()
            })
            .collect();
        let (pool, mut events) = RelayPool::new(PoolConfig::default());
        pool.add_relay(relay).expect("add relay");
        pool.subscribe(vec![
            Filter::new()
                .kind(Kind::NostrConnect)
                .pubkey(signer.public_key())
                .since(Timestamp::now()),
        ])
        .expect("subscribe");
        loop {
            match events.recv().await {
                Some(PoolEvent::EndOfStoredEvents { .. }) => break,
                Some(_) => {}
                None => panic!("the scripted signer's pool stopped"),
            }
        }
        let state = State {
            signer,
            user,
            relay: relay_url,
            faults,
            secrets: secrets.into_iter().collect(),
            used: HashSet::new(),
            sessions: HashSet::new(),
            conversations: HashMap::new(),
            seen: HashSet::new(),
            counter: 0,
        };
        let task = tokio::spawn(serve(state, pool, events));
        ScriptedSigner { uris, task }
    }

    /// Stop serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

struct State {
    signer: Keys,
    user: Keys,
    relay: RelayUrl,
    faults: Faults,
    secrets: HashSet<String>,
    used: HashSet<String>,
    sessions: HashSet<PublicKey>,
    conversations: HashMap<PublicKey, Conversation>,
    seen: HashSet<EventId>,
    counter: u8,
}

async fn serve(mut state: State, pool: RelayPool, mut events: mpsc::Receiver<PoolEvent>) {
    while let Some(event) = events.recv().await {
        let PoolEvent::Event { event, .. } = event else {
            continue;
        };
        if let Some(answer) = state.handle(&event) {
            let _ = pool.publish(&answer);
        }
    }
}

impl State {
    fn handle(&mut self, event: &Event) -> Option<Event> {
        if !self.seen.insert(event.id) || event.verify().is_err() {
            return None;
        }
        let client = event.pubkey;
        let conversation = match self.conversations.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Conversation::new(&self.signer, client).ok()?)
            }
        };
        let (scheme, text) = conversation.decrypt(&self.signer, &event.content).ok()?;
        let response = match Request::parse(&text) {
            Ok(request) => self.answer(client, request)?,
            Err(nip46::RequestError::InvalidParams { id, reason, .. }) => {
                Response::error(id, ErrorCode::InvalidParams, reason.0)
            }
            Err(_) => return None,
        };
        let scheme = if self.faults.answers_nip04_in_nip44 {
            Scheme::Nip44
        } else {
            scheme
        };
        self.counter = self.counter.wrapping_add(1);
        let mut nonce = Keys::generate().public_key().to_bytes();
        nonce[0] = self.counter;
        let entropy = Entropy {
            nonce,
            aux: [self.counter; 32],
        };
        let conversation = self.conversations.get_mut(&client)?;
        let sealed = envelope::seal(
            &self.signer,
            conversation,
            scheme,
            &response.to_json(),
            Timestamp::now(),
            &entropy,
        )
        .ok()?;
        if !self.faults.untagged_answers {
            return Some(sealed);
        }
        let unsigned = UnsignedEvent::new(
            sealed.pubkey,
            sealed.created_at,
            sealed.kind,
            Tags::new(),
            sealed.content,
        );
        envelope::sign(&self.signer, unsigned, &[5; 32]).ok()
    }

    /// `None`: stay silent.
    fn answer(&mut self, client: PublicKey, request: Request) -> Option<Response> {
        let id = request.id;
        let refuse = |id: String| {
            Some(Response::error(
                id,
                ErrorCode::Unauthorized,
                "connect with a secret first",
            ))
        };
        let user = &self.user;
        Some(match request.command {
            Command::Connect(params) => {
                if self.faults.refuses_empty_first_param && params.target.is_none() {
                    return Some(Response::error(
                        id,
                        ErrorCode::InvalidParams,
                        "the first param must be the signer pubkey",
                    ));
                }
                let Some(secret) = params.secret.map(|s| s.expose().to_owned()) else {
                    return refuse(id);
                };
                let fresh = self.secrets.contains(&secret) && !self.used.contains(&secret);
                let reused = self.faults.reusable_secrets && self.secrets.contains(&secret);
                if !fresh && !reused {
                    return refuse(id);
                }
                self.used.insert(secret.clone());
                self.sessions.insert(client);
                let result = if self.faults.echoes_secret {
                    secret
                } else {
                    "ack".into()
                };
                Response::ok(id, result)
            }
            _ if !self.sessions.contains(&client) && !self.faults.serves_strangers => {
                return refuse(id);
            }
            Command::GetPublicKey => Response::ok(id, user.public_key().to_hex()),
            Command::Ping => Response::ok(id, "pong"),
            Command::SignEvent(template) => {
                match template.into_unsigned(user.public_key(), Timestamp::now()) {
                    Ok(unsigned) => match envelope::sign(user, unsigned, &[3; 32]) {
                        Ok(event) if self.faults.unsigned_events => {
                            let forged = Signature::from_slice(&[7u8; 64]).ok()?;
                            let event = Event::new(
                                event.id,
                                event.pubkey,
                                event.created_at,
                                event.kind,
                                event.tags,
                                event.content,
                                forged,
                            );
                            Response::ok(id, event.as_json())
                        }
                        Ok(event) => Response::ok(id, event.as_json()),
                        Err(e) => Response::error(id, ErrorCode::InternalError, e.to_string()),
                    },
                    Err(e) => Response::error(id, ErrorCode::InvalidParams, e.0),
                }
            }
            Command::Nip44Encrypt { peer, plaintext } => {
                let ct = nip44::encrypt(user.secret_key(), &peer, plaintext, nip44::Version::V2)
                    .unwrap_or_default();
                Response::ok(id, ct)
            }
            Command::Nip44Decrypt { peer, ciphertext } => {
                match nip44::decrypt(user.secret_key(), &peer, ciphertext) {
                    Ok(p) => Response::ok(id, p),
                    Err(e) => Response::error(id, ErrorCode::InvalidParams, e.to_string()),
                }
            }
            Command::Nip04Encrypt { peer, plaintext } => {
                let ct = nip04::encrypt(user.secret_key(), &peer, plaintext).unwrap_or_default();
                Response::ok(id, ct)
            }
            Command::Nip04Decrypt { peer, ciphertext } => {
                match nip04::decrypt(user.secret_key(), &peer, ciphertext) {
                    Ok(p) => Response::ok(id, p),
                    Err(e) => Response::error(id, ErrorCode::InvalidParams, e.to_string()),
                }
            }
            Command::SwitchRelays | Command::GetRelays => {
                Response::ok(id, serde_json::json!([self.relay.as_str()]).to_string())
            }
            Command::Logout => {
                if !self.faults.keeps_session_after_logout {
                    self.sessions.remove(&client);
                }
                Response::ok(id, "ack")
            }
            Command::Unknown { method } => {
                if self.faults.silent_on_unknown_methods {
                    return None;
                }
                Response::error(id, ErrorCode::MethodNotFound, format!("no method {method}"))
            }
        })
    }
}
