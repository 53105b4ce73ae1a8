//! Requests no rule covers: held for the user, answered when decided,
//! refused when nobody decides in time or the signer stops.

use nip46::envelope;
use nip46::nostr::prelude::{Event, Timestamp};
use nip46::{Command, Method, Request, Response};
use store::{
    ApprovalDecision, ApprovalId, ApprovalStatus, AuditDecision, Change, DecisionScope, KeyId,
    PendingApproval, RequestSummary, Rule, RuleEffect, Vote,
};

use super::{Call, Ctx, DecideError, Dropped, Engine, KEY_LOCKED, Output, Refusal, Reply};
use crate::clock::Millis;
use crate::policy::{self, Verdict};
use crate::randomness::Randomness;

pub(super) struct Held {
    /// What the user sees; for `sign_event` it holds the complete event
    /// that is signed if allowed (`approval.event`).
    pub(super) approval: PendingApproval,
    pub(super) request: Request,
    pub(super) ctx: Ctx,
}

/// About how many bytes a held request keeps in memory: its payload twice
/// (the request, and the approval's copy of the event or text).
fn payload_bytes(command: &Command) -> usize {
    let payload = match command {
        Command::SignEvent(t) => {
            t.content.len()
                + t.tags
                    .iter()
                    .map(|tag| tag.as_slice().iter().map(String::len).sum::<usize>())
                    .sum::<usize>()
        }
        Command::Nip04Encrypt {
            plaintext: text, ..
        }
        | Command::Nip44Encrypt {
            plaintext: text, ..
        }
        | Command::Nip04Decrypt {
            ciphertext: text, ..
        }
        | Command::Nip44Decrypt {
            ciphertext: text, ..
        } => text.len(),
        _ => 0,
    };
    payload.saturating_mul(2).saturating_add(1024)
}

/// What a held request asks, for a person to read: bounded in size, and
/// saying what it leaves out (the complete event is kept beside it).
fn summarize(command: &Command) -> RequestSummary {
    match command {
        Command::SignEvent(t) => {
            let (content, content_hidden) = clip(&t.content, RequestSummary::MAX_TEXT);
            let tags: Vec<Vec<String>> = t
                .tags
                .iter()
                .take(RequestSummary::MAX_TAGS)
                .map(|tag| {
                    let values = tag.as_slice();
                    let mut kept: Vec<String> = values
                        .iter()
                        .take(RequestSummary::MAX_TAG_VALUES)
                        .map(|value| clip_marked(value, RequestSummary::MAX_TAG_VALUE))
                        .collect();
                    if values.len() > kept.len() {
                        kept.push(format!("…(+{} values)", values.len() - kept.len()));
                    }
                    kept
                })
                .collect();
            RequestSummary::SignEvent {
                kind: t.kind.as_u16(),
                content,
                content_hidden,
                tags_hidden: (t.tags.len() - tags.len()) as u64,
                tags,
                created_at: t.created_at.map(|c| c.as_secs()),
            }
        }
        Command::Nip04Encrypt { peer, plaintext } | Command::Nip44Encrypt { peer, plaintext } => {
            let (plaintext, plaintext_hidden) = clip(plaintext, RequestSummary::MAX_TEXT);
            RequestSummary::Encrypt {
                peer: *peer,
                plaintext,
                plaintext_hidden,
            }
        }
        Command::Nip04Decrypt { peer, ciphertext } | Command::Nip44Decrypt { peer, ciphertext } => {
            RequestSummary::Decrypt {
                peer: *peer,
                ciphertext_len: ciphertext.len() as u64,
            }
        }
        _ => RequestSummary::Other,
    }
}

/// The first `max` characters of `text`, and how many were left out.
fn clip(text: &str, max: usize) -> (String, u64) {
    let kept: String = text.chars().take(max).collect();
    let hidden = text[kept.len()..].chars().count() as u64;
    (kept, hidden)
}

/// The first `max` characters of `text`, ending in `…(+N)` when N were cut.
fn clip_marked(text: &str, max: usize) -> String {
    match clip(text, max) {
        (kept, 0) => kept,
        (kept, hidden) => format!("{kept}…(+{hidden})"),
    }
}

/// A held request as its answer names it (the method as parsed when held).
fn held_call<'a>(approval: &'a PendingApproval, request: &'a Request) -> Call<'a> {
    Call {
        method: approval.method.as_str(),
        kind: approval.kind,
        id: &request.id,
    }
}

impl Engine {
    pub(super) fn hold(
        &mut self,
        now: Millis,
        ctx: Ctx,
        request: Request,
        rng: &mut dyn Randomness,
    ) -> Output {
        // A client that lost its connection re-sends the same request id in a
        // fresh event: the user is asked once, not once per copy.
        let waiting = self.held.iter().find(|(_, h)| {
            h.ctx.key_id == ctx.key_id && h.ctx.client == ctx.client && h.request.id == request.id
        });
        if let Some((id, _)) = waiting {
            let id = id.clone();
            return self.challenge(now, ctx, &request, &id, rng);
        }
        let for_session = self
            .held
            .values()
            .filter(|h| h.ctx.key_id == ctx.key_id && h.ctx.client == ctx.client)
            .count();
        let held_bytes: usize = self
            .held
            .values()
            .map(|h| payload_bytes(&h.request.command))
            .sum();
        if for_session >= self.config.max_held_per_session
            || self.held.len() >= self.config.max_held_total
            || held_bytes.saturating_add(payload_bytes(&request.command))
                > self.config.max_held_bytes
        {
            return self.refuse(now, ctx, Call::of(&request), Refusal::TooManyWaiting, rng);
        }
        let t = now.timestamp();
        // The event the user sees is the event signed: its created_at is
        // fixed now, and its id computed, before anyone looks at it.
        let event = match &request.command {
            Command::SignEvent(template) => match self.unsigned_event(ctx, template.clone(), t) {
                Ok(event) => Some(event),
                Err(refusal) => return self.refuse(now, ctx, Call::of(&request), refusal, rng),
            },
            _ => None,
        };
        let mut id_bytes = [0u8; 16];
        rng.fill(&mut id_bytes);
        let id = ApprovalId::from_entropy(id_bytes);
        let metadata = self
            .sessions
            .get(&(ctx.key_id, ctx.client))
            .map(|l| l.session.metadata.clone())
            .unwrap_or_default();
        let method = request.command.method().unwrap_or(Method::Ping);
        let approval = PendingApproval {
            id: id.clone(),
            key_id: ctx.key_id,
            client: ctx.client,
            metadata,
            request_id: request.id.clone(),
            method,
            kind: request.command.kind(),
            summary: summarize(&request.command),
            event,
            created_at: t,
            expires_at: Timestamp::from_secs(
                t.as_secs()
                    .saturating_add(self.config.approval_timeout_secs),
            ),
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
        };
        let mut out = Output::default();
        out.changes.push(Change::PutApproval(approval.clone()));
        out.merge(self.challenge(now, ctx, &request, &id, rng));
        self.held.insert(
            id,
            Held {
                approval,
                request,
                ctx,
            },
        );
        out
    }

    /// The `auth_url` answer for a held request, when challenges are on.
    fn challenge(
        &mut self,
        now: Millis,
        ctx: Ctx,
        request: &Request,
        id: &ApprovalId,
        rng: &mut dyn Randomness,
    ) -> Output {
        let Some(base) = &self.config.auth_url_base else {
            return Output::default();
        };
        let response = Response::auth_url(&request.id, base.approval_url(id));
        let reply = Reply::plain(Call::of(request), AuditDecision::Pending, response);
        self.answer(now, ctx, reply, rng)
    }

    /// Take over a request another replica held for the user (it stopped,
    /// or it is this replica's previous run): held here under the same
    /// approval — the event shown to the user is the one signed — and
    /// answered at once if it was decided meanwhile. An event this engine
    /// cannot open (a key it does not serve) is left alone.
    pub fn adopt(
        &mut self,
        now: Millis,
        approval: PendingApproval,
        event: &Event,
        rng: &mut dyn Randomness,
    ) -> Output {
        let Some((signer, key_id)) = event
            .tags
            .public_keys()
            .find_map(|pk| self.signers.get(&pk).map(|s| (pk, s.key_id)))
        else {
            return Output::dropped(Dropped::NotForUs);
        };
        if envelope::verify(event).is_err() {
            return Output::dropped(Dropped::BadSignature);
        }
        let (scheme, text) = match self.decrypt(&signer, event) {
            Ok(opened) => (opened.scheme, opened.body),
            Err(e) => return Output::dropped(Dropped::Undecryptable(e)),
        };
        let request = match Request::parse_limited(&text, &self.config.limits) {
            Ok(request) => request,
            Err(e) => return Output::dropped(Dropped::Malformed(e)),
        };
        if approval.client != event.pubkey
            || approval.key_id != key_id
            || approval.request_id != store::codec::storable(&request.id)
        {
            tracing::warn!(approval = %approval.id, "a held request does not match its request event; left alone");
            return Output::default();
        }
        let t = now.timestamp();
        self.replay
            .remember(t, &event.pubkey, event.created_at, &event.id);
        let ctx = Ctx {
            key_id,
            signer,
            client: event.pubkey,
            event_id: event.id,
            created_at: event.created_at,
            scheme,
        };
        let id = approval.id.clone();
        let status = approval.status;
        let held = Held {
            approval,
            request,
            ctx,
        };
        if self.locked.contains(&key_id) {
            return self.refuse_held(now, id, held, KEY_LOCKED, rng);
        }
        self.held.insert(id.clone(), held);
        tracing::info!(approval = %id, "adopted a held request");
        // Answered while its holder lived (its votes came with it), or
        // decided as written before votes existed.
        let mut out = Output::default();
        if let ApprovalStatus::Decided(decision) = status {
            let vote = Vote {
                by: store::OWNER.to_owned(),
                decision,
            };
            out.merge(self.count_vote(now, &id, vote, false, rng));
        }
        out.merge(self.settle(now, &id, rng));
        out
    }

    /// Apply the owner's decision on a held request (the terminal prompt,
    /// the CLI, the owner's dashboard login): a vote by [`store::OWNER`].
    pub fn decide(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        decision: ApprovalDecision,
        rng: &mut dyn Randomness,
    ) -> Result<Output, DecideError> {
        let vote = Vote {
            by: store::OWNER.to_owned(),
            decision,
        };
        self.vote(now, id, vote, rng)
    }

    /// Count one person's answer to a held request. One deny refuses it; it
    /// is released once as many distinct people allowed it as it needs
    /// ([`Engine::tally`]: one, or a sensitive kind's quorum); short of
    /// that it keeps waiting, the allow recorded (the same person allowing
    /// twice counts once).
    pub fn vote(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        vote: Vote,
        rng: &mut dyn Randomness,
    ) -> Result<Output, DecideError> {
        if !self.held.contains_key(id) {
            return Err(DecideError::NotPending(id.0.clone()));
        }
        Ok(self.count_vote(now, id, vote, true, rng))
    }

    /// A held request's allows so far (by distinct people) and how many it
    /// needs; `None` when it is not held here.
    pub fn tally(&self, id: &ApprovalId) -> Option<(u32, u32)> {
        let held = self.held.get(id)?;
        Some((self.allowers(held).len() as u32, self.votes_needed(held)))
    }

    /// Whether `by` may answer for `key` now: the owner, or an operator
    /// with the owner or approver role covering the key (a removed
    /// operator's vote, or an auditor's, never counts).
    fn may_vote(&self, by: &str, key: KeyId) -> bool {
        by == store::OWNER
            || self.operators.get(by).is_some_and(|o| {
                matches!(o.role, store::Role::Owner | store::Role::Approver) && o.covers(key)
            })
    }

    /// The distinct people who may vote and allowed, in the order they did.
    fn allowers<'h>(&self, held: &'h Held) -> Vec<&'h str> {
        let mut names: Vec<&str> = Vec::new();
        for vote in held.approval.votes.iter().filter(|v| v.decision.allow) {
            if self.may_vote(&vote.by, held.ctx.key_id) && !names.contains(&vote.by.as_str()) {
                names.push(&vote.by);
            }
        }
        names
    }

    /// How many distinct people must allow a held request.
    fn votes_needed(&self, held: &Held) -> u32 {
        let key_id = held.ctx.key_id;
        if self.is_sensitive(key_id, held.approval.method, held.approval.kind) {
            self.quorums.get(&key_id).copied().unwrap_or(1).max(1)
        } else {
            1
        }
    }

    /// Add `vote` to a held request's votes (once per person and answer;
    /// `record`: also in the store, for the other dashboards to show) and
    /// settle the request if it can be.
    pub(super) fn count_vote(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        vote: Vote,
        record: bool,
        rng: &mut dyn Randomness,
    ) -> Output {
        let Some(held) = self.held.get_mut(id) else {
            return Output::default();
        };
        let mut out = Output::default();
        let counted = held
            .approval
            .votes
            .iter()
            .any(|v| v.by == vote.by && v.decision.allow == vote.decision.allow);
        if !counted {
            if record {
                out.changes.push(Change::NoteVote {
                    id: id.clone(),
                    vote: vote.clone(),
                });
            }
            held.approval.votes.push(vote);
        }
        out.merge(self.settle(now, id, rng));
        out
    }

    /// Answer a held request if its votes settle it: the first deny
    /// refuses it, enough allows release it. The audit row names who.
    pub(super) fn settle(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        rng: &mut dyn Randomness,
    ) -> Output {
        let Some(held) = self.held.get(id) else {
            return Output::default();
        };
        let key = held.ctx.key_id;
        let votes = &held.approval.votes;
        let deny = votes
            .iter()
            .find(|v| !v.decision.allow && self.may_vote(&v.by, key));
        let (decision, by) = match deny {
            Some(deny) => (deny.decision, deny.by.clone()),
            None => {
                let names = self.allowers(held);
                // The releasing allow's scope (once, or always) applies.
                let Some(last) = votes
                    .iter()
                    .rev()
                    .find(|v| v.decision.allow && self.may_vote(&v.by, key))
                else {
                    return Output::default();
                };
                if (names.len() as u32) < self.votes_needed(held) {
                    return Output::default();
                }
                (last.decision, names.join(","))
            }
        };
        let Some(held) = self.held.remove(id) else {
            return Output::default();
        };
        let event_id = held.ctx.event_id;
        let mut out = self.apply_decision(now, id, held, decision, rng);
        for change in &mut out.changes {
            if let Change::Audit(entry) = change
                && entry.event_id == Some(event_id)
            {
                entry.operator = Some(by.clone());
            }
        }
        out
    }

    /// Answer a held request as decided.
    fn apply_decision(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        held: Held,
        decision: ApprovalDecision,
        rng: &mut dyn Randomness,
    ) -> Output {
        // Whatever was decided, nothing is signed with a locked key.
        if self.locked.contains(&held.ctx.key_id) {
            return self.refuse_held(now, id.clone(), held, KEY_LOCKED, rng);
        }
        let t = now.timestamp();
        let mut out = Output::default();
        let Held {
            mut approval,
            request,
            ctx,
        } = held;
        let event = approval.event.take();
        // "Always allow" for a sensitive kind is this once: it asks every
        // time ("always deny" stays: a deny rule wins anyway).
        let scope = match decision.scope {
            DecisionScope::Always { .. }
                if decision.allow
                    && self.is_sensitive(ctx.key_id, approval.method, approval.kind) =>
            {
                DecisionScope::Once
            }
            scope => scope,
        };
        if let DecisionScope::Always { until } = scope
            && let Some(live) = self.sessions.get_mut(&(ctx.key_id, ctx.client))
        {
            let effect = if decision.allow {
                RuleEffect::Allow
            } else {
                RuleEffect::Deny
            };
            let rule = Rule {
                permission: policy::permission_for(approval.method, approval.kind),
                effect,
                expires_at: until,
            };
            live.session.set_rule(rule.clone());
            live.session.revision += 1;
            // Merged in the store: a rule edited there meanwhile stays.
            out.changes.push(Change::AddRules {
                key_id: ctx.key_id,
                client: ctx.client,
                rules: vec![rule],
            });
        }
        out.changes.push(Change::SetApprovalStatus {
            id: id.clone(),
            status: ApprovalStatus::Done(decision),
        });
        // Checked again now: the session may have ended, or a deny rule
        // been added, while the request waited.
        let verdict = self
            .sessions
            .get(&(ctx.key_id, ctx.client))
            .filter(|l| l.session.is_active(t))
            .map(|l| policy::evaluate(&l.session, t, approval.method, approval.kind));
        let call = held_call(&approval, &request);
        let answer = match (decision.allow, verdict) {
            (false, _) => self.refuse(
                now,
                ctx,
                call,
                Refusal::unauthorized("denied by the user"),
                rng,
            ),
            (true, None) => self.refuse(
                now,
                ctx,
                call,
                Refusal::unauthorized("the session ended before approval"),
                rng,
            ),
            (true, Some(Verdict::Deny(reason))) => {
                self.refuse(now, ctx, call, Refusal::unauthorized(reason), rng)
            }
            (true, Some(_)) => match event {
                // Exactly the event the user was shown.
                Some(event) => {
                    let signed = self.sign(ctx, event, rng);
                    self.executed_answer(now, ctx, call, signed, AuditDecision::Approved, rng)
                }
                None => self.execute_and_answer(now, ctx, request, AuditDecision::Approved, rng),
            },
        };
        out.merge(answer);
        out
    }

    /// Answer a held request `unauthorized` and mark its approval expired.
    pub(super) fn refuse_held(
        &mut self,
        now: Millis,
        id: ApprovalId,
        held: Held,
        reason: &'static str,
        rng: &mut dyn Randomness,
    ) -> Output {
        let Held {
            approval,
            request,
            ctx,
        } = held;
        let mut out = Output::default();
        out.changes.push(Change::SetApprovalStatus {
            id,
            status: ApprovalStatus::Expired,
        });
        let call = held_call(&approval, &request);
        out.merge(self.refuse(now, ctx, call, Refusal::unauthorized(reason), rng));
        out
    }

    /// Stop: answer every held request `unauthorized` (no client is left
    /// waiting) and flush session counters.
    pub fn shutdown(&mut self, now: Millis, rng: &mut dyn Randomness) -> Output {
        let mut out = Output::default();
        for (id, held) in std::mem::take(&mut self.held) {
            out.merge(self.refuse_held(now, id, held, "the signer is shutting down", rng));
        }
        out.merge(self.flush(now, rng));
        out
    }

    /// Stop as one of several replicas: held requests stay in the store,
    /// waiting, for another replica (or this one's next run) to adopt;
    /// usage counters and strangers' audit rows are flushed.
    pub fn shutdown_leaving_held(&mut self, now: Millis, rng: &mut dyn Randomness) -> Output {
        self.held.clear();
        self.flush(now, rng)
    }

    fn flush(&mut self, now: Millis, rng: &mut dyn Randomness) -> Output {
        let mut out = Output::default();
        self.next_touch = Some(now);
        out.merge(self.handle_timeout(now, rng));
        out.changes
            .extend(self.strangers.drain().into_iter().map(Change::Audit));
        out
    }
}
