//! Sessions coming and going: `connect` with a single-use `bunker://`
//! secret, accepting a client's `nostrconnect://` URI, and `logout`.

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use nip46::{ConnectParams, Method, NostrConnectUri, PermissionSet, Response, Scheme};
use store::{
    ApprovalId, AuditDecision, Change, KeyId, Rule, RuleEffect, SecretHash, Session, SessionOrigin,
};

use super::{
    AcceptError, CONSUMING_MS, Call, Consuming, Ctx, Engine, MAX_CONSUMING, Outgoing, Output,
    Refusal, Reply,
};
use crate::clock::Millis;
use crate::randomness::Randomness;

/// A `connect` waiting for a reload (its secret matched no known token).
pub(super) struct DeferredConnect {
    pub(super) deadline: Millis,
    pub(super) ctx: Ctx,
    pub(super) id: String,
    pub(super) params: ConnectParams,
}

/// Whether a `connect` is seen for the first time or again after a reload
/// (a secret unknown the first time waits for one reload, then is refused).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectAttempt {
    /// As it arrived.
    First,
    /// After the store was reloaded for it (or its grace period ran out).
    AfterReload,
}

pub(super) enum TokenMatch {
    None,
    Used,
    Expired,
    Usable(usize),
}

/// The session a `nostrconnect://` URI creates.
pub fn nostrconnect_session(
    key_id: KeyId,
    uri: &NostrConnectUri,
    grant: &PermissionSet,
    now: Timestamp,
) -> Session {
    let mut session = Session::new(key_id, uri.client, grant, SessionOrigin::NostrConnect, now);
    session.requested_perms = uri.perms.clone().unwrap_or_default();
    session.metadata = nip46::ClientMetadata {
        name: uri.name.clone(),
        url: uri.url.clone(),
        image: uri.image.clone(),
    };
    session.relays = uri.relays.clone();
    session.connect_reply = Some(uri.secret.expose().to_owned());
    session
}

impl Engine {
    pub(super) fn handle_connect(
        &mut self,
        now: Millis,
        ctx: Ctx,
        id: String,
        params: ConnectParams,
        attempt: ConnectAttempt,
        rng: &mut dyn Randomness,
    ) -> Output {
        let t = now.timestamp();
        let id = id.as_str();
        let call = Call {
            method: Method::Connect.as_str(),
            kind: None,
            id,
        };
        let session_key = (ctx.key_id, ctx.client);
        let has_session = self
            .sessions
            .get(&session_key)
            .is_some_and(|l| l.session.is_active(t));
        // Also for connects deferred until their token is known: a locked
        // key consumes no token and opens no session.
        if self.locked.contains(&ctx.key_id) {
            return self.refuse_locked(now, ctx, call, has_session, rng);
        }
        let token = params
            .secret
            .as_ref()
            .map(|s| self.find_token(ctx.key_id, s.expose(), t));
        let mut out = Output::default();
        let decision = match (has_session, token) {
            // A known app reconnecting (apps send `connect` at every start).
            (true, None | Some(TokenMatch::None | TokenMatch::Used | TokenMatch::Expired)) => {
                AuditDecision::Allowed
            }
            // A known app presenting a fresh token: its grant is added.
            (true, Some(TokenMatch::Usable(index))) => {
                let grant = self.consume_token(index, ctx, id, now, &mut out);
                if let Some(live) = self.sessions.get_mut(&session_key) {
                    let rules: Vec<Rule> = grant
                        .iter()
                        .map(|p| Rule::permanent(p.clone(), RuleEffect::Allow))
                        .collect();
                    live.session.set_rules(rules.iter().cloned());
                    live.session.revision += 1;
                    // Merged in the store: an edit made there meanwhile stays.
                    out.changes.push(Change::AddRules {
                        key_id: ctx.key_id,
                        client: ctx.client,
                        rules,
                    });
                }
                AuditDecision::Allowed
            }
            (false, Some(TokenMatch::Usable(index))) => {
                let grant = self.consume_token(index, ctx, id, now, &mut out);
                let mut session =
                    Session::new(ctx.key_id, ctx.client, &grant, SessionOrigin::Bunker, t);
                session.requested_perms = params.requested_perms;
                session.metadata = params.metadata.unwrap_or_default();
                out.changes.push(Change::PutSession(session.clone()));
                self.insert_session(session, now);
                AuditDecision::Allowed
            }
            (false, Some(TokenMatch::None))
                if attempt == ConnectAttempt::First
                    && self.deferred.len() < self.config.max_deferred_connects =>
            {
                self.deferred.push(DeferredConnect {
                    deadline: now.plus_ms(self.config.unknown_secret_grace_ms),
                    ctx,
                    id: id.to_owned(),
                    params,
                });
                return Output {
                    wants_reload: true,
                    ..Output::default()
                };
            }
            (false, refusal) => {
                let reason = match refusal {
                    None => "connect needs the secret from a bunker:// token",
                    Some(TokenMatch::Used) => {
                        "this secret was already used; ask for a new bunker:// token"
                    }
                    Some(TokenMatch::Expired) => {
                        "this secret has expired; ask for a new bunker:// token"
                    }
                    Some(_) => "invalid secret",
                };
                // No session and no usable secret: a stranger.
                let answer =
                    self.refuse_stranger(now, ctx, call, Refusal::unauthorized(reason), rng);
                out.merge(answer);
                return out;
            }
        };
        let answer = self.answer(
            now,
            ctx,
            Reply::plain(call, decision, Response::ok(id, "ack")),
            rng,
        );
        out.merge(answer);
        out
    }

    pub(super) fn find_token(&self, key_id: KeyId, candidate: &str, now: Timestamp) -> TokenMatch {
        let hash = SecretHash::of(candidate);
        // Compare against every token of the key, without stopping early.
        let mut found = None;
        for (i, token) in self.tokens.iter().enumerate() {
            if token.key_id == key_id && token.secret_hash.ct_matches(&hash) {
                found = Some(i);
            }
        }
        let Some(i) = found else {
            return TokenMatch::None;
        };
        let token = &self.tokens[i];
        if token.used_at.is_some() {
            TokenMatch::Used
        } else if !token.is_usable(now) {
            TokenMatch::Expired
        } else {
            TokenMatch::Usable(i)
        }
    }

    /// Use a token for the connect `request_id` of `ctx.client`, remembered
    /// until the commit is known (a commit that loses the token to another
    /// process refuses this connect: see `roll_back`).
    pub(super) fn consume_token(
        &mut self,
        index: usize,
        ctx: Ctx,
        request_id: &str,
        now: Millis,
        out: &mut Output,
    ) -> PermissionSet {
        let (client, at) = (ctx.client, now.timestamp());
        self.consuming
            .retain(|_, c| now.0.saturating_sub(c.at.0) < CONSUMING_MS);
        if self.consuming.len() < MAX_CONSUMING {
            self.consuming.insert(
                self.tokens[index].id,
                Consuming {
                    ctx,
                    request_id: request_id.to_owned(),
                    at: now,
                },
            );
        }
        let token = &mut self.tokens[index];
        token.used_at = Some(at);
        token.used_by = Some(client);
        out.changes.push(Change::ConsumeToken {
            id: token.id,
            client,
            at,
        });
        token.grant.clone()
    }

    pub(super) fn handle_logout(
        &mut self,
        now: Millis,
        ctx: Ctx,
        id: &str,
        rng: &mut dyn Randomness,
    ) -> Output {
        let t = now.timestamp();
        // Answer first, then end the session (NIP-46: reply "ack" before removing).
        let call = Call {
            method: Method::Logout.as_str(),
            kind: None,
            id,
        };
        let ack = Reply::plain(call, AuditDecision::Allowed, Response::ok(id, "ack"));
        let mut out = self.answer(now, ctx, ack, rng);
        if let Some(live) = self.sessions.get_mut(&(ctx.key_id, ctx.client)) {
            live.session.revoked_at = Some(t);
            live.session.revision += 1;
        }
        out.changes.push(Change::RevokeSession {
            key_id: ctx.key_id,
            client: ctx.client,
            at: t,
        });
        out
    }

    /// Accept a client's `nostrconnect://` URI for a user key: create the
    /// session and send the `connect` response carrying the URI's secret.
    pub fn accept_nostrconnect(
        &mut self,
        now: Millis,
        key_id: KeyId,
        uri: &NostrConnectUri,
        grant: &PermissionSet,
        rng: &mut dyn Randomness,
    ) -> Result<Output, AcceptError> {
        if self.signer_of(key_id).is_none() {
            return Err(AcceptError::UnknownKey(key_id));
        }
        let session = nostrconnect_session(key_id, uri, grant, now.timestamp());
        let key = (key_id, uri.client);
        self.insert_session(session, now);
        Ok(self.send_connect_reply(now, key, rng))
    }

    pub(super) fn send_connect_reply(
        &mut self,
        now: Millis,
        key: (KeyId, PublicKey),
        rng: &mut dyn Randomness,
    ) -> Output {
        let mut out = Output::default();
        let Some(signer) = self.signer_of(key.0) else {
            return out;
        };
        let Some(live) = self.sessions.get_mut(&key) else {
            return out;
        };
        let Some(secret) = live.session.connect_reply.take() else {
            return out;
        };
        live.session.revision += 1;
        // A session accepted here (not yet stored) is stored whole; one the
        // CLI or dashboard stored only has its reply cleared there.
        out.changes.push(if live.stored {
            Change::ClearConnectReply {
                key_id: key.0,
                client: key.1,
            }
        } else {
            Change::PutSession(live.session.clone())
        });
        let extra_relays = live.session.relays.clone();
        let live_created_at = live.session.created_at;
        let mut id_bytes = [0u8; 16];
        rng.fill(&mut id_bytes);
        let request_id = ApprovalId::from_entropy(id_bytes).0;
        let response = Response::ok(&request_id, secret);
        match self.seal(now, signer, key.1, Scheme::Nip44, &response, rng) {
            Ok(event) => out.publish.push(Outgoing {
                event,
                extra_relays,
                // Every replica reloads the accepted session: this claim
                // lets one of them send the reply.
                answers: Some(connect_reply_claim(signer, key.1, live_created_at)),
            }),
            Err(e) => tracing::warn!(error = %e, "could not seal the nostrconnect reply"),
        }
        out
    }
}

/// What stands for a session's `connect` reply in the replicas' claims (it
/// answers no request event): one per session.
fn connect_reply_claim(signer: PublicKey, client: PublicKey, created_at: Timestamp) -> EventId {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"rampart nostrconnect reply\0");
    hasher.update(signer.to_bytes());
    hasher.update(client.to_bytes());
    hasher.update(created_at.as_secs().to_be_bytes());
    EventId::from_byte_array(hasher.finalize().into())
}
