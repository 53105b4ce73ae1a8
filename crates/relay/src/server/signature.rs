//! Signature checks of published events, with the author's key parsed once
//! per connection.
//!
//! Checking a signature against a 32-byte key starts by finding the key's
//! curve point, a square root: about 6 % of the embedded relay's CPU per
//! event under NIP-46 load (perf, docs/benchmarks.md). A connection nearly
//! always publishes as one key (a bunker as its signer key, an app as its
//! client key), so it keeps the last author's point.

use std::sync::LazyLock;

use nostr::prelude::{Event, PublicKey};
use secp256k1::schnorr::Signature;
use secp256k1::{Secp256k1, VerifyOnly, XOnlyPublicKey};

static SECP: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);

/// The last author a connection published as, with its key parsed.
#[derive(Default)]
pub(crate) struct AuthorKey {
    last: Option<(PublicKey, XOnlyPublicKey)>,
}

impl AuthorKey {
    /// Whether `event`'s signature is its author's over its id (the id is
    /// checked separately, against the event's content).
    pub(crate) fn verify(&mut self, event: &Event) -> bool {
        let point = match self.last {
            Some((key, point)) if key == event.pubkey => point,
            _ => {
                // Not a point on the curve: no signature can verify.
                let Ok(point) = event.pubkey.xonly() else {
                    return false;
                };
                self.last = Some((event.pubkey, point));
                point
            }
        };
        let signature = Signature::from_byte_array(*event.sig.as_bytes());
        SECP.verify_schnorr(&signature, event.id.as_bytes(), &point)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Kind};

    use super::*;

    fn note(keys: &Keys, text: &str) -> Event {
        EventBuilder::new(Kind::TextNote, text)
            .finalize(keys)
            .unwrap()
    }

    #[test]
    fn checks_every_event_against_its_own_author() {
        let (alice, bob) = (Keys::generate(), Keys::generate());
        let mut author = AuthorKey::default();
        let a = note(&alice, "a");
        let b = note(&bob, "b");
        for event in [&a, &a, &b, &a] {
            assert!(author.verify(event));
        }
        // Alice's event with Bob's signature, while Alice's key is cached.
        let mut forged = a.clone();
        forged.sig = b.sig;
        assert!(author.verify(&a));
        assert!(!author.verify(&forged));
        // Bob's event claimed by Alice (her key cached, his signature).
        let mut claimed = b.clone();
        claimed.pubkey = alice.public_key();
        assert!(!author.verify(&claimed));
        // The same event checked by nostr itself agrees.
        assert!(!forged.verify_signature() && !claimed.verify_signature());
    }

    #[test]
    fn a_key_that_is_not_a_point_verifies_nothing_and_is_not_kept() {
        let keys = Keys::generate();
        let good = note(&keys, "x");
        let mut bad = good.clone();
        // x = 5 is not the x coordinate of a point on secp256k1.
        let mut bytes = [0u8; 32];
        bytes[31] = 5;
        bad.pubkey = PublicKey::from_slice(&bytes).unwrap();
        assert!(bad.pubkey.xonly().is_err());
        let mut author = AuthorKey::default();
        assert!(author.verify(&good));
        assert!(!author.verify(&bad));
        assert!(author.verify(&good));
    }
}
