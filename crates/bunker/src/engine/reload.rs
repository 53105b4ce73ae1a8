//! Merging what the store holds (edits by the CLI or the dashboard) into the
//! engine's mirror, and acting on it.

use std::collections::{BTreeMap, BTreeSet};

use nip46::nostr::prelude::PublicKey;
use store::{ApprovalId, ApprovalStatus, Change, KeyId, TokenId, Vote};

use nip46::Method;

use super::{
    Call, ConnectAttempt, Engine, KEY_LOCKED, Output, Refusal, Signer, Snapshot, TransportKey,
};
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
        // Keys removed from the store are unloaded first, with what hangs on
        // them: nothing is signed with a removed key after this.
        let removed: Vec<KeyId> = self
            .signers
            .values()
            .map(|s| s.key_id)
            .filter(|id| !snapshot.keys.contains(id))
            .collect();
        for key_id in removed {
            out.merge(self.unload_key(now, key_id, rng));
        }
        // Keys locked since the last reload: their held requests are refused
        // now, before any decision in this snapshot could release one.
        let locked: BTreeSet<KeyId> = snapshot.locked.into_iter().collect();
        for key_id in locked.difference(&self.locked).copied().collect::<Vec<_>>() {
            out.merge(self.refuse_held_of(now, key_id, KEY_LOCKED, rng));
            tracing::warn!(key = %key_id, "key locked: its requests are refused");
        }
        for key_id in self.locked.difference(&locked) {
            tracing::info!(key = %key_id, "key unlocked");
        }
        self.locked = locked;
        let sensitive: BTreeMap<KeyId, BTreeSet<u16>> = snapshot
            .sensitive
            .into_iter()
            .map(|(key, kinds)| (key, kinds.into_iter().collect()))
            .collect();
        let operators: BTreeMap<String, store::Operator> = snapshot
            .operators
            .iter()
            .map(|o| (o.name.clone(), o.clone()))
            .collect();
        let voters_changed = operators != self.operators;
        self.operators = operators;
        if voters_changed {
            // A removed operator's votes go (the store dropped them too): a
            // new operator of the same name starts with none.
            let operators = &self.operators;
            for held in self.held.values_mut() {
                held.approval
                    .votes
                    .retain(|v| v.by == store::OWNER || operators.contains_key(&v.by));
            }
        }
        let quorums: BTreeMap<KeyId, u32> = snapshot.quorums.iter().copied().collect();
        if quorums != self.quorums {
            tracing::info!(keys = quorums.len(), "keys' quorums changed");
            self.quorums = quorums;
        }
        if sensitive != self.sensitive {
            tracing::info!(keys = sensitive.len(), "keys' own sensitive kinds changed");
            self.sensitive = sensitive;
        }
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
        let in_store: BTreeSet<(KeyId, PublicKey)> = snapshot
            .sessions
            .iter()
            .map(|s| (s.key_id, s.client))
            .collect();
        // Deleted in the store (or its key removed): gone here too. Sessions
        // not stored yet are the engine's own, waiting for their commit.
        self.sessions
            .retain(|key, live| !live.stored || in_store.contains(key));
        for stored in snapshot.sessions {
            if !self.signers.values().any(|s| s.key_id == stored.key_id) {
                continue;
            }
            let key = (stored.key_id, stored.client);
            match self.sessions.get_mut(&key) {
                // The store is authoritative on a tie: the same revision
                // there may hold an outside edit (a revoke) made while ours
                // was not committed yet; ours merges into the store anyway.
                Some(live) if live.session.revision > stored.revision => live.stored = true,
                Some(live) => {
                    let unflushed = live.unflushed;
                    live.session = stored;
                    live.stored = true;
                    // Counts not flushed yet are ahead of the store.
                    live.session.request_count += unflushed;
                }
                None => {
                    self.insert_session(stored, now);
                    if let Some(live) = self.sessions.get_mut(&key) {
                        live.stored = true;
                    }
                }
            }
        }
        let pending_replies: Vec<(KeyId, PublicKey)> = self
            .sessions
            .values()
            .filter(|l| l.session.connect_reply.is_some() && l.session.is_active(now.timestamp()))
            .filter(|l| !self.locked.contains(&l.session.key_id))
            .map(|l| (l.session.key_id, l.session.client))
            .collect();
        for key in pending_replies {
            out.merge(self.send_connect_reply(now, key, rng));
        }
        // An operator added (or given a key) may make votes given before
        // count; one removed withdrew its (the store dropped them too).
        if voters_changed {
            let held: Vec<ApprovalId> = self.held.keys().cloned().collect();
            for id in held {
                out.merge(self.settle(now, &id, rng));
            }
        }
        // Answers given elsewhere (the CLI, another replica's dashboard) to
        // requests held here; those counted already are skipped.
        for approval in snapshot.approvals {
            if !self.held.contains_key(&approval.id) {
                continue;
            }
            if let ApprovalStatus::Decided(decision) = approval.status {
                // As written before votes existed: the owner's answer.
                let vote = Vote {
                    by: store::OWNER.to_owned(),
                    decision,
                };
                out.merge(self.count_vote(now, &approval.id, vote, false, rng));
            }
            for vote in approval.votes {
                out.merge(self.count_vote(now, &approval.id, vote, false, rng));
            }
        }
        for d in std::mem::take(&mut self.deferred) {
            if !self.signers.contains_key(&d.ctx.signer) {
                continue;
            }
            // Kept waiting while its key is locked (it expires as usual).
            if self.locked.contains(&d.ctx.key_id) {
                self.deferred.push(d);
                continue;
            }
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

impl Engine {
    /// Whether key `key_id` is served with the signer key `signer`.
    pub fn serves(&self, key_id: KeyId, signer: &PublicKey) -> bool {
        self.signers.get(signer).is_some_and(|s| s.key_id == key_id)
    }

    /// Whether key `key_id` is served at all (under any signer key).
    pub fn serves_key(&self, key_id: KeyId) -> bool {
        self.signers.values().any(|s| s.key_id == key_id)
    }

    /// Serve a key loaded while running: one added to the store, or given a
    /// new signer key — then the old one stops serving (its sessions were
    /// revoked with the rotation; requests to it are now a stranger's), and
    /// the requests held or deferred under it are refused first, while it
    /// can still seal the answer. Its user key must be in the backend
    /// already; without it nothing changes (`None`).
    pub fn add_signer(
        &mut self,
        now: Millis,
        transport: TransportKey,
        rng: &mut dyn Randomness,
    ) -> Option<Output> {
        let user_pubkey = self.backend.user_pubkey(transport.key_id)?;
        let old: Vec<PublicKey> = self
            .signers
            .iter()
            .filter(|(_, s)| s.key_id == transport.key_id)
            .map(|(pk, _)| *pk)
            .collect();
        let mut out = Output::default();
        if !old.is_empty() {
            out = self.refuse_held_of(
                now,
                transport.key_id,
                "the key's signer key was replaced; connect again",
                rng,
            );
            self.deferred.retain(|d| !old.contains(&d.ctx.signer));
        }
        for signer in &old {
            self.signers.remove(signer);
        }
        self.conversations
            .retain(|(signer, _), _| !old.contains(signer));
        let signer = Signer {
            key_id: transport.key_id,
            user_pubkey,
            keys: transport.signer,
        };
        tracing::info!(key = %transport.key_id, signer = %signer.keys.public_key(), "serving a key loaded while running");
        self.signers.insert(signer.keys.public_key(), signer);
        Some(out)
    }

    /// Stop serving a key: its held requests are refused (the client is
    /// told, sealed with the signer key while it is still here), then its
    /// signer, sessions, cached conversations and pending connects go.
    fn unload_key(&mut self, now: Millis, key_id: KeyId, rng: &mut dyn Randomness) -> Output {
        let out = self.refuse_held_of(now, key_id, "the key was removed from the signer", rng);
        let signers: Vec<PublicKey> = self
            .signers
            .iter()
            .filter(|(_, s)| s.key_id == key_id)
            .map(|(pk, _)| *pk)
            .collect();
        for signer in &signers {
            self.signers.remove(signer);
        }
        self.conversations
            .retain(|(signer, _), _| !signers.contains(signer));
        self.sessions.retain(|(key, _), _| *key != key_id);
        self.deferred.retain(|d| d.ctx.key_id != key_id);
        self.tokens.retain(|t| t.key_id != key_id);
        self.backend.forget(key_id);
        tracing::info!(key = %key_id, "key removed from the store: unloaded");
        out
    }

    /// Refuse every request held for `key_id`, telling each client why.
    fn refuse_held_of(
        &mut self,
        now: Millis,
        key_id: KeyId,
        reason: &'static str,
        rng: &mut dyn Randomness,
    ) -> Output {
        let mut out = Output::default();
        let held: Vec<ApprovalId> = self
            .held
            .iter()
            .filter(|(_, h)| h.ctx.key_id == key_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            if let Some(h) = self.held.remove(&id) {
                out.merge(self.refuse_held(now, id, h, reason, rng));
            }
        }
        out
    }
}

/// What the engine believed written when a commit failed: undone by
/// [`Engine::roll_back`], then replaced by the store's state on the re-read
/// that follows every failed commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rollback {
    sessions: Vec<(KeyId, PublicKey)>,
    tokens: Vec<TokenId>,
    approvals: Vec<ApprovalId>,
    /// The tokens were used by another process first: refuse the connects
    /// that consumed them here.
    lost_race: bool,
}

impl Rollback {
    /// The commit failed because a token was used by another process (or
    /// replica) first: the connects that lost are refused, not left waiting.
    pub fn lost_race(mut self) -> Self {
        self.lost_race = true;
        self
    }

    /// What to undo if `changes` do not commit; `None` when nothing would be.
    pub fn of(changes: &[Change]) -> Option<Self> {
        let mut undo = Rollback::default();
        for change in changes {
            match change {
                Change::PutSession(s) => undo.sessions.push((s.key_id, s.client)),
                Change::AddRules { key_id, client, .. }
                | Change::RemoveRules { key_id, client, .. }
                | Change::ClearConnectReply { key_id, client }
                | Change::RevokeSession { key_id, client, .. } => {
                    undo.sessions.push((*key_id, *client));
                }
                // The session it opened (or added a grant to) is in the
                // same changes, as a PutSession or AddRules.
                Change::ConsumeToken { id, .. } => undo.tokens.push(*id),
                Change::PutApproval(a) => undo.approvals.push(a.id.clone()),
                Change::Audit(_)
                | Change::TouchSession { .. }
                | Change::SetApprovalStatus { .. }
                | Change::DecideApproval { .. }
                | Change::NoteVote { .. }
                | Change::SetQuorum { .. }
                | Change::RevokeToken { .. }
                | Change::RecordServedRelays(_)
                | Change::SetKeyLock { .. }
                | Change::SetSensitiveKinds { .. }
                | Change::PruneAudit { .. }
                | Change::Answer(_)
                | Change::HoldRequest(_) => {}
            }
        }
        let nothing =
            undo.sessions.is_empty() && undo.tokens.is_empty() && undo.approvals.is_empty();
        (!nothing).then_some(undo)
    }
}

impl Engine {
    /// A commit failed: forget what it would have written (sessions it
    /// created or changed, tokens it consumed, requests it held), so that
    /// the re-read of the store that follows puts the store's state back.
    /// A session whose single-use token did not commit stops serving.
    pub fn roll_back(&mut self, now: Millis, undo: Rollback, rng: &mut dyn Randomness) -> Output {
        let mut out = Output::default();
        self.sessions.retain(|key, _| !undo.sessions.contains(key));
        for token in self
            .tokens
            .iter_mut()
            .filter(|t| undo.tokens.contains(&t.id))
        {
            token.used_at = None;
            token.used_by = None;
        }
        for token in &undo.tokens {
            let Some(connect) = self.consuming.remove(token) else {
                continue;
            };
            if !undo.lost_race {
                continue;
            }
            let call = Call {
                method: Method::Connect.as_str(),
                kind: None,
                id: &connect.request_id,
            };
            let reason = "this secret was already used; ask for a new bunker:// token";
            out.merge(self.refuse_stranger(
                now,
                connect.ctx,
                call,
                Refusal::unauthorized(reason),
                rng,
            ));
        }
        for id in undo.approvals {
            if let Some(held) = self.held.remove(&id) {
                out.merge(self.refuse_held(
                    now,
                    id,
                    held,
                    "the signer could not record the request",
                    rng,
                ));
            }
        }
        tracing::warn!("a store commit failed: the engine's view was rolled back to the store's");
        out.wants_reload = true;
        out
    }
}
