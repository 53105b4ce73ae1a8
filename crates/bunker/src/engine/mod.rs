//! The bunker's request engine: kind-24133 events in, signed responses and
//! store changes out.
//!
//! Like quinn-proto's `Endpoint`, it does no I/O: time ([`Millis`]) and
//! randomness ([`Randomness`]) are passed in, and every effect comes back as
//! an [`Output`] for the driver to carry out: store [`Change`]s to commit
//! first, then events to publish. That ordering is what guarantees that a
//! signature never leaves without its audit row.
//!
//! One `handle_event` call walks the request path: route by `p` tag → cheap
//! envelope checks → time window and replay → signature → decrypt with the
//! cached conversation key → parse → session, rate limit, rules → execute →
//! seal the answer in the scheme the client used.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use nip46::envelope::{self, Opened};
use nip46::nostr::prelude::{Event, EventId, Keys, PublicKey, RelayUrl, Timestamp, UnsignedEvent};
use nip46::{
    Command, Conversation, Entropy, EnvelopeError, ErrorCode, EventTemplate, Limits, Method,
    Outcome, Request, RequestError, Response, Scheme, relay_list_json, relay_map_json,
};
use serde::{Deserialize, Serialize};
use store::{
    ApprovalId, AuditDecision, AuditEntry, AuditedEvent, Change, ConnectionToken, KeyId,
    PendingApproval, Session,
};

use crate::auth_url::AuthUrlBase;
use crate::clock::Millis;
use crate::keys::KeyBackend;
use crate::policy::{self, Verdict};
use crate::randomness::Randomness;
use crate::rate_limit::{RateLimit, TokenBucket};
use crate::replay::{ReplayGuard, ReplayVerdict};
use crate::strangers::{StrangerLimits, Strangers};

mod approval;
mod connect;
mod output;
mod reload;

use approval::Held;
pub use connect::nostrconnect_session;
use connect::{ConnectAttempt, DeferredConnect};
pub use output::{Dropped, Outgoing, Output};
pub use reload::Rollback;

/// What happens to a request no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlistedPolicy {
    /// Hold it for the user's decision.
    Ask,
    /// Refuse it at once with `unauthorized`.
    Deny,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The bunker's relays (answers to `get_relays` and `switch_relays`).
    pub relays: Vec<RelayUrl>,
    /// Requests created more than this long ago are dropped.
    pub past_window_secs: u64,
    /// Requests created more than this far ahead are dropped.
    pub future_window_secs: u64,
    /// Request ids remembered for replay protection (clients with a session).
    pub replay_capacity: usize,
    /// Request ids of clients without a session remembered, apart.
    pub stranger_replay_capacity: usize,
    /// Per-session rate limit.
    pub rate_limit: RateLimit,
    /// Requests no rule covers.
    pub unlisted: UnlistedPolicy,
    /// How long a request waits for the user before `unauthorized`.
    pub approval_timeout_secs: u64,
    /// When set, held requests are answered at once with an `auth_url`
    /// challenge pointing at `<base>/approve/<id>`; the real answer follows
    /// with the same request id.
    pub auth_url_base: Option<AuthUrlBase>,
    /// How often session use counters are written to the store.
    pub touch_interval_ms: u64,
    /// A `connect` whose secret matches no known token waits this long for a
    /// reload before it is refused: a token minted by the CLI a moment ago may
    /// not have reached the engine yet.
    pub unknown_secret_grace_ms: u64,
    /// `connect`s waiting for that reload, at most; more are refused at once.
    pub max_deferred_connects: usize,
    /// Requests of one session waiting for the user, at most; more are
    /// refused `rate_limited`.
    pub max_held_per_session: usize,
    /// Requests of all sessions waiting for the user, at most.
    pub max_held_total: usize,
    /// Bytes of requests waiting for the user, at most (requests may be up to
    /// `limits.max_message` each): more are refused `rate_limited`.
    pub max_held_bytes: usize,
    /// What clients without a session may cost (answers, audit rows, memory).
    pub strangers: StrangerLimits,
    /// How large a request may be (see [`nip46::limits`]).
    pub limits: Limits,
    /// The event kinds every key always asks the user to sign, whatever a
    /// session's grant, unless the key has its own list
    /// ([`DEFAULT_SENSITIVE_KINDS`] by default).
    pub sensitive_kinds: Vec<u16>,
}

/// Kinds that always ask by default, whatever an app was granted: each
/// rewrites who the user is or what they have said, at once and for every
/// client, and is easy to get signed by an app granted `sign_event`:
/// 0, the profile (name, picture, NIP-05: an impersonation in one event);
/// 3, the follow list (replaceable: an empty one wipes years of follows);
/// 5, deletion requests (the user's notes asked away); 10002, the relay
/// list (NIP-65: moved relays cut the user off from their mentions and
/// direct messages).
pub const DEFAULT_SENSITIVE_KINDS: [u16; 4] = [0, 3, 5, 10_002];

/// The largest content opened for a client without a session: a `connect`
/// with every field at its bound fits (`nip46`'s `MAX_CONNECT_*`).
pub const STRANGER_MAX_CONTENT: usize = 64 * 1024;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            relays: Vec::new(),
            past_window_secs: 600,
            future_window_secs: 300,
            replay_capacity: 1_000_000,
            stranger_replay_capacity: 100_000,
            rate_limit: RateLimit::default(),
            unlisted: UnlistedPolicy::Ask,
            approval_timeout_secs: 60,
            auth_url_base: None,
            touch_interval_ms: 1000,
            unknown_secret_grace_ms: 500,
            max_deferred_connects: 64,
            max_held_per_session: 16,
            max_held_total: 256,
            max_held_bytes: 64 * 1024 * 1024,
            strangers: StrangerLimits::default(),
            limits: Limits::default(),
            sensitive_kinds: DEFAULT_SENSITIVE_KINDS.to_vec(),
        }
    }
}

/// A signer (transport) key handed to the engine.
pub struct TransportKey {
    /// The user key it serves.
    pub key_id: KeyId,
    /// The signer key pair.
    pub signer: Keys,
}

/// Why a user decision could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No such request is waiting (decided already, expired, or from before a restart).
    #[error("no pending request with id {0}; it may have expired or been answered")]
    NotPending(String),
}

/// What a vote on a held request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteOutcome {
    /// The request was answered (allowed, or refused).
    Settled,
    /// It still waits: `allowed` distinct people allowed it, `needed` must.
    Waiting {
        /// Allows so far.
        allowed: u32,
        /// Allows it needs.
        needed: u32,
    },
}

/// Why a nostrconnect URI could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The key is not loaded.
    #[error("key {0} is not loaded")]
    UnknownKey(KeyId),
}

/// Stored state the engine mirrors (loaded at start and after outside edits).
#[derive(Clone)]
pub struct Snapshot {
    /// Every key still in the store: a loaded key that is not is unloaded.
    pub keys: Vec<KeyId>,
    /// The keys locked (`rampart lock`): refused whatever their sessions say.
    pub locked: Vec<KeyId>,
    /// Keys with their own sensitive kinds (the others use the default).
    pub sensitive: Vec<(KeyId, Vec<u16>)>,
    /// Keys whose sensitive kinds need more than one person's allow.
    pub quorums: Vec<(KeyId, u32)>,
    /// The operators: whose votes on held requests count, for which keys.
    pub operators: Vec<store::Operator>,
    /// Every token.
    pub tokens: Vec<ConnectionToken>,
    /// Every session.
    pub sessions: Vec<Session>,
    /// Every approval record.
    pub approvals: Vec<PendingApproval>,
}

struct Signer {
    key_id: KeyId,
    keys: Keys,
    user_pubkey: PublicKey,
}

struct LiveSession {
    session: Session,
    bucket: TokenBucket,
    unflushed: u64,
    /// Seen in the store (in a snapshot): once it is, a snapshot without it
    /// means it was deleted there. A session the engine just created is not
    /// yet, and is kept until its commit shows up.
    stored: bool,
}

/// Who is asking, through which key, in which scheme.
#[derive(Clone, Copy)]
struct Ctx {
    key_id: KeyId,
    signer: PublicKey,
    client: PublicKey,
    event_id: EventId,
    /// The request event's own `created_at` (audited, for replay protection).
    created_at: Timestamp,
    scheme: Scheme,
}

/// The call being answered, as its audit row and error answer name it.
#[derive(Clone, Copy)]
struct Call<'a> {
    /// The method as the client sent it (unknown ones too).
    method: &'a str,
    /// The kind, for `sign_event`.
    kind: Option<u16>,
    /// The request id the answer carries.
    id: &'a str,
}

impl<'a> Call<'a> {
    fn of(request: &'a Request) -> Self {
        Call {
            method: request.command.method_name(),
            kind: request.command.kind(),
            id: &request.id,
        }
    }
}

/// Why a call is refused: each maps to one error code, audit decision and reason.
enum Refusal {
    /// Not a NIP-46 method.
    UnknownMethod,
    /// Readable id and method, unusable parameters.
    InvalidParams(String),
    /// The client has no active session with this key.
    NoSession,
    /// The session's rate limit is exhausted.
    RateLimited,
    /// As many of the session's (or everyone's) requests wait for the user
    /// as may.
    TooManyWaiting,
    /// A rule, the user, the configuration or the session's state says no.
    Unauthorized(Cow<'static, str>),
}

impl Refusal {
    fn unauthorized(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal::Unauthorized(reason.into())
    }
}

/// An answer, and what its audit row records about the call.
struct Reply<'a> {
    method: &'a str,
    kind: Option<u16>,
    decision: AuditDecision,
    response: Response,
    signed_event_id: Option<EventId>,
}

impl<'a> Reply<'a> {
    /// A success or challenge answer that signed nothing.
    fn plain(call: Call<'a>, decision: AuditDecision, response: Response) -> Self {
        Reply {
            method: call.method,
            kind: call.kind,
            decision,
            response,
            signed_event_id: None,
        }
    }

    /// A refusal: an error response, no signature.
    fn refused(call: Call<'a>, refusal: Refusal) -> Self {
        let (decision, code, reason): (_, _, Cow<'_, str>) = match refusal {
            Refusal::UnknownMethod => (
                AuditDecision::Invalid,
                ErrorCode::MethodNotFound,
                format!("`{}` is not a NIP-46 method", call.method).into(),
            ),
            Refusal::InvalidParams(reason) => (
                AuditDecision::Invalid,
                ErrorCode::InvalidParams,
                reason.into(),
            ),
            Refusal::NoSession => (
                AuditDecision::Denied,
                ErrorCode::Unauthorized,
                "no active session: connect with a bunker:// secret first".into(),
            ),
            Refusal::RateLimited => (
                AuditDecision::RateLimited,
                ErrorCode::RateLimited,
                "too many requests; slow down".into(),
            ),
            Refusal::TooManyWaiting => (
                AuditDecision::RateLimited,
                ErrorCode::RateLimited,
                "too many requests waiting for approval".into(),
            ),
            Refusal::Unauthorized(reason) => {
                (AuditDecision::Denied, ErrorCode::Unauthorized, reason)
            }
        };
        Reply::plain(call, decision, Response::error(call.id, code, reason))
    }
}

/// What an allowed command produced: the `result` of its answer, and the
/// id of the event it signed, if it signed one (for the audit row).
struct Executed {
    result: String,
    signed_event_id: Option<EventId>,
}

/// Why an allowed command failed: the code and reason of its error answer.
struct Failed {
    code: ErrorCode,
    reason: String,
}

impl Failed {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Failed {
            code,
            reason: reason.into(),
        }
    }
}

/// Why an answer could not be sealed (logged; the request goes unanswered).
#[derive(Debug, thiserror::Error)]
enum SealError {
    /// The signer key was unloaded between the request and its answer.
    #[error("signer key is not loaded")]
    UnknownSigner,
    /// Encryption or signing failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// The request engine.
pub struct Engine {
    config: EngineConfig,
    backend: Arc<dyn KeyBackend>,
    // Maps the engine walks to produce output are ordered (BTreeMap), so the
    // same inputs give the same output byte for byte; the conversation cache
    // is only looked up.
    signers: BTreeMap<PublicKey, Signer>,
    conversations: HashMap<(PublicKey, PublicKey), Conversation>,
    sessions: BTreeMap<(KeyId, PublicKey), LiveSession>,
    tokens: Vec<ConnectionToken>,
    replay: ReplayGuard,
    stranger_replay: ReplayGuard,
    held: BTreeMap<ApprovalId, Held>,
    deferred: Vec<DeferredConnect>,
    /// Connects whose token use is not known committed yet, by token.
    consuming: BTreeMap<store::TokenId, Consuming>,
    strangers: Strangers,
    next_touch: Option<Millis>,
    /// Keys locked in the store, as last reloaded.
    locked: BTreeSet<KeyId>,
    /// Keys' own sensitive kinds, as last reloaded.
    sensitive: BTreeMap<KeyId, BTreeSet<u16>>,
    /// Keys' quorums above 1, as last reloaded.
    quorums: BTreeMap<KeyId, u32>,
    /// Operators by name, as last reloaded: a vote counts only from the
    /// owner or an operator who may answer for the request's key now.
    operators: BTreeMap<String, store::Operator>,
}

/// The reason every request for a locked key is refused with.
pub const KEY_LOCKED: &str = "key locked";

/// Conversation keys kept before the cache is cleared (bounded memory).
const CONVERSATION_CACHE: usize = 100_000;

impl Engine {
    /// An engine for these keys, with `backend` doing the user-key operations.
    pub fn new(
        config: EngineConfig,
        backend: Arc<dyn KeyBackend>,
        transport: Vec<TransportKey>,
    ) -> Self {
        let strangers = Strangers::new(config.strangers, Millis(0));
        let replay = ReplayGuard::new(
            config.past_window_secs,
            config.future_window_secs,
            config.replay_capacity,
        );
        let stranger_replay = ReplayGuard::new(
            config.past_window_secs,
            config.future_window_secs,
            config.stranger_replay_capacity,
        );
        let signers = transport
            .into_iter()
            .filter_map(|t| {
                let user_pubkey = backend.user_pubkey(t.key_id)?;
                let signer = Signer {
                    key_id: t.key_id,
                    user_pubkey,
                    keys: t.signer,
                };
                Some((signer.keys.public_key(), signer))
            })
            .collect();
        Engine {
            config,
            backend,
            signers,
            conversations: HashMap::new(),
            sessions: BTreeMap::new(),
            tokens: Vec::new(),
            replay,
            stranger_replay,
            held: BTreeMap::new(),
            deferred: Vec::new(),
            consuming: BTreeMap::new(),
            strangers,
            next_touch: None,
            locked: BTreeSet::new(),
            sensitive: BTreeMap::new(),
            quorums: BTreeMap::new(),
            operators: BTreeMap::new(),
        }
    }

    /// How long a request event stays acceptable after it is processed
    /// (dated up to the future window ahead, accepted until the past window
    /// behind), in seconds: the span of audit rows replay protection needs.
    pub fn replay_window_secs(&self) -> u64 {
        self.config
            .past_window_secs
            .saturating_add(self.config.future_window_secs)
    }

    /// The signer pubkeys to subscribe for (`#p` filter).
    pub fn signer_pubkeys(&self) -> Vec<PublicKey> {
        self.signers.keys().copied().collect()
    }

    /// The signer pubkey of a user key.
    pub fn signer_of(&self, key_id: KeyId) -> Option<PublicKey> {
        self.signers
            .values()
            .find(|s| s.key_id == key_id)
            .map(|s| s.keys.public_key())
    }

    /// Relays the driver should be connected to: the bunker's, plus those of
    /// nostrconnect clients that are still active.
    pub fn wanted_relays(&self, now: Millis) -> Vec<RelayUrl> {
        let mut relays = self.config.relays.clone();
        let now = now.timestamp();
        for live in self.sessions.values().filter(|l| l.session.is_active(now)) {
            for r in &live.session.relays {
                if !relays.contains(r) {
                    relays.push(r.clone());
                }
            }
        }
        relays
    }

    /// Remember request ids processed before a restart.
    pub fn seed_replay(&mut self, now: Millis, events: impl IntoIterator<Item = AuditedEvent>) {
        let t = now.timestamp();
        // Whether the sender had a session is not known here: both sets
        // remember it (a stranger's id set is bounded on its own).
        for e in events {
            self.replay
                .remember(t, &e.client, e.created_at, &e.event_id);
            self.stranger_replay
                .remember(t, &e.client, e.created_at, &e.event_id);
        }
    }

    /// Requests currently waiting for the user.
    pub fn pending(&self) -> Vec<&PendingApproval> {
        let mut v: Vec<&PendingApproval> = self.held.values().map(|h| &h.approval).collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    /// The active session of a client, if any.
    pub fn session(&self, key_id: KeyId, client: &PublicKey) -> Option<&Session> {
        self.sessions.get(&(key_id, *client)).map(|l| &l.session)
    }

    /// When [`Engine::handle_timeout`] should next run.
    pub fn next_timeout(&self) -> Option<Millis> {
        let approvals = self
            .held
            .values()
            .map(|h| Millis::from_timestamp(h.approval.expires_at));
        let deferred = self.deferred.iter().map(|d| d.deadline);
        approvals
            .chain(deferred)
            .chain(self.next_touch)
            .chain(self.strangers.next_due())
            .min()
    }

    /// Forget that these request events were seen: their answers could not
    /// be recorded (the store is down), and they will be handled again.
    pub fn forget_requests(&mut self, events: &[EventId]) {
        for id in events {
            self.replay.forget(id);
            self.stranger_replay.forget(id);
        }
    }

    /// Handle one kind-24133 event from a relay.
    pub fn handle_event(&mut self, now: Millis, event: &Event, rng: &mut dyn Randomness) -> Output {
        let Some(signer) = event
            .tags
            .public_keys()
            .find(|pk| self.signers.contains_key(pk))
        else {
            return Output::dropped(Dropped::NotForUs);
        };
        // Content up to twice the limit is opened for a client with a
        // session, so it learns the limit (`invalid_params`) instead of
        // hearing nothing; strangers get only the limit itself.
        let max_content = self.config.limits.max_request_content();
        let hard_limit = self.config.limits.hard_request_content();
        if let Err(e) = envelope::precheck_limited(event, &signer, hard_limit) {
            return Output::dropped(Dropped::Envelope(e));
        }
        let Some(key_id) = self.signers.get(&signer).map(|s| s.key_id) else {
            return Output::dropped(Dropped::NotForUs);
        };
        let stranger = !self.has_session(key_id, &event.pubkey, now);
        // A stranger can only `connect` (or be refused): a small bound keeps
        // what it costs to hash, verify and decrypt small too.
        let stranger_limit = STRANGER_MAX_CONTENT.min(max_content);
        if stranger && event.content.len() > stranger_limit {
            return Output::dropped(Dropped::Envelope(EnvelopeError::TooLarge {
                size: event.content.len(),
                limit: stranger_limit,
            }));
        }
        if stranger && self.strangers.silenced(&event.pubkey, now) {
            return Output::dropped(Dropped::Silenced);
        }
        let t = now.timestamp();
        // Strangers' ids are remembered apart: however many keys flood, they
        // can only crowd each other out, never raise a session's floor.
        let replay = if stranger {
            &mut self.stranger_replay
        } else {
            &mut self.replay
        };
        match replay.check(t, &event.pubkey, event.created_at, &event.id) {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Replayed => return Output::dropped(Dropped::Replayed),
            ReplayVerdict::Stale => return Output::dropped(Dropped::Stale),
            ReplayVerdict::Future => return Output::dropped(Dropped::Future),
        }
        // A known client's key is parsed once, in its cached conversation;
        // an unknown one's is checked from scratch, before anything is
        // derived or cached for it.
        let verified = match self.conversations.get(&(signer, event.pubkey)) {
            Some(conversation) => conversation.verify(event),
            None => envelope::verify(event),
        };
        if verified.is_err() {
            return Output::dropped(Dropped::BadSignature);
        }
        let replay = if stranger {
            &mut self.stranger_replay
        } else {
            &mut self.replay
        };
        if !replay.remember(t, &event.pubkey, event.created_at, &event.id) {
            return Output::dropped(Dropped::Replayed);
        }
        let (scheme, text) = match self.decrypt(&signer, event) {
            Ok(opened) => (opened.scheme, opened.body),
            Err(e) => return Output::dropped(Dropped::Undecryptable(e)),
        };
        let ctx = Ctx {
            key_id,
            signer,
            client: event.pubkey,
            event_id: event.id,
            created_at: event.created_at,
            scheme,
        };
        match Request::parse_limited(&text, &self.config.limits) {
            Ok(request) => self.dispatch(now, ctx, request, rng),
            Err(e @ RequestError::Malformed(_)) => Output::dropped(Dropped::Malformed(e)),
            Err(RequestError::InvalidParams { id, method, reason }) => {
                let call = Call {
                    method: &method,
                    kind: None,
                    id: &id,
                };
                let refusal = Refusal::InvalidParams(reason.0);
                if stranger && method != Method::Connect.as_str() {
                    return self.refuse_stranger(now, ctx, call, refusal, rng);
                }
                self.refuse(now, ctx, call, refusal, rng)
            }
        }
    }

    /// Open a request to one of our signers (the caller found it in `signers`).
    fn decrypt(
        &mut self,
        signer: &PublicKey,
        event: &Event,
    ) -> Result<Opened<String>, EnvelopeError> {
        let keys = &self
            .signers
            .get(signer)
            .ok_or(EnvelopeError::NotForUs)?
            .keys;
        let conversation = conversation(&mut self.conversations, keys, event.pubkey)?;
        let (scheme, body) = conversation.decrypt(keys, &event.content)?;
        Ok(Opened { scheme, body })
    }

    /// One request from a client: session and rate limit, then the rules,
    /// then the command (or the user, when no rule covers it).
    fn dispatch(
        &mut self,
        now: Millis,
        ctx: Ctx,
        request: Request,
        rng: &mut dyn Randomness,
    ) -> Output {
        let call = Call::of(&request);
        let is_connect = matches!(request.command, Command::Connect(_));
        let has_session = self.has_session(ctx.key_id, &ctx.client, now);
        if !is_connect && !has_session {
            return self.refuse_stranger(now, ctx, call, Refusal::NoSession, rng);
        }
        if self.locked.contains(&ctx.key_id) {
            return self.refuse_locked(now, ctx, call, has_session, rng);
        }
        let Some(method) = request.command.method() else {
            return self.refuse(now, ctx, call, Refusal::UnknownMethod, rng);
        };
        if let Command::Connect(params) = request.command {
            let id = request.id;
            return self.handle_connect(now, ctx, id, params, ConnectAttempt::First, rng);
        }
        let verdict = match self.admit(now, ctx, method, call.kind) {
            Ok(verdict) => verdict,
            Err(refusal) => return self.refuse(now, ctx, call, refusal, rng),
        };
        if method == Method::Logout {
            return self.handle_logout(now, ctx, &request.id, rng);
        }
        // A sensitive kind asks even under a grant; a deny rule still wins.
        let verdict = match verdict {
            Verdict::Allow if self.is_sensitive(ctx.key_id, method, call.kind) => Verdict::Ask,
            other => other,
        };
        match verdict {
            Verdict::Allow => {
                self.execute_and_answer(now, ctx, request, AuditDecision::Allowed, rng)
            }
            Verdict::Deny(reason) => {
                self.refuse(now, ctx, call, Refusal::unauthorized(reason), rng)
            }
            Verdict::Ask if self.config.unlisted == UnlistedPolicy::Deny => {
                let needed = policy::permission_for(method, call.kind);
                let reason = format!("{needed} is not granted to this app");
                self.refuse(now, ctx, call, Refusal::unauthorized(reason), rng)
            }
            Verdict::Ask => self.hold(now, ctx, request, rng),
        }
    }

    /// Count a request against its session and ask its rules: refused
    /// without an active session, or once the session's rate limit is spent.
    fn admit(
        &mut self,
        now: Millis,
        ctx: Ctx,
        method: Method,
        kind: Option<u16>,
    ) -> Result<Verdict, Refusal> {
        let t = now.timestamp();
        let limit = self.config.rate_limit;
        let live = self
            .sessions
            .get_mut(&(ctx.key_id, ctx.client))
            .filter(|live| live.session.is_active(t))
            .ok_or(Refusal::NoSession)?;
        live.session.last_used_at = Some(t);
        live.session.request_count += 1;
        live.unflushed += 1;
        let verdict = live
            .bucket
            .try_take(&limit, now)
            .then(|| policy::evaluate(&live.session, t, method, kind));
        self.schedule_touch(now);
        verdict.ok_or(Refusal::RateLimited)
    }

    /// Refuse a call: audit it and queue the error answer.
    fn refuse(
        &mut self,
        now: Millis,
        ctx: Ctx,
        call: Call<'_>,
        refusal: Refusal,
        rng: &mut dyn Randomness,
    ) -> Output {
        self.answer(now, ctx, Reply::refused(call, refusal), rng)
    }

    /// Refuse a request for a locked key: `unauthorized: key locked`; a
    /// stranger's (a connect) counts against the strangers' budget.
    fn refuse_locked(
        &mut self,
        now: Millis,
        ctx: Ctx,
        call: Call<'_>,
        has_session: bool,
        rng: &mut dyn Randomness,
    ) -> Output {
        let refusal = Refusal::unauthorized(KEY_LOCKED);
        if has_session {
            self.refuse(now, ctx, call, refusal, rng)
        } else {
            self.refuse_stranger(now, ctx, call, refusal, rng)
        }
    }

    /// Whether `sign_event` of `kind` for `key_id` always asks the user.
    pub(super) fn is_sensitive(&self, key_id: KeyId, method: Method, kind: Option<u16>) -> bool {
        let Some(kind) = kind.filter(|_| method == Method::SignEvent) else {
            return false;
        };
        match self.sensitive.get(&key_id) {
            Some(own) => own.contains(&kind),
            None => self.config.sensitive_kinds.contains(&kind),
        }
    }

    fn insert_session(&mut self, session: Session, now: Millis) {
        let key = (session.key_id, session.client);
        let bucket = TokenBucket::new(&self.config.rate_limit, now);
        self.sessions.insert(
            key,
            LiveSession {
                session,
                bucket,
                unflushed: 0,
                stored: false,
            },
        );
    }

    fn schedule_touch(&mut self, now: Millis) {
        if self.next_touch.is_none() {
            self.next_touch = Some(now.plus_ms(self.config.touch_interval_ms));
        }
    }

    fn execute_and_answer(
        &mut self,
        now: Millis,
        ctx: Ctx,
        request: Request,
        decision: AuditDecision,
        rng: &mut dyn Randomness,
    ) -> Output {
        let method = request.command.method_name().to_owned();
        let kind = request.command.kind();
        let result = self.execute(now, ctx, request.command, rng);
        let call = Call {
            method: &method,
            kind,
            id: &request.id,
        };
        self.executed_answer(now, ctx, call, result, decision, rng)
    }

    /// Answer a call with what running it gave.
    fn executed_answer(
        &mut self,
        now: Millis,
        ctx: Ctx,
        call: Call<'_>,
        result: Result<Executed, Failed>,
        decision: AuditDecision,
        rng: &mut dyn Randomness,
    ) -> Output {
        let (response, signed) = match result {
            Ok(done) => (Response::ok(call.id, done.result), done.signed_event_id),
            Err(failed) => (Response::error(call.id, failed.code, failed.reason), None),
        };
        let reply = Reply {
            signed_event_id: signed,
            ..Reply::plain(call, decision, response)
        };
        self.answer(now, ctx, reply, rng)
    }

    /// The event a `sign_event` template asks for, as the user's (`created_at`
    /// from the template, else `now`), its id computed.
    fn unsigned_event(
        &self,
        ctx: Ctx,
        template: EventTemplate,
        now: Timestamp,
    ) -> Result<UnsignedEvent, Refusal> {
        let user = self
            .signers
            .get(&ctx.signer)
            .map(|s| s.user_pubkey)
            .ok_or_else(|| Refusal::unauthorized("key not loaded"))?;
        let mut event = template
            .into_unsigned(user, now)
            .map_err(|e| Refusal::InvalidParams(e.0))?;
        event.ensure_id();
        Ok(event)
    }

    /// Sign `event` with the user's key.
    fn sign(
        &self,
        ctx: Ctx,
        event: UnsignedEvent,
        rng: &mut dyn Randomness,
    ) -> Result<Executed, Failed> {
        let event = self
            .backend
            .sign_event(ctx.key_id, event, &rng.bytes32())
            .map_err(|e| Failed::new(ErrorCode::InternalError, e.to_string()))?;
        Ok(Executed {
            result: event.as_json(),
            signed_event_id: Some(event.id),
        })
    }

    /// Run an allowed command with the user's key.
    fn execute(
        &mut self,
        now: Millis,
        ctx: Ctx,
        command: Command,
        rng: &mut dyn Randomness,
    ) -> Result<Executed, Failed> {
        let user = self
            .signers
            .get(&ctx.signer)
            .map(|s| s.user_pubkey)
            .ok_or_else(|| Failed::new(ErrorCode::InternalError, "key not loaded"))?;
        let backend = &self.backend;
        let crypto =
            |e: crate::keys::KeyError| Failed::new(ErrorCode::InvalidParams, e.to_string());
        let result = match command {
            Command::GetPublicKey => user.to_hex(),
            Command::Ping => "pong".to_owned(),
            Command::GetRelays => relay_map_json(&self.config.relays),
            Command::SwitchRelays => relay_list_json(&self.config.relays),
            Command::SignEvent(template) => {
                let unsigned = template
                    .into_unsigned(user, now.timestamp())
                    .map_err(|e| Failed::new(ErrorCode::InvalidParams, e.0))?;
                return self.sign(ctx, unsigned, rng);
            }
            Command::Nip04Encrypt { peer, plaintext } => backend
                .nip04_encrypt(ctx.key_id, &peer, &plaintext, &rng.bytes32())
                .map_err(crypto)?,
            Command::Nip04Decrypt { peer, ciphertext } => backend
                .nip04_decrypt(ctx.key_id, &peer, &ciphertext)
                .map_err(crypto)?,
            Command::Nip44Encrypt { peer, plaintext } => backend
                .nip44_encrypt(ctx.key_id, &peer, &plaintext, &rng.bytes32())
                .map_err(crypto)?,
            Command::Nip44Decrypt { peer, ciphertext } => backend
                .nip44_decrypt(ctx.key_id, &peer, &ciphertext)
                .map_err(crypto)?,
            // Handled before execution; kept total so a new method cannot slip through.
            Command::Connect(_) | Command::Logout | Command::Unknown { .. } => {
                return Err(Failed::new(ErrorCode::InternalError, "not executable"));
            }
        };
        Ok(Executed {
            result,
            signed_event_id: None,
        })
    }

    /// Expire held requests and flush session counters that are due.
    pub fn handle_timeout(&mut self, now: Millis, rng: &mut dyn Randomness) -> Output {
        let t = now.timestamp();
        let mut out = Output::default();
        let expired: Vec<ApprovalId> = self
            .held
            .iter()
            .filter(|(_, h)| h.approval.expires_at <= t)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(held) = self.held.remove(&id) {
                out.merge(self.refuse_held(
                    now,
                    id,
                    held,
                    "nobody approved the request in time",
                    rng,
                ));
            }
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.deadline <= now);
        self.deferred = waiting;
        for d in due {
            out.merge(self.handle_connect(
                now,
                d.ctx,
                d.id,
                d.params,
                ConnectAttempt::AfterReload,
                rng,
            ));
        }
        out.changes
            .extend(self.strangers.due(now).into_iter().map(Change::Audit));
        if self.next_touch.is_some_and(|due| due <= now) {
            self.next_touch = None;
            for live in self.sessions.values_mut().filter(|l| l.unflushed > 0) {
                out.changes.push(Change::TouchSession {
                    key_id: live.session.key_id,
                    client: live.session.client,
                    at: live.session.last_used_at.unwrap_or(t),
                    requests: live.unflushed,
                });
                live.unflushed = 0;
            }
        }
        out
    }

    /// Every session the engine knows, revoked ones included.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().map(|l| &l.session)
    }

    /// Seal an answer, audit it, and queue it for publishing.
    fn answer(
        &mut self,
        now: Millis,
        ctx: Ctx,
        reply: Reply<'_>,
        rng: &mut dyn Randomness,
    ) -> Output {
        let mut out = Output::default();
        out.changes
            .push(Change::Audit(audit_entry(now, ctx, &reply)));
        self.publish(now, ctx, &reply.response, rng, &mut out);
        out
    }

    /// Seal a response and queue it for publishing.
    fn publish(
        &mut self,
        now: Millis,
        ctx: Ctx,
        response: &Response,
        rng: &mut dyn Randomness,
        out: &mut Output,
    ) {
        let too_large = self.oversized_answer(response);
        let response = too_large.as_ref().unwrap_or(response);
        match self.seal(now, ctx.signer, ctx.client, ctx.scheme, response, rng) {
            Ok(event) => {
                let extra_relays = self
                    .sessions
                    .get(&(ctx.key_id, ctx.client))
                    .map(|l| l.session.relays.clone())
                    .unwrap_or_default();
                out.publish.push(Outgoing {
                    event,
                    extra_relays,
                    answers: Some(ctx.event_id),
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not seal a response"),
        }
    }

    /// An answer over the limit clients take ([`Limits::max_response`]) would
    /// be dropped by them unread: it is replaced by an error saying so. JSON
    /// escaping grows a result at most sixfold, so only results that could
    /// be over are serialized to be measured (never on the usual path).
    fn oversized_answer(&self, response: &Response) -> Option<Response> {
        let Outcome::Result(result) = &response.outcome else {
            return None;
        };
        let limit = self.config.limits.max_response();
        if result.len().saturating_mul(6).saturating_add(1024) <= limit {
            return None;
        }
        let size = response.to_json().len();
        (size > limit).then(|| {
            Response::error(
                response.id.clone(),
                ErrorCode::InvalidParams,
                format!("the answer of {size} bytes exceeds this signer's limit of {limit} bytes; ask for less"),
            )
        })
    }

    /// Refuse a stranger (no session on this key; or a `connect` whose
    /// secret is wrong, used or expired): answered and audited within the
    /// limits of [`Strangers`], silent and counted beyond them.
    fn refuse_stranger(
        &mut self,
        now: Millis,
        ctx: Ctx,
        call: Call<'_>,
        refusal: Refusal,
        rng: &mut dyn Randomness,
    ) -> Output {
        let reply = Reply::refused(call, refusal);
        let verdict = self.strangers.refuse(now, audit_entry(now, ctx, &reply));
        let mut out = Output::default();
        out.changes
            .extend(verdict.flushed.into_iter().map(Change::Audit));
        out.changes
            .extend(verdict.audit.into_iter().map(Change::Audit));
        if verdict.answer {
            self.publish(now, ctx, &reply.response, rng, &mut out);
        } else {
            out.dropped = Some(Dropped::Silenced);
        }
        out
    }

    /// Whether the client has an active session on the key.
    fn has_session(&self, key_id: KeyId, client: &PublicKey, now: Millis) -> bool {
        self.sessions
            .get(&(key_id, *client))
            .is_some_and(|l| l.session.is_active(now.timestamp()))
    }

    fn seal(
        &mut self,
        now: Millis,
        signer: PublicKey,
        client: PublicKey,
        scheme: Scheme,
        response: &Response,
        rng: &mut dyn Randomness,
    ) -> Result<Event, SealError> {
        let keys = &self
            .signers
            .get(&signer)
            .ok_or(SealError::UnknownSigner)?
            .keys;
        let conversation = conversation(&mut self.conversations, keys, client)?;
        let entropy = Entropy {
            nonce: rng.bytes32(),
            aux: rng.bytes32(),
        };
        Ok(envelope::seal(
            keys,
            conversation,
            scheme,
            &response.to_json(),
            now.timestamp(),
            &entropy,
        )?)
    }
}

/// The audit row of an answer to the request in `ctx`.
fn audit_entry(now: Millis, ctx: Ctx, reply: &Reply<'_>) -> AuditEntry {
    let outcome = match &reply.response.outcome {
        Outcome::Result(_) => "ok".to_owned(),
        Outcome::AuthUrl(_) => "auth_url".to_owned(),
        Outcome::Error(e) => e.code.map_or("error", |c| c.as_str()).to_owned(),
    };
    AuditEntry {
        seq: 0,
        at: now.timestamp(),
        key_id: ctx.key_id,
        client: Some(ctx.client),
        event_id: Some(ctx.event_id),
        event_created_at: ctx.created_at,
        events: 1,
        request_id: reply.response.id.clone(),
        method: reply.method.to_owned(),
        kind: reply.kind,
        decision: reply.decision,
        outcome,
        signed_event_id: reply.signed_event_id,
        operator: None,
    }
}

/// Connects remembered until their token use commits: at most this many,
/// for at most this long (a commit takes milliseconds).
const MAX_CONSUMING: usize = 1024;
const CONSUMING_MS: u64 = 30_000;

/// A connect that used a token, until its commit is known.
struct Consuming {
    ctx: Ctx,
    request_id: String,
    at: Millis,
}

/// The cached conversation between a signer key and a client, derived once.
fn conversation<'a>(
    cache: &'a mut HashMap<(PublicKey, PublicKey), Conversation>,
    keys: &Keys,
    peer: PublicKey,
) -> Result<&'a mut Conversation, EnvelopeError> {
    let key = (keys.public_key(), peer);
    if cache.len() >= CONVERSATION_CACHE && !cache.contains_key(&key) {
        cache.clear();
    }
    Ok(match cache.entry(key) {
        Entry::Occupied(cached) => cached.into_mut(),
        Entry::Vacant(slot) => slot.insert(Conversation::new(keys, peer)?),
    })
}
