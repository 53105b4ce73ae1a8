//! The `nostr` crate's signer traits, so a [`Client`] drops in wherever a
//! `nostr` signer is accepted (`EventBuilder::finalize_async`, NIP-17/59
//! gift wraps, NIP-98 auth, …).
//!
//! `get_public_key_async` returns the user pubkey learned when connecting,
//! without a round trip: callers ask it often (every `finalize_async` does),
//! and it cannot change during a session (a restored session checks it).

use std::future::Future;
use std::pin::Pin;

use nip46::nostr::prelude::{
    AsyncGetPublicKey, AsyncNip04, AsyncNip44, AsyncSignEvent, Event, PublicKey, UnsignedEvent,
};

use crate::client::Client;
use crate::error::Error;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

impl AsyncGetPublicKey for Client {
    type Error = Error;

    fn get_public_key_async(&self) -> Boxed<'_, PublicKey> {
        let user = self.user_pubkey();
        Box::pin(async move { Ok(user) })
    }
}

impl AsyncSignEvent for Client {
    type Error = Error;

    fn sign_event_async(&self, unsigned: UnsignedEvent) -> Boxed<'_, Event> {
        Box::pin(self.sign_event(unsigned))
    }
}

impl AsyncNip04 for Client {
    type Error = Error;

    fn nip04_encrypt_async<'a>(
        &'a self,
        public_key: &'a PublicKey,
        content: &'a str,
    ) -> Boxed<'a, String> {
        Box::pin(self.nip04_encrypt(public_key, content))
    }

    fn nip04_decrypt_async<'a>(
        &'a self,
        public_key: &'a PublicKey,
        encrypted_content: &'a str,
    ) -> Boxed<'a, String> {
        Box::pin(self.nip04_decrypt(public_key, encrypted_content))
    }
}

impl AsyncNip44 for Client {
    type Error = Error;

    fn nip44_encrypt_async<'a>(
        &'a self,
        public_key: &'a PublicKey,
        content: &'a str,
    ) -> Boxed<'a, String> {
        Box::pin(self.nip44_encrypt(public_key, content))
    }

    fn nip44_decrypt_async<'a>(
        &'a self,
        public_key: &'a PublicKey,
        payload: &'a str,
    ) -> Boxed<'a, String> {
        Box::pin(self.nip44_decrypt(public_key, payload))
    }
}
