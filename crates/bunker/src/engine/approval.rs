//! Requests no rule covers: held for the user, answered when decided,
//! refused when nobody decides in time or the signer stops.

use nip46::nostr::prelude::Timestamp;
use nip46::{Command, Method, Request, Response};
use store::{
    ApprovalDecision, ApprovalId, ApprovalStatus, AuditDecision, Change, DecisionScope,
    PendingApproval, RequestSummary, Rule, RuleEffect,
};

use super::{Call, Ctx, DecideError, Engine, Output, Refusal, Reply};
use crate::clock::Millis;
use crate::policy;
use crate::randomness::Randomness;

pub(super) struct Held {
    pub(super) approval: PendingApproval,
    pub(super) request: Request,
    pub(super) ctx: Ctx,
}

/// What a held request asks, for a person to read.
fn summarize(command: &Command) -> RequestSummary {
    const MAX_TEXT: usize = 2000;
    let clip = |s: &str| -> String { s.chars().take(MAX_TEXT).collect() };
    match command {
        Command::SignEvent(t) => RequestSummary::SignEvent {
            kind: t.kind.as_u16(),
            content: clip(&t.content),
            tags: t.tags.iter().map(|tag| tag.as_slice().to_vec()).collect(),
            created_at: t.created_at.map(|c| c.as_secs()),
        },
        Command::Nip04Encrypt { peer, plaintext } | Command::Nip44Encrypt { peer, plaintext } => {
            RequestSummary::Encrypt {
                peer: *peer,
                plaintext: clip(plaintext),
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
        let t = now.timestamp();
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
            created_at: t,
            expires_at: Timestamp::from_secs(t.as_secs() + self.config.approval_timeout_secs),
            status: ApprovalStatus::Pending,
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

    /// Apply the user's decision on a held request.
    pub fn decide(
        &mut self,
        now: Millis,
        id: &ApprovalId,
        decision: ApprovalDecision,
        rng: &mut dyn Randomness,
    ) -> Result<Output, DecideError> {
        let held = self
            .held
            .remove(id)
            .ok_or_else(|| DecideError::NotPending(id.0.clone()))?;
        let t = now.timestamp();
        let mut out = Output::default();
        let Held {
            approval,
            request,
            ctx,
        } = held;
        if let DecisionScope::Always { until } = decision.scope
            && let Some(live) = self.sessions.get_mut(&(ctx.key_id, ctx.client))
        {
            let effect = if decision.allow {
                RuleEffect::Allow
            } else {
                RuleEffect::Deny
            };
            live.session.set_rule(Rule {
                permission: policy::permission_for(approval.method, approval.kind),
                effect,
                expires_at: until,
            });
            live.session.revision += 1;
            out.changes.push(Change::PutSession(live.session.clone()));
        }
        out.changes.push(Change::SetApprovalStatus {
            id: id.clone(),
            status: ApprovalStatus::Done(decision),
        });
        let still_active = self
            .sessions
            .get(&(ctx.key_id, ctx.client))
            .is_some_and(|l| l.session.is_active(t));
        let answer = if decision.allow && still_active {
            self.execute_and_answer(now, ctx, request, AuditDecision::Approved, rng)
        } else {
            let reason = if decision.allow {
                "the session ended before approval"
            } else {
                "denied by the user"
            };
            let call = held_call(&approval, &request);
            self.refuse(now, ctx, call, Refusal::unauthorized(reason), rng)
        };
        out.merge(answer);
        Ok(out)
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
        self.next_touch = Some(now);
        out.merge(self.handle_timeout(now, rng));
        out.changes
            .extend(self.strangers.drain().into_iter().map(Change::Audit));
        out
    }
}
