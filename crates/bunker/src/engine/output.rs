//! What one engine step asks the driver to do: store changes to commit,
//! then events to publish; or why the input was dropped.

use nip46::nostr::prelude::{Event, EventId, RelayUrl};
use nip46::{EnvelopeError, RequestError};
use store::Change;

/// An event to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The signed kind-24133 event.
    pub event: Event,
    /// Relays the client listens on besides the bunker's own (nostrconnect).
    pub extra_relays: Vec<RelayUrl>,
    /// The request event this answers (`None` for the unsolicited reply to
    /// a nostrconnect URI): what replicas claim, so it is answered once.
    pub answers: Option<EventId>,
}

/// Why an event was dropped without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not addressed to any of our signer keys.
    #[error("not addressed to any of our signer keys")]
    NotForUs,
    /// Envelope checks failed (kind, size).
    #[error("envelope refused: {0}")]
    Envelope(EnvelopeError),
    /// Outside the time window.
    #[error("created too long ago")]
    Stale,
    /// Created too far in the future.
    #[error("created too far in the future")]
    Future,
    /// Already processed.
    #[error("already processed (replay)")]
    Replayed,
    /// Bad id or signature.
    #[error("bad id or signature")]
    BadSignature,
    /// A client without a session that used up its answers: silence.
    #[error("a stranger over its limit (silenced)")]
    Silenced,
    /// Could not be decrypted.
    #[error("undecryptable: {0}")]
    Undecryptable(EnvelopeError),
    /// Decrypted, but not a request with a usable id (always
    /// [`RequestError::Malformed`]: a readable id is answered instead).
    #[error("{0}")]
    Malformed(RequestError),
}

/// Everything one engine step wants done.
#[derive(Debug, Default)]
pub struct Output {
    /// Commit these first, in one transaction.
    pub changes: Vec<Change>,
    /// Then publish these.
    pub publish: Vec<Outgoing>,
    /// Set when the input was dropped (for logs and counters).
    pub dropped: Option<Dropped>,
    /// The engine waits for fresh store state (a `connect` with an unknown
    /// secret); the driver should reload as soon as it can.
    pub wants_reload: bool,
}

impl Output {
    pub(super) fn dropped(reason: Dropped) -> Self {
        Output {
            dropped: Some(reason),
            ..Output::default()
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.publish.is_empty()
    }

    /// Append what `other` does after what this does.
    pub fn merge(&mut self, other: Output) {
        self.changes.extend(other.changes);
        self.publish.extend(other.publish);
        self.wants_reload |= other.wants_reload;
    }
}
