//! Rampart's NIP-46 client: a remote signer any Rust Nostr app can use.
//!
//! A [`Client`] talks to a bunker — Rampart's or anyone's — over Nostr
//! relays, and implements the `nostr` crate's async signer traits, so it
//! drops in wherever a `nostr` signer is accepted. It was written against
//! the usual complaints about NIP-46 clients:
//!
//! - **No request hangs.** Every request has a deadline
//!   ([`ClientOptions::request_timeout`], 30 s by default) and ends in a
//!   value; dropping its future cancels it. [`Error`] tells a timeout from
//!   unreachable relays, a refusal, another signer error (code parsed) and a
//!   bad answer.
//! - **Sessions survive restarts.** [`Client::session`] gives what
//!   [`Client::restore`] needs (saved as a 0600 JSON file with
//!   [`Session::save`]); restoring checks the signer still speaks for the
//!   same user.
//! - **Relays follow the signer.** `switch_relays` is sent after connecting
//!   and its answer followed; dropped relays reconnect on their own, and
//!   requests that got no answer are re-sent (as fresh events, same id) once
//!   the signer is heard again.
//! - **`auth_url` done right.** The URL goes to a caller-supplied callback
//!   (never opened by the client, only http(s), only from the paired signer),
//!   and the request keeps waiting, longer
//!   ([`ClientOptions::auth_timeout`]), for the real answer.
//! - **Signed events are checked** (id, signature, author, and that they are
//!   the event asked for) before they are returned.
//!
//! Connect with a `bunker://` token or a NIP-05 address ([`Client::connect`]),
//! or hand out a `nostrconnect://` URI ([`Client::nostrconnect`]).
//!
//! ```no_run
//! use rampart_client::{Client, ClientOptions, Session};
//! use rampart_client::nip46::nostr::prelude::{EventBuilder, FinalizeEventAsync, Kind};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions::new()
//!     .name("My App")
//!     .on_auth_url(|challenge| eprintln!("approve in your browser: {}", challenge.url));
//! let signer = Client::connect(
//!     "bunker://fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52?relay=wss%3A%2F%2Frelay.example.com&secret=0s8j2djs",
//!     options.clone(),
//! )
//! .await?;
//!
//! // Anything that takes a `nostr` async signer takes the client.
//! let note = EventBuilder::new(Kind::TextNote, "hello from a remote key")
//!     .finalize_async(&signer)
//!     .await?;
//! assert_eq!(note.pubkey, signer.user_pubkey());
//!
//! // Keep the session; after a restart, no new token is needed.
//! let path = std::path::Path::new("session.json");
//! signer.session().save(path)?;
//! let again = Client::restore(Session::load(path)?, options).await?;
//! let _ciphertext = again.nip44_encrypt(&note.pubkey, "to myself").await?;
//!
//! // On logout, tell the signer and forget the session.
//! again.logout().await?;
//! Session::delete(path)?;
//! # Ok(()) }
//! ```
//!
//! # Signers in the wild
//!
//! Tested against Rampart's bunker and two third-party signers
//! (`crates/peer-signer`, `crates/client/tests/interop_applesauce.rs`). What
//! the client accepts for them:
//!
//! - rust-nostr's nostr-connect ≤ 0.44 never answers methods it does not
//!   know (`switch_relays`, `logout`, `get_relays`): `switch_relays` after
//!   connecting is waited for only a little longer than `get_public_key`
//!   took, then left pending in the background; `logout` waits
//!   [`ClientOptions::logout_timeout`]. It needs `pubkey` and `created_at`
//!   in `sign_event` templates (always sent), answers a `nostrconnect://`
//!   URI with a `connect` *request* carrying the secret (accepted when the
//!   secret matches), and its errors carry no code.
//! - applesauce-signers answers `switch_relays` with `"result": null` (read
//!   as "keep the relays"), echoes the secret as the `connect` result instead
//!   of `"ack"`, sends `"result": ""` beside its errors (no code), and serves
//!   one client at a time.
//! - Errors without a `"<code>: "` prefix are [`Error::Signer`] with no code:
//!   only `unauthorized` makes an [`Error::Denied`].
//!
//! The protocol logic is sans-I/O: the matching of responses to requests
//! (pending requests, deadlines, `auth_url` extensions, re-sends after a
//! reconnect) is a state machine tested without sockets; the async layer only
//! moves bytes through the relay pool.

mod checks;
mod client;
mod error;
mod link;
pub mod nip05;
mod nostrconnect;
mod options;
mod session;
mod signer;
mod tracker;

pub use client::Client;
pub use error::Error;
pub use nip05::{Nip05Address, Nip05Error};
pub use nostrconnect::PendingConnection;
pub use options::{AuthChallenge, AuthUrlHandler, ClientOptions};
pub use session::{Session, SessionError};

/// Re-exported so callers name the same protocol types the client uses.
pub use nip46;
