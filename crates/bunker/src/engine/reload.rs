//! Merging what the store holds (edits by the CLI or the dashboard) into the
//! engine's mirror, and acting on it.

use nip46::nostr::prelude::PublicKey;
use store::{ApprovalStatus, KeyId};

use super::{ConnectAttempt, Engine, Output, Snapshot};
use crate::clock::Millis;
use crate::randomness::Randomness;

impl Engine {
    /// Merge what the store holds into the mirrored state, then act on what
    /// others wrote there: connect replies to send, approvals decided from the CLI.
    ///
    /// The engine's own writes may not be committed yet when a snapshot is
    /// taken, so nothing is simply replaced: a token once used stays used, a
    /// session is taken from the store only when its revision is newer, and a
    /// session not yet in the store is kept.
    pub fn reload(&mut self, now: Millis, snapshot: Snapshot, rng: &mut dyn Randomness) -> Output {
        let mut out = Output::default();
        let mut tokens = snapshot.tokens;
        for token in &mut tokens {
            if let Some(old) = self
                .tokens
                .iter()
                .find(|t| t.id == token.id && t.used_at.is_some())
            {
                token.used_at = old.used_at;
                token.used_by = old.used_by;
            }
        }
        self.tokens = tokens;
        for stored in snapshot.sessions {
            let key = (stored.key_id, stored.client);
            match self.sessions.get_mut(&key) {
                Some(live) if live.session.revision >= stored.revision => {}
                Some(live) => {
                    let unflushed = live.unflushed;
                    live.session = stored;
                    // Counts not flushed yet are ahead of the store.
                    live.session.request_count += unflushed;
                }
                None => self.insert_session(stored, now),
            }
        }
        let pending_replies: Vec<(KeyId, PublicKey)> = self
            .sessions
            .values()
            .filter(|l| l.session.connect_reply.is_some() && l.session.is_active(now.timestamp()))
            .map(|l| (l.session.key_id, l.session.client))
            .collect();
        for key in pending_replies {
            out.merge(self.send_connect_reply(now, key, rng));
        }
        for approval in snapshot.approvals {
            if let ApprovalStatus::Decided(decision) = approval.status
                && let Ok(decided) = self.decide(now, &approval.id, decision, rng)
            {
                out.merge(decided);
            }
        }
        for d in std::mem::take(&mut self.deferred) {
            out.merge(self.handle_connect(
                now,
                d.ctx,
                d.id,
                d.params,
                ConnectAttempt::AfterReload,
                rng,
            ));
        }
        out
    }
}
