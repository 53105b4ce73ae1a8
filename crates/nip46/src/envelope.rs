//! The kind-24133 envelope: building and opening NIP-46 events.
//!
//! Opening is split into steps a caller can interleave with its own policy
//! (the bunker checks replay and timestamps between [`precheck`] and
//! [`verify`]). Encryption goes through a [`Conversation`] that holds the
//! per-peer keys, because deriving them is an ECDH (≈ 28 µs, almost half the
//! cost of a whole request) and a peer sends many messages. Randomness comes
//! in as [`Entropy`]; nothing here reads a clock or the OS.

use std::sync::LazyLock;

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use nostr::nips::nip44::v2::{self, ConversationKey};
use nostr::prelude::{Event, EventId, Keys, Kind, PublicKey, Tag, Tags, Timestamp, UnsignedEvent};
use secp256k1::{All, Secp256k1, XOnlyPublicKey};
use zeroize::Zeroizing;

use crate::limits::Limits;
use crate::request::{Request, RequestError};
use crate::response::{Response, ResponseError};

/// The NIP-46 event kind.
pub const KIND: u16 = 24133;

static SECP: LazyLock<Secp256k1<All>> = LazyLock::new(Secp256k1::new);

/// How a message's content is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// NIP-44 v2, the current scheme.
    Nip44,
    /// NIP-04 (`<base64>?iv=<base64>`), still sent by legacy clients.
    Nip04,
}

impl Scheme {
    /// Tell the schemes apart by shape: NIP-04 content carries `?iv=`, which
    /// cannot occur in NIP-44's base64.
    pub fn detect(content: &str) -> Scheme {
        if content.contains("?iv=") {
            Scheme::Nip04
        } else {
            Scheme::Nip44
        }
    }

    /// Lower-case name, for logs and the audit trail.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Nip44 => "nip44",
            Scheme::Nip04 => "nip04",
        }
    }
}

/// Caller-supplied randomness for one message.
pub struct Entropy {
    /// NIP-44 nonce; its first 16 bytes are the NIP-04 IV.
    pub nonce: [u8; 32],
    /// Auxiliary randomness for the BIP-340 signature.
    pub aux: [u8; 32],
}

/// Why an event could not be opened or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a NIP-46 event.
    #[error("event kind {0} is not {KIND}")]
    WrongKind(u16),
    /// The event does not `p`-tag us.
    #[error("event is not addressed to this key (no matching p tag)")]
    NotForUs,
    /// Content larger than the limit (see [`crate::limits`]).
    #[error("content of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The content's length.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// Id or signature do not verify.
    #[error("event id or signature is invalid")]
    BadSignature,
    /// The content could not be decrypted with this conversation's keys.
    #[error("content could not be decrypted ({0})")]
    Undecryptable(&'static str),
    /// The decrypted text is not UTF-8.
    #[error("decrypted content is not UTF-8")]
    NotUtf8,
    /// The peer's pubkey is not usable for key agreement.
    #[error("peer pubkey is not a valid curve point")]
    BadPeerKey,
    /// Encryption failed (plaintext too large for the scheme).
    #[error("content could not be encrypted: {0}")]
    Encrypt(String),
    /// The signing key is not the author the event claims.
    #[error("the signing key does not match the event's author")]
    WrongSigner,
}

/// Per-peer state: the NIP-44 conversation key, the NIP-04 shared secret
/// once the peer has used NIP-04, and the peer's key as a curve point.
///
/// Holds key material: neither `Debug` nor `Clone`; wiped on drop.
pub struct Conversation {
    peer: PublicKey,
    /// The peer key parsed once: checking a signature against a 32-byte key
    /// otherwise starts with a square root to find its point (≈ 10 % of a
    /// verification).
    peer_point: XOnlyPublicKey,
    nip44: ConversationKey,
    nip04: Option<Zeroizing<[u8; 32]>>,
}

impl Drop for Conversation {
    fn drop(&mut self) {
        // `ConversationKey` is `Copy` and cannot implement `Zeroize`; overwrite it.
        self.nip44 = ConversationKey::new([0u8; 32]);
    }
}

impl Conversation {
    /// Derive the keys for talking between `local` and `peer`.
    pub fn new(local: &Keys, peer: PublicKey) -> Result<Self, EnvelopeError> {
        let nip44 = ConversationKey::derive(local.secret_key(), &peer)
            .map_err(|_| EnvelopeError::BadPeerKey)?;
        let peer_point = peer.xonly().map_err(|_| EnvelopeError::BadPeerKey)?;
        Ok(Conversation {
            peer,
            peer_point,
            nip44,
            nip04: None,
        })
    }

    /// The peer this conversation is with.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// [`verify`] for an event the peer wrote: its id, and its signature
    /// against the peer's key, parsed once for the conversation. An event by
    /// anyone else is refused.
    pub fn verify(&self, event: &Event) -> Result<(), EnvelopeError> {
        if event.pubkey != self.peer {
            return Err(EnvelopeError::BadPeerKey);
        }
        if !event.verify_id() {
            return Err(EnvelopeError::BadSignature);
        }
        let signature = secp256k1::schnorr::Signature::from_byte_array(*event.sig.as_bytes());
        SECP.verify_schnorr(&signature, event.id.as_bytes(), &self.peer_point)
            .map_err(|_| EnvelopeError::BadSignature)
    }

    fn nip04_key(&mut self, local: &Keys) -> Result<&[u8; 32], EnvelopeError> {
        if self.nip04.is_none() {
            self.nip04 = Some(nip04_shared_key(local, self.peer_point));
        }
        // Invariant: set just above when it was `None`.
        self.nip04.as_deref().ok_or(EnvelopeError::BadPeerKey)
    }

    /// Decrypt content from the peer, detecting the scheme.
    pub fn decrypt(
        &mut self,
        local: &Keys,
        content: &str,
    ) -> Result<(Scheme, String), EnvelopeError> {
        let scheme = Scheme::detect(content);
        let bytes = match scheme {
            Scheme::Nip44 => nip44_decrypt(&self.nip44, content)?,
            Scheme::Nip04 => nip04_decrypt(self.nip04_key(local)?, content)?,
        };
        let text = String::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)?;
        Ok((scheme, text))
    }

    /// Encrypt content for the peer.
    pub fn encrypt(
        &mut self,
        local: &Keys,
        scheme: Scheme,
        plaintext: &str,
        nonce: &[u8; 32],
    ) -> Result<String, EnvelopeError> {
        match scheme {
            Scheme::Nip44 => {
                let payload =
                    v2::encrypt_to_bytes_with_nonce(&self.nip44, plaintext.as_bytes(), *nonce)
                        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
                Ok(BASE64.encode(payload))
            }
            Scheme::Nip04 => {
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&nonce[..16]);
                Ok(nip04_encrypt(
                    self.nip04_key(local)?,
                    plaintext.as_bytes(),
                    &iv,
                ))
            }
        }
    }
}

fn nip44_decrypt(key: &ConversationKey, content: &str) -> Result<Vec<u8>, EnvelopeError> {
    if content.starts_with('#') {
        return Err(EnvelopeError::Undecryptable("unsupported NIP-44 version"));
    }
    let payload = BASE64
        .decode(content)
        .map_err(|_| EnvelopeError::Undecryptable("invalid base64"))?;
    if payload.first() != Some(&2) {
        return Err(EnvelopeError::Undecryptable("unsupported NIP-44 version"));
    }
    v2::decrypt_to_bytes(key, &payload)
        .map_err(|_| EnvelopeError::Undecryptable("NIP-44 MAC or padding"))
}

/// The NIP-04 key: the x coordinate of the ECDH point, unhashed (per NIP-04).
fn nip04_shared_key(local: &Keys, peer: XOnlyPublicKey) -> Zeroizing<[u8; 32]> {
    let point = secp256k1::PublicKey::from_x_only_public_key(peer, secp256k1::Parity::Even);
    let secret: &secp256k1::SecretKey = local.secret_key();
    let shared = Zeroizing::new(secp256k1::ecdh::shared_secret_point(&point, secret));
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&shared[..32]);
    key
}

fn nip04_encrypt(key: &[u8; 32], plaintext: &[u8], iv: &[u8; 16]) -> String {
    let cipher = cbc::Encryptor::<Aes256>::new(key.into(), iv.into());
    let ciphertext = cipher.encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    format!("{}?iv={}", BASE64.encode(ciphertext), BASE64.encode(iv))
}

fn nip04_decrypt(key: &[u8; 32], content: &str) -> Result<Vec<u8>, EnvelopeError> {
    let (ciphertext, iv) = content
        .split_once("?iv=")
        .ok_or(EnvelopeError::Undecryptable("missing ?iv="))?;
    let iv: [u8; 16] = BASE64
        .decode(iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(EnvelopeError::Undecryptable("invalid NIP-04 IV"))?;
    let ciphertext = BASE64
        .decode(ciphertext)
        .map_err(|_| EnvelopeError::Undecryptable("invalid base64"))?;
    cbc::Decryptor::<Aes256>::new(key.into(), (&iv).into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| EnvelopeError::Undecryptable("NIP-04 padding"))
}

/// Sign an unsigned event: compute its id once and sign it once.
///
/// Unlike `nostr`'s `sign_with_keys`, the fresh signature is not verified
/// again (that would add a third of the request's cost); BIP-340 signing with
/// a valid key pair cannot produce an invalid signature.
pub fn sign(keys: &Keys, unsigned: UnsignedEvent, aux: &[u8; 32]) -> Result<Event, EnvelopeError> {
    if unsigned.pubkey != keys.public_key() {
        return Err(EnvelopeError::WrongSigner);
    }
    let id: EventId = unsigned.compute_id();
    let sig = keys.sign_schnorr_with_aux_rand(&SECP, id.as_bytes(), aux);
    Ok(Event::new(
        id,
        unsigned.pubkey,
        unsigned.created_at,
        unsigned.kind,
        unsigned.tags,
        unsigned.content,
        sig,
    ))
}

/// Cheap checks before any cryptography: kind, size (at most the content of
/// an answer under the default [`Limits`]), `p` tag.
pub fn precheck(event: &Event, recipient: &PublicKey) -> Result<(), EnvelopeError> {
    precheck_limited(event, recipient, Limits::default().max_response_content())
}

/// [`precheck`] with content of at most `max_content` bytes.
pub fn precheck_limited(
    event: &Event,
    recipient: &PublicKey,
    max_content: usize,
) -> Result<(), EnvelopeError> {
    if event.kind.as_u16() != KIND {
        return Err(EnvelopeError::WrongKind(event.kind.as_u16()));
    }
    if event.content.len() > max_content {
        return Err(EnvelopeError::TooLarge {
            size: event.content.len(),
            limit: max_content,
        });
    }
    if !event.tags.public_keys().any(|pk| pk == *recipient) {
        return Err(EnvelopeError::NotForUs);
    }
    Ok(())
}

/// Verify the event id and signature.
pub fn verify(event: &Event) -> Result<(), EnvelopeError> {
    event
        .verify_with_ctx(&SECP)
        .map_err(|_| EnvelopeError::BadSignature)
}

/// Build a signed kind-24133 event carrying `plaintext` to the conversation's peer.
pub fn seal(
    local: &Keys,
    conversation: &mut Conversation,
    scheme: Scheme,
    plaintext: &str,
    created_at: Timestamp,
    entropy: &Entropy,
) -> Result<Event, EnvelopeError> {
    let content = conversation.encrypt(local, scheme, plaintext, &entropy.nonce)?;
    let unsigned = UnsignedEvent {
        id: None,
        pubkey: local.public_key(),
        created_at,
        kind: Kind::NostrConnect,
        tags: Tags::from_list(vec![Tag::public_key(conversation.peer())]),
        content,
    };
    sign(local, unsigned, &entropy.aux)
}

/// What opening a message yields besides its body.
#[derive(Debug)]
pub struct Opened<T> {
    /// The scheme the sender used (answer in kind).
    pub scheme: Scheme,
    /// The message body.
    pub body: T,
}

/// Why a message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The envelope is bad.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The decrypted text is not a readable response.
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// Every check and the decryption, for callers with no policy in between
/// (content up to the default [`Limits`]' answers).
pub fn open_text(
    local: &Keys,
    conversation: &mut Conversation,
    event: &Event,
) -> Result<(Scheme, String), EnvelopeError> {
    open_text_limited(
        local,
        conversation,
        event,
        Limits::default().max_response_content(),
    )
}

/// [`open_text`] with content of at most `max_content` bytes.
pub fn open_text_limited(
    local: &Keys,
    conversation: &mut Conversation,
    event: &Event,
    max_content: usize,
) -> Result<(Scheme, String), EnvelopeError> {
    precheck_limited(event, &local.public_key(), max_content)?;
    conversation.verify(event)?;
    conversation.decrypt(local, &event.content)
}

/// Open a request event (sender must be the conversation's peer).
pub fn open_request(
    local: &Keys,
    conversation: &mut Conversation,
    event: &Event,
) -> Result<Opened<Result<Request, RequestError>>, EnvelopeError> {
    let (scheme, text) = open_text(local, conversation, event)?;
    Ok(Opened {
        scheme,
        body: Request::parse(&text),
    })
}

/// Open a response event (sender must be the conversation's peer).
pub fn open_response(
    local: &Keys,
    conversation: &mut Conversation,
    event: &Event,
) -> Result<Opened<Response>, OpenError> {
    let (scheme, text) = open_text(local, conversation, event)?;
    Ok(Opened {
        scheme,
        body: Response::parse(&text)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::nips::{nip04, nip44};

    fn keys(byte: u8) -> Keys {
        Keys::new(nostr::prelude::SecretKey::from_slice(&[byte; 32]).unwrap())
    }

    fn entropy(byte: u8) -> Entropy {
        Entropy {
            nonce: [byte; 32],
            aux: [byte.wrapping_add(1); 32],
        }
    }

    #[test]
    fn nip44_interoperates_with_nostr() {
        let (a, b) = (keys(1), keys(2));
        let mut conv = Conversation::new(&a, b.public_key()).unwrap();
        let ct = conv.encrypt(&a, Scheme::Nip44, "hello", &[7; 32]).unwrap();
        assert_eq!(
            nip44::decrypt(b.secret_key(), &a.public_key(), &ct).unwrap(),
            "hello"
        );
        let theirs =
            nip44::encrypt(b.secret_key(), &a.public_key(), "back", nip44::Version::V2).unwrap();
        assert_eq!(
            conv.decrypt(&a, &theirs).unwrap(),
            (Scheme::Nip44, "back".to_string())
        );
    }

    #[test]
    fn nip04_interoperates_with_nostr() {
        let (a, b) = (keys(3), keys(4));
        let mut conv = Conversation::new(&a, b.public_key()).unwrap();
        let ct = conv.encrypt(&a, Scheme::Nip04, "legacy", &[9; 32]).unwrap();
        assert!(ct.contains("?iv="));
        assert_eq!(
            nip04::decrypt(b.secret_key(), &a.public_key(), &ct).unwrap(),
            "legacy"
        );
        let theirs = nip04::encrypt(b.secret_key(), &a.public_key(), "old client").unwrap();
        assert_eq!(
            conv.decrypt(&a, &theirs).unwrap(),
            (Scheme::Nip04, "old client".to_string())
        );
    }

    #[test]
    fn seal_and_open_both_schemes() {
        let (signer, client) = (keys(5), keys(6));
        for scheme in [Scheme::Nip44, Scheme::Nip04] {
            let mut c2s = Conversation::new(&client, signer.public_key()).unwrap();
            let mut s2c = Conversation::new(&signer, client.public_key()).unwrap();
            let req = r#"{"id":"1","method":"ping","params":[]}"#;
            let event = seal(
                &client,
                &mut c2s,
                scheme,
                req,
                Timestamp::from_secs(100),
                &entropy(1),
            )
            .unwrap();
            assert_eq!(event.kind, Kind::NostrConnect);
            event.verify().unwrap();
            let opened = open_request(&signer, &mut s2c, &event).unwrap();
            assert_eq!(opened.scheme, scheme);
            let request = opened.body.unwrap();
            assert_eq!(request.id, "1");

            let reply = Response::ok("1", "pong").to_json();
            let event = seal(
                &signer,
                &mut s2c,
                opened.scheme,
                &reply,
                Timestamp::from_secs(101),
                &entropy(2),
            )
            .unwrap();
            let opened = open_response(&client, &mut c2s, &event).unwrap();
            assert_eq!(opened.body, Response::ok("1", "pong"));
            assert_eq!(opened.scheme, scheme);
        }
    }

    #[test]
    fn open_rejects_bad_envelopes() {
        let (signer, client, stranger) = (keys(7), keys(8), keys(9));
        let mut c2s = Conversation::new(&client, signer.public_key()).unwrap();
        let mut s2c = Conversation::new(&signer, client.public_key()).unwrap();
        let event = seal(
            &client,
            &mut c2s,
            Scheme::Nip44,
            "{}",
            Timestamp::from_secs(1),
            &entropy(3),
        )
        .unwrap();

        // Addressed to someone else.
        let mut to_stranger = Conversation::new(&stranger, client.public_key()).unwrap();
        assert_eq!(
            open_text(&stranger, &mut to_stranger, &event).unwrap_err(),
            EnvelopeError::NotForUs
        );

        // Tampered content breaks the id.
        let mut tampered = event.clone();
        tampered.content.push('A');
        assert_eq!(
            open_text(&signer, &mut s2c, &tampered).unwrap_err(),
            EnvelopeError::BadSignature
        );

        // Wrong kind.
        let unsigned = UnsignedEvent::new(
            client.public_key(),
            Timestamp::from_secs(1),
            Kind::TextNote,
            [Tag::public_key(signer.public_key())],
            "x",
        );
        let note = sign(&client, unsigned, &[0; 32]).unwrap();
        assert_eq!(
            precheck(&note, &signer.public_key()).unwrap_err(),
            EnvelopeError::WrongKind(1)
        );

        // Oversized.
        let mut big = event.clone();
        big.content = "A".repeat(Limits::default().max_response_content() + 1);
        assert!(matches!(
            precheck(&big, &signer.public_key()),
            Err(EnvelopeError::TooLarge { .. })
        ));

        // Garbage content, properly signed.
        for garbage in ["not base64!", "#v3", "AAAA", "abc?iv=zzz"] {
            let unsigned = UnsignedEvent::new(
                client.public_key(),
                Timestamp::from_secs(1),
                Kind::NostrConnect,
                [Tag::public_key(signer.public_key())],
                garbage,
            );
            let ev = sign(&client, unsigned, &[0; 32]).unwrap();
            assert!(
                matches!(
                    open_text(&signer, &mut s2c, &ev),
                    Err(EnvelopeError::Undecryptable(_))
                ),
                "{garbage}"
            );
        }
    }

    #[test]
    fn conversation_verify_checks_author_id_and_signature() {
        let (signer, client, stranger) = (keys(12), keys(13), keys(14));
        let from_client = Conversation::new(&signer, client.public_key()).unwrap();
        let mut c2s = Conversation::new(&client, signer.public_key()).unwrap();
        let event = seal(
            &client,
            &mut c2s,
            Scheme::Nip44,
            "{}",
            Timestamp::from_secs(1),
            &entropy(4),
        )
        .unwrap();
        assert_eq!(from_client.verify(&event), Ok(()));
        assert_eq!(from_client.verify(&event), verify(&event));

        // Another author, properly signed by them.
        let mut s2c = Conversation::new(&stranger, signer.public_key()).unwrap();
        let other = seal(
            &stranger,
            &mut s2c,
            Scheme::Nip44,
            "{}",
            Timestamp::from_secs(1),
            &entropy(5),
        )
        .unwrap();
        assert_eq!(from_client.verify(&other), Err(EnvelopeError::BadPeerKey));

        // The right id with another event's signature.
        let mut forged = event.clone();
        forged.sig = other.sig;
        assert_eq!(
            from_client.verify(&forged),
            Err(EnvelopeError::BadSignature)
        );
        assert!(verify(&forged).is_err());

        // A changed body no longer matches the id.
        let mut tampered = event.clone();
        tampered.created_at = Timestamp::from_secs(2);
        assert_eq!(
            from_client.verify(&tampered),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn sign_produces_valid_events_and_refuses_wrong_key() {
        let k = keys(10);
        let unsigned = UnsignedEvent::new(
            k.public_key(),
            Timestamp::from_secs(1),
            Kind::TextNote,
            [],
            "hi",
        );
        let ev = sign(&k, unsigned.clone(), &[1; 32]).unwrap();
        ev.verify().unwrap();
        assert_eq!(
            sign(&keys(11), unsigned, &[1; 32]).unwrap_err(),
            EnvelopeError::WrongSigner
        );
    }
}
