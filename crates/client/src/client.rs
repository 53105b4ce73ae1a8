//! [`Client`]: a connected remote signer, and the ways to connect one.
//!
//! Connecting follows NIP-46: `connect` (with the token's secret), then
//! `get_public_key` (the signer's pubkey is not the user's), then
//! `switch_relays`, whose answer is followed. The last two are sent together
//! so a responsive signer costs one round trip for both. After that every
//! method is one request, matched by id, with a deadline.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{Event, Keys, PublicKey, RelayUrl, Timestamp, UnsignedEvent};
use nip46::{BunkerUri, Command, ConnectParams, ConnectSecret, EventTemplate, Method};
use relay::RelayStatus;
use tracing::debug;

use crate::checks;
use crate::error::Error;
use crate::link::{self, Link, Parts};
use crate::nip05::{self, Nip05Address};
use crate::options::ClientOptions;
use crate::session::Session;

/// Least time `switch_relays` is waited for after `get_public_key` answered.
const SWITCH_GRACE: Duration = Duration::from_millis(250);

/// A remote signer reached over NIP-46.
///
/// Cheap to clone; clones share one connection, and any number of requests
/// may be in flight at once. Every request ends within its timeout (or the
/// `auth_url` timeout once the signer asked for approval); dropping a
/// request's future cancels it. The connection closes when the last clone is
/// dropped, or at once with [`Client::shutdown`] or [`Client::logout`].
///
/// Must be created and used within a tokio runtime.
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client", &self.link.keys.public_key())
            .field("signer", &self.link.signer)
            .field("user", &self.link.user())
            .field("relays", &self.link.relays())
            .finish()
    }
}

impl Client {
    /// Connect from a `bunker://` token or a NIP-05 address (`name@domain`).
    pub async fn connect(token: &str, options: ClientOptions) -> Result<Client, Error> {
        let token = token.trim();
        if token.starts_with("bunker://") {
            Client::connect_bunker(token.parse()?, options).await
        } else if token.contains("://") {
            Err(Error::InvalidRequest(
                "expected a bunker:// token or a name@domain address (a nostrconnect:// URI is made by the client: see Client::nostrconnect)".into(),
            ))
        } else {
            Client::connect_nip05(token, options).await
        }
    }

    /// Connect from a `bunker://` token, with a fresh random client key.
    pub async fn connect_bunker(uri: BunkerUri, options: ClientOptions) -> Result<Client, Error> {
        let keys = Keys::generate();
        let listening = link::listen(&keys, Some(uri.signer), &uri.relays, &options)?;
        let conversation = nip46::Conversation::new(&keys, uri.signer)
            .map_err(|e| Error::InvalidRequest(format!("the token's pubkey: {e}")))?;
        let timeout = options.request_timeout;
        let params = ConnectParams {
            target: Some(uri.signer),
            secret: uri.secret.as_ref().map(ConnectSecret::duplicate),
            requested_perms: options.perms.clone().unwrap_or_default(),
            metadata: options.metadata(),
        };
        let link = Link::launch(Parts {
            keys,
            signer: uri.signer,
            conversation,
            relays: uri.relays,
            user: None,
            options,
            listening,
            seen: Default::default(),
        });
        let client = Client { link };
        let connected = client
            .link
            .call(Command::Connect(params), timeout)
            .await
            .and_then(|result| {
                checks::connect_result(&result, uri.secret.as_ref())
                    .map_err(|reason| Error::bad(Method::Connect, reason))
            });
        if let Err(e) = connected {
            client.link.close("connect failed").await;
            return Err(e);
        }
        client.establish(None).await
    }

    /// Log in with a NIP-05 address: look up the signer and its relays at
    /// `https://<domain>/.well-known/nostr.json?name=<name>`, then connect
    /// without a secret.
    pub async fn connect_nip05(address: &str, options: ClientOptions) -> Result<Client, Error> {
        let address: Nip05Address = address.parse()?;
        let uri = nip05::resolve(&address, options.http_timeout).await?;
        Client::connect_bunker(uri, options).await
    }

    /// Resume a saved session without a new token. Checks with
    /// `get_public_key` that the signer still speaks for the same user.
    pub async fn restore(session: Session, options: ClientOptions) -> Result<Client, Error> {
        let user = session.user;
        Client::restore_unchecked(session, options)?
            .establish(Some(user))
            .await
    }

    /// Resume a saved session without any round trip (no check that the
    /// signer still knows it). For [`Client::logout`] of a session the
    /// signer may already have ended.
    pub fn restore_unchecked(session: Session, options: ClientOptions) -> Result<Client, Error> {
        let Session {
            client_keys,
            signer,
            user,
            relays,
        } = session;
        let listening = link::listen(&client_keys, Some(signer), &relays, &options)?;
        let conversation = nip46::Conversation::new(&client_keys, signer)
            .map_err(|e| Error::InvalidRequest(format!("the session's signer pubkey: {e}")))?;
        Ok(Client {
            link: Link::launch(Parts {
                keys: client_keys,
                signer,
                conversation,
                relays,
                user: Some(user),
                options,
                listening,
                seen: Default::default(),
            }),
        })
    }

    pub(crate) fn from_link(link: Arc<Link>) -> Client {
        Client { link }
    }

    /// After `connect`: learn the user pubkey and follow the signer's relays.
    ///
    /// `switch_relays` goes out with `get_public_key`. A signer that answers
    /// one answers the other at about the same time, so its relay list is
    /// waited for a little longer than `get_public_key` took (at least
    /// [`SWITCH_GRACE`]); a signer that ignores the method (nostr-connect ≤
    /// 0.44 does) does not hold up the connection: the request stays pending
    /// in the background until its own timeout, and is followed if it is
    /// answered late.
    pub(crate) async fn establish(self, expected: Option<PublicKey>) -> Result<Client, Error> {
        let started = Instant::now();
        let switch = self.link.options.switch_relays_timeout.map(|timeout| {
            let client = self.clone();
            tokio::spawn(async move { client.switch_relays_within(timeout).await })
        });
        let user = match self.get_public_key().await {
            Ok(user) => user,
            Err(e) => {
                self.link.close("connection setup failed").await;
                return Err(e);
            }
        };
        if let Some(expected) = expected
            && expected != user
        {
            self.link.close("the session's user changed").await;
            return Err(Error::SessionMismatch {
                expected,
                actual: user,
            });
        }
        self.link.set_user(user);
        if let Some(task) = switch {
            let grace = started.elapsed().max(SWITCH_GRACE);
            match tokio::time::timeout(grace, task).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => {
                    debug!(error = %e, "switch_relays got no usable answer; keeping the relays");
                }
                Ok(Err(e)) => debug!(error = %e, "switch_relays task failed"),
                Err(_) => debug!("switch_relays not answered yet; keeping the relays meanwhile"),
            }
        }
        Ok(self)
    }

    /// The user's pubkey (the author of signed events), learned with
    /// `get_public_key` when connecting.
    pub fn user_pubkey(&self) -> PublicKey {
        // Set before any `Client` is handed out.
        self.link.user().unwrap_or(self.link.signer)
    }

    /// The remote signer's pubkey (what requests are addressed to).
    pub fn signer_pubkey(&self) -> PublicKey {
        self.link.signer
    }

    /// This client's own pubkey (the signer knows the app by it).
    pub fn client_pubkey(&self) -> PublicKey {
        self.link.keys.public_key()
    }

    /// The relays in use (the signer may change them with `switch_relays`).
    pub fn relays(&self) -> Vec<RelayUrl> {
        self.link.relays()
    }

    /// The state of each relay connection.
    pub fn relay_status(&self) -> Vec<RelayStatus> {
        self.link.pool.status()
    }

    /// Requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.link.pending()
    }

    /// What [`Client::restore`] needs to resume this connection later.
    pub fn session(&self) -> Session {
        Session {
            client_keys: self.link.keys.clone(),
            signer: self.link.signer,
            user: self.user_pubkey(),
            relays: self.link.relays(),
        }
    }

    /// Send any request and return its raw result string, with the default
    /// timeout.
    pub async fn call(&self, command: Command) -> Result<String, Error> {
        self.link
            .call(command, self.link.options.request_timeout)
            .await
    }

    /// Send any request with its own timeout.
    pub async fn call_with_timeout(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<String, Error> {
        self.link.call(command, timeout).await
    }

    /// Ask the signer for the user's pubkey (a round trip; see
    /// [`Client::user_pubkey`] for the cached value).
    pub async fn get_public_key(&self) -> Result<PublicKey, Error> {
        let result = self.call(Command::GetPublicKey).await?;
        checks::public_key(&result).map_err(|r| Error::bad(Method::GetPublicKey, r))
    }

    /// Have the user's key sign `unsigned` (whose pubkey must be the
    /// user's). The signed event is checked before it is returned: id,
    /// signature, author, and kind, content, tags and time as asked.
    pub async fn sign_event(&self, unsigned: UnsignedEvent) -> Result<Event, Error> {
        let user = self.user_pubkey();
        if unsigned.pubkey != user {
            return Err(Error::InvalidRequest(format!(
                "the event's pubkey {} is not the user's {}; build it with Client::user_pubkey",
                unsigned.pubkey.to_hex(),
                user.to_hex()
            )));
        }
        // `created_at` and `pubkey` are always sent: the NIP's template has
        // the first, and some signers (nostr-connect ≤ 0.44) need both.
        let template = EventTemplate {
            kind: unsigned.kind,
            content: unsigned.content.clone(),
            tags: unsigned.tags.clone(),
            created_at: Some(unsigned.created_at),
            pubkey: Some(user),
        };
        let result = self.call(Command::SignEvent(template)).await?;
        checks::signed_event(&result, &unsigned, &user)
            .map_err(|r| Error::bad(Method::SignEvent, r))
    }

    /// Sign an event template (as NIP-46 clients send it): the user's pubkey
    /// and, when missing, the current time are filled in.
    pub async fn sign_template(&self, template: EventTemplate) -> Result<Event, Error> {
        let unsigned = template
            .into_unsigned(self.user_pubkey(), Timestamp::now())
            .map_err(|e| Error::InvalidRequest(e.0))?;
        self.sign_event(unsigned).await
    }

    /// NIP-04-encrypt `plaintext` from the user to `peer`.
    pub async fn nip04_encrypt(&self, peer: &PublicKey, plaintext: &str) -> Result<String, Error> {
        self.call(Command::Nip04Encrypt {
            peer: *peer,
            plaintext: plaintext.to_owned(),
        })
        .await
    }

    /// NIP-04-decrypt `ciphertext` sent by `peer` to the user.
    pub async fn nip04_decrypt(&self, peer: &PublicKey, ciphertext: &str) -> Result<String, Error> {
        self.call(Command::Nip04Decrypt {
            peer: *peer,
            ciphertext: ciphertext.to_owned(),
        })
        .await
    }

    /// NIP-44-encrypt `plaintext` from the user to `peer`.
    pub async fn nip44_encrypt(&self, peer: &PublicKey, plaintext: &str) -> Result<String, Error> {
        self.call(Command::Nip44Encrypt {
            peer: *peer,
            plaintext: plaintext.to_owned(),
        })
        .await
    }

    /// NIP-44-decrypt `ciphertext` sent by `peer` to the user.
    pub async fn nip44_decrypt(&self, peer: &PublicKey, ciphertext: &str) -> Result<String, Error> {
        self.call(Command::Nip44Decrypt {
            peer: *peer,
            ciphertext: ciphertext.to_owned(),
        })
        .await
    }

    /// Check the signer answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.call(Command::Ping).await.map(|_| ())
    }

    /// Ask the signer which relays to use and follow its answer. Returns the
    /// new relays, or `None` when nothing changes.
    pub async fn switch_relays(&self) -> Result<Option<Vec<RelayUrl>>, Error> {
        self.switch_relays_within(self.link.options.request_timeout)
            .await
    }

    async fn switch_relays_within(
        &self,
        timeout: Duration,
    ) -> Result<Option<Vec<RelayUrl>>, Error> {
        let result = self
            .call_with_timeout(Command::SwitchRelays, timeout)
            .await?;
        match checks::relay_list(&result) {
            Some(relays) => {
                self.link.follow_relays(relays.clone())?;
                Ok(Some(relays))
            }
            None => Ok(None),
        }
    }

    /// End the session: send `logout`, wait for the answer (at most
    /// [`ClientOptions::logout_timeout`]), then close the connection whatever
    /// the answer. The caller must forget the saved session (its client key)
    /// either way — the NIP's `logout` is a courtesy, not a guarantee.
    pub async fn logout(&self) -> Result<(), Error> {
        let timeout = self.link.options.logout_timeout;
        let result = self.call_with_timeout(Command::Logout, timeout).await;
        self.link.close("logged out").await;
        result.map(|_| ())
    }

    /// Close the connection now; pending and later requests fail with
    /// [`Error::Disconnected`].
    pub async fn shutdown(&self) {
        self.link.close("the client was shut down").await;
    }
}
