//! The client-initiated connection: a `nostrconnect://` URI the user pastes
//! into their signer.
//!
//! The client makes a fresh key and secret, listens on its relays, and waits
//! for the signer's `connect` response. Anyone can send events to the
//! client's key, so the response is believed only if it carries the secret
//! (compared in constant time); its author then becomes the signer, and only
//! that author is listened to afterwards.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use nip46::envelope;
use nip46::nostr::prelude::{Event, Keys, PublicKey, RelayUrl};
use nip46::{
    Command, ConnectParams, ConnectSecret, Conversation, Method, NostrConnectUri, Outcome, Request,
    Response,
};
use relay::PoolEvent;

use crate::client::Client;
use crate::error::Error;
use crate::link::{self, Link, Listening, Parts};
use crate::options::ClientOptions;

/// A `nostrconnect://` URI handed out, waiting for the signer to answer.
pub struct PendingConnection {
    keys: Keys,
    uri: NostrConnectUri,
    options: ClientOptions,
    listening: Listening,
    seen: HashSet<RelayUrl>,
}

impl fmt::Debug for PendingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingConnection")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Make a `nostrconnect://` URI for the user to give their signer, with
    /// a fresh client key and secret, the options' `perms` and metadata, and
    /// `relays` (where the client listens). Returns once a relay confirmed
    /// the subscription, so the signer's answer cannot be missed; then call
    /// [`PendingConnection::wait`].
    pub async fn nostrconnect(
        relays: Vec<RelayUrl>,
        options: ClientOptions,
    ) -> Result<PendingConnection, Error> {
        let keys = Keys::generate();
        let mut entropy = zeroize::Zeroizing::new([0u8; 16]);
        getrandom::fill(&mut *entropy).map_err(|e| Error::Entropy(e.to_string()))?;
        let secret = ConnectSecret::from_entropy(*entropy);
        let mut listening = link::listen(&keys, None, &relays, &options)?;
        let mut seen = HashSet::new();
        let limit = options.request_timeout;
        let subscribed = tokio::time::timeout(limit, async {
            while let Some(event) = listening.events.recv().await {
                match event {
                    PoolEvent::Connected { relay } => {
                        seen.insert((*relay).clone());
                    }
                    PoolEvent::EndOfStoredEvents {
                        subscription_id, ..
                    } if subscription_id == listening.subscription => return true,
                    _ => {}
                }
            }
            false
        })
        .await;
        if !matches!(subscribed, Ok(true)) {
            listening.pool.shutdown().await;
            return Err(Error::Disconnected(format!(
                "none of the relays accepted a subscription within {limit:?}"
            )));
        }
        let metadata = options.metadata.clone();
        let uri = NostrConnectUri {
            client: keys.public_key(),
            relays,
            secret,
            perms: options.perms.clone(),
            name: metadata.name,
            url: metadata.url,
            image: metadata.image,
        };
        Ok(PendingConnection {
            keys,
            uri,
            options,
            listening,
            seen,
        })
    }
}

impl PendingConnection {
    /// The URI to show the user.
    pub fn uri(&self) -> &NostrConnectUri {
        &self.uri
    }

    /// Wait (at most `timeout`) for the signer's `connect` response, then
    /// learn the user pubkey and follow the signer's relays.
    pub async fn wait(self, timeout: Duration) -> Result<Client, Error> {
        let PendingConnection {
            keys,
            uri,
            options,
            mut listening,
            mut seen,
        } = self;
        let started = Instant::now();
        let client_pk = keys.public_key();
        let paired = tokio::time::timeout(timeout, async {
            while let Some(event) = listening.events.recv().await {
                match event {
                    PoolEvent::Event { event, .. } => {
                        if let Some(found) = pair(&keys, &client_pk, &uri.secret, &event) {
                            return Some(found);
                        }
                    }
                    PoolEvent::Connected { relay } => {
                        seen.insert((*relay).clone());
                    }
                    _ => {}
                }
            }
            None
        })
        .await;
        let (signer, conversation) = match paired {
            Ok(Some(found)) => found,
            Ok(None) => {
                listening.pool.shutdown().await;
                return Err(Error::Disconnected("the relay pool stopped".into()));
            }
            Err(_) => {
                listening.pool.shutdown().await;
                return Err(Error::Timeout {
                    method: Method::Connect,
                    waited: started.elapsed(),
                    challenged: false,
                });
            }
        };
        // From now on, listen to the signer only.
        let filter = link::response_filter(client_pk, Some(signer));
        if let Err(e) = listening
            .pool
            .subscribe_with_id(listening.subscription.clone(), vec![filter])
        {
            listening.pool.shutdown().await;
            return Err(Error::Relay(e.to_string()));
        }
        let link = Link::launch(Parts {
            keys,
            signer,
            conversation,
            relays: uri.relays.clone(),
            user: None,
            options,
            listening,
            seen,
        });
        Client::from_link(link).establish(None).await
    }
}

/// Whether `event` is the signer's answer to our URI: addressed to us,
/// authentic, and carrying our secret. Returns its author and the
/// conversation with it (its keys are kept: derived once).
fn pair(
    keys: &Keys,
    client: &PublicKey,
    secret: &ConnectSecret,
    event: &Event,
) -> Option<(PublicKey, Conversation)> {
    envelope::precheck(event, client).ok()?;
    envelope::verify(event).ok()?;
    let mut conversation = Conversation::new(keys, event.pubkey).ok()?;
    let (_, text) = conversation.decrypt(keys, &event.content).ok()?;
    let paired = match Response::parse(&text).ok() {
        Some(Response {
            outcome: Outcome::Result(result),
            ..
        }) => secret.matches(&result),
        // Quirk: nostr-connect ≤ 0.44 answers a nostrconnect:// URI with a
        // `connect` *request* carrying the secret as its second parameter.
        _ => match Request::parse(&text) {
            Ok(Request {
                command:
                    Command::Connect(ConnectParams {
                        secret: Some(theirs),
                        ..
                    }),
                ..
            }) => secret.matches(theirs.expose()),
            _ => false,
        },
    };
    paired.then_some((event.pubkey, conversation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::envelope::{Entropy, Scheme};
    use nip46::nostr::prelude::{SecretKey, Timestamp};

    fn keys(b: u8) -> Keys {
        Keys::new(SecretKey::from_slice(&[b; 32]).unwrap())
    }

    fn sealed(from: &Keys, to: &Keys, text: &str) -> Event {
        let mut conv = Conversation::new(from, to.public_key()).unwrap();
        let entropy = Entropy {
            nonce: [5; 32],
            aux: [6; 32],
        };
        envelope::seal(
            from,
            &mut conv,
            Scheme::Nip44,
            text,
            Timestamp::now(),
            &entropy,
        )
        .unwrap()
    }

    #[test]
    fn only_the_secret_pairs() {
        let (client, signer) = (keys(1), keys(2));
        let secret = ConnectSecret::new("abc123");
        let pk = client.public_key();

        let ok = sealed(&signer, &client, &Response::ok("x", "abc123").to_json());
        let (author, _) = pair(&client, &pk, &secret, &ok).unwrap();
        assert_eq!(author, signer.public_key());

        for text in [
            Response::ok("x", "ack").to_json(),
            Response::ok("x", "abc12").to_json(),
            Response::error("x", nip46::ErrorCode::Unauthorized, "abc123").to_json(),
            "garbage".to_owned(),
        ] {
            let ev = sealed(&signer, &client, &text);
            assert!(pair(&client, &pk, &secret, &ev).is_none(), "{text}");
        }

        // Addressed to someone else.
        let other = keys(3);
        let ev = sealed(&signer, &other, &Response::ok("x", "abc123").to_json());
        assert!(pair(&client, &pk, &secret, &ev).is_none());

        // Tampered.
        let mut ev = sealed(&signer, &client, &Response::ok("x", "abc123").to_json());
        ev.content.push('A');
        assert!(pair(&client, &pk, &secret, &ev).is_none());
    }

    #[test]
    fn the_rust_nostr_connect_request_quirk_pairs() {
        let (client, signer) = (keys(1), keys(2));
        let secret = ConnectSecret::new("abc123");
        let text = format!(
            r#"{{"id":"1","method":"connect","params":["{}","abc123"]}}"#,
            signer.public_key().to_hex()
        );
        let ev = sealed(&signer, &client, &text);
        assert!(pair(&client, &client.public_key(), &secret, &ev).is_some());
        let text = text.replace("abc123", "wrong");
        let ev = sealed(&signer, &client, &text);
        assert!(pair(&client, &client.public_key(), &secret, &ev).is_none());
    }
}
