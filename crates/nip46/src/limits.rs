//! How large a NIP-46 message may be, and every bound that follows from it.
//!
//! People sign large events through remote signers (contact lists of
//! thousands, big app-data events), and NIP-44's extended length prefix
//! carries plaintexts of 64 KiB and more. One number is configured — the
//! largest request, as JSON text before encryption — and the rest is derived
//! from it, so the signer, the client and the relay agree:
//!
//! - a request's text ≤ `max_message`;
//! - an answer's text ≤ [`Limits::max_response`]: an answer can be larger than
//!   its request (`nip44_encrypt` returns about 4/3 of its plaintext,
//!   `sign_event` adds id, pubkey and signature);
//! - an event's `content` ≤ the NIP-44 encoding of those
//!   ([`Limits::max_request_content`], [`Limits::max_response_content`]);
//! - a relay frame carrying one such event ≤ [`Limits::max_relay_message`]
//!   (room for a request of up to [`Limits::hard_request_content`], which a
//!   signer still opens to answer `invalid_params` with the limit).
//!
//! The lengths are computed from NIP-44's padding rule (the spec's
//! `calc_padded_len`), arithmetic only: encryption itself is the `nostr`
//! crate's.

/// The default largest request: 1 MiB of JSON, so a 512 KiB event fits with
/// room for the escaping a stringified template adds.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// The smallest bound accepted: below it ordinary requests would not fit.
pub const MIN_MAX_MESSAGE: usize = 16 * 1024;

/// What an answer adds to a result of maximal size (the JSON around it,
/// a signed event's id, pubkey and signature, escaped).
const RESPONSE_OVERHEAD: usize = 4 * 1024;

/// What a relay frame adds around an event's content (`["EVENT", sub, {…}]`
/// with id, pubkey, sig, tags).
const FRAME_OVERHEAD: usize = 4 * 1024;

/// The size bounds of one signer or client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request text (JSON, before encryption), in bytes.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

impl Limits {
    /// Bounds for requests of at most `max_message` bytes (raised to
    /// [`MIN_MAX_MESSAGE`] if smaller).
    pub fn new(max_message: usize) -> Self {
        Limits {
            max_message: max_message.max(MIN_MAX_MESSAGE),
        }
    }

    /// The largest answer text: the encryption of a maximal plaintext plus
    /// the JSON around it.
    pub fn max_response(&self) -> usize {
        nip44_encoded_len(self.max_message).saturating_add(RESPONSE_OVERHEAD)
    }

    /// The largest `content` of a request event.
    pub fn max_request_content(&self) -> usize {
        nip44_encoded_len(self.max_message)
    }

    /// The largest `content` of an answer event.
    pub fn max_response_content(&self) -> usize {
        nip44_encoded_len(self.max_response())
    }

    /// The largest request `content` a signer opens at all: up to twice
    /// [`max_request_content`](Self::max_request_content) a client with a
    /// session is told the limit (`invalid_params`) instead of hearing
    /// nothing; past it the event is dropped unread.
    pub fn hard_request_content(&self) -> usize {
        self.max_request_content().saturating_mul(2)
    }

    /// The largest relay frame a signer, client or relay should let through:
    /// one answer, or one request up to the hard bound.
    pub fn max_relay_message(&self) -> usize {
        self.max_response_content()
            .max(self.hard_request_content())
            .saturating_add(FRAME_OVERHEAD)
    }
}

/// NIP-44's padded length of a plaintext of `len` bytes (`calc_padded_len`).
pub fn nip44_padded_len(len: usize) -> usize {
    if len <= 32 {
        return 32;
    }
    let next_power = (len - 1).checked_next_power_of_two().unwrap_or(usize::MAX);
    // `next_power_of_two` of len-1 is ≥ len-1; the spec wants the power
    // strictly above len-1's top bit, i.e. 1 << (floor(log2(len-1)) + 1).
    let next_power = if next_power == len - 1 {
        next_power.saturating_mul(2)
    } else {
        next_power
    };
    let chunk = if next_power <= 256 {
        32
    } else {
        next_power / 8
    };
    chunk.saturating_mul((len - 1) / chunk + 1)
}

/// The length of the base64 NIP-44 payload encrypting `len` plaintext bytes:
/// version, nonce, length prefix (2 bytes, or 6 from 64 KiB on), padded
/// plaintext, MAC.
pub fn nip44_encoded_len(len: usize) -> usize {
    let prefix = if len < 65_536 { 2 } else { 6 };
    let payload = 1 + 32 + prefix + nip44_padded_len(len) + 32;
    payload.div_ceil(3).saturating_mul(4)
}

#[cfg(test)]
mod tests {
    use nostr::nips::nip44::v2::{ConversationKey, encrypt_to_bytes_with_nonce};

    use super::*;

    #[test]
    fn encoded_lengths_match_real_nip44_payloads() {
        let key = ConversationKey::new([7; 32]);
        for len in [
            1,
            31,
            32,
            33,
            64,
            255,
            256,
            257,
            1000,
            65_535,
            65_536,
            65_537,
            81_920,
            81_921,
            300_000,
            1 << 20,
        ] {
            let plaintext = vec![b'a'; len];
            let payload = encrypt_to_bytes_with_nonce(&key, &plaintext, [1; 32]).unwrap();
            let encoded = base64_len(payload.len());
            assert_eq!(nip44_encoded_len(len), encoded, "plaintext of {len} bytes");
        }
    }

    fn base64_len(bytes: usize) -> usize {
        bytes.div_ceil(3) * 4
    }

    #[test]
    fn padding_follows_the_spec_vectors() {
        // From the spec's extended-prefix table.
        assert_eq!(nip44_padded_len(65_535), 65_536);
        assert_eq!(nip44_padded_len(65_536), 65_536);
        assert_eq!(nip44_padded_len(65_537), 81_920);
        assert_eq!(nip44_padded_len(1), 32);
        assert_eq!(nip44_padded_len(33), 64);
        assert_eq!(nip44_padded_len(257), 320);
    }

    #[test]
    fn bounds_grow_from_request_to_frame() {
        let limits = Limits::default();
        assert!(limits.max_request_content() > limits.max_message);
        assert!(limits.max_response() > limits.max_request_content());
        assert!(limits.max_response_content() > limits.max_response());
        assert!(limits.max_relay_message() > limits.max_response_content());
        assert!(limits.max_relay_message() > limits.hard_request_content());
        // What the embedded relay and the pool take by default.
        assert!(limits.max_relay_message() <= 3 * 1024 * 1024);
        assert_eq!(Limits::new(1).max_message, MIN_MAX_MESSAGE);
    }
}
