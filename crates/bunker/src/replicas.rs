//! Which replica answers which request, when several `rampart run`
//! processes share one store (PostgreSQL) and serve the same keys on the
//! same relays. Sans-I/O like the engine: heartbeats, claims and time are
//! passed in; the service moves them to and from the store.
//!
//! Every replica receives every request event. In steady state each client
//! belongs to one live replica, chosen by rendezvous hashing over the
//! replicas whose heartbeat (stamped by the store's clock) is younger than
//! the lease: the owner does the cryptography; the others only hash the
//! author and keep the event aside ("deferred") for a while. No database
//! round trip is added per request: the owner's commit, which holds the
//! request's audit row, also claims the request event (a unique row with
//! the sealed answer), so even two replicas that both think they own a
//! client cannot both publish.
//!
//! When a replica's heartbeat grows older than the lease, its clients move
//! to the survivors (rendezvous: each to its next choice, spread evenly),
//! and each survivor claims, in one transaction, the deferred events it now
//! owns: an unclaimed one is handled as if it had just arrived; one the
//! dead replica had committed is republished from its sealed answer, never
//! signed again. A replica that cannot renew its heartbeat stops handling
//! requests before its lease runs out (it is "fenced") and keeps them
//! deferred; once its heartbeat is back it claims them like a survivor, so
//! what another replica took meanwhile is not answered twice.

use std::collections::{BTreeMap, HashMap, VecDeque};

use nip46::nostr::prelude::{Event, EventId, PublicKey};
use sha2::{Digest, Sha256};
use store::{Claim, ReplicaBeat, ReplicaId};

use crate::clock::Millis;

/// Timing and bounds of the replica protocol.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica's name (unique among those sharing the store).
    pub me: ReplicaId,
    /// A replica whose last heartbeat is older than this is dead; its
    /// clients (and the requests it had not answered) move to the others.
    pub lease_ms: u64,
    /// How often each replica renews its heartbeat.
    pub beat_ms: u64,
    /// Most events kept aside (the oldest go first).
    pub max_deferred: usize,
    /// Most bytes of content kept aside.
    pub max_deferred_bytes: usize,
}

impl ReplicaConfig {
    /// The defaults: a 5 s lease renewed every second.
    pub fn new(me: ReplicaId) -> Self {
        ReplicaConfig {
            me,
            lease_ms: 5_000,
            beat_ms: 1_000,
            max_deferred: 8_192,
            max_deferred_bytes: 64 << 20,
        }
    }

    /// How long a replica may go without a renewed heartbeat before it stops
    /// handling requests: a beat short of the lease, so it stops before the
    /// others take over (its last heartbeat was stamped after it was sent).
    pub fn fence_after_ms(&self) -> u64 {
        self.lease_ms.saturating_sub(self.beat_ms).max(self.beat_ms)
    }

    /// How long an event is kept aside: long enough for its owner's death to
    /// be noticed (a lease and a beat) and then some.
    pub fn keep_ms(&self) -> u64 {
        self.lease_ms
            .saturating_mul(2)
            .saturating_add(self.beat_ms.saturating_mul(2))
    }
}

/// What to do with an event from a relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// This replica owns its author: hand it to the engine now.
    Handle,
    /// Kept aside: another replica owns its author, or this one is fenced.
    Deferred,
}

/// What a heartbeat asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Beat {
    /// Deferred events this replica now owns, to claim (oldest first).
    pub claim: Vec<EventId>,
    /// Replicas whose held requests to adopt.
    pub adopt_from: Vec<ReplicaId>,
}

/// What a takeover's claims resolved to.
#[derive(Debug, Default)]
pub struct Takeover {
    /// Events now ours: hand them to the engine.
    pub handle: Vec<Event>,
    /// Sealed answers of dead replicas, to publish again (JSON events).
    pub republish: Vec<String>,
    /// Events another live replica holds (it answers them).
    pub left: usize,
}

struct Deferred {
    event: Event,
    arrived: Millis,
    /// Set while a claim for it is in flight.
    claiming: bool,
}

/// The replica protocol's state (see the module documentation).
pub struct Replicas {
    config: ReplicaConfig,
    /// Live replicas as of the last heartbeat, by name.
    live: Vec<ReplicaId>,
    /// When the last successful heartbeat was sent.
    last_beat: Option<Millis>,
    /// Until then this replica, just (re)joined, handles nothing directly:
    /// the others may not have seen it yet and still serve its clients.
    warming_until: Millis,
    order: VecDeque<EventId>,
    deferred: HashMap<EventId, Deferred>,
    deferred_bytes: usize,
    /// Takeovers so far (events claimed and handled here), for metrics.
    taken_over: u64,
    /// Whether a heartbeat ever succeeded.
    started: bool,
    /// Whether "name in use" was said already.
    name_in_use_said: bool,
    /// The run of each replica seen last (a new one means it restarted).
    incarnations: BTreeMap<ReplicaId, String>,
}

impl Replicas {
    /// A replica that has not beaten yet (it defers everything until then).
    pub fn new(config: ReplicaConfig) -> Self {
        Replicas {
            config,
            live: Vec::new(),
            last_beat: None,
            warming_until: Millis(0),
            order: VecDeque::new(),
            deferred: HashMap::new(),
            deferred_bytes: 0,
            taken_over: 0,
            started: false,
            name_in_use_said: false,
            incarnations: BTreeMap::new(),
        }
    }

    /// This replica's settings.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Live replicas as of the last heartbeat.
    pub fn live(&self) -> &[ReplicaId] {
        &self.live
    }

    /// Events handled here after being claimed at a takeover.
    pub fn taken_over(&self) -> u64 {
        self.taken_over
    }

    /// Events kept aside now.
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Whether this replica must not handle requests now: its heartbeat has
    /// not been renewed for [`ReplicaConfig::fence_after_ms`].
    pub fn fenced(&self, now: Millis) -> bool {
        match self.last_beat {
            Some(at) => now.0.saturating_sub(at.0) > self.config.fence_after_ms(),
            None => true,
        }
    }

    /// Whether this replica handles its clients' requests now: not fenced,
    /// and past its warm-up (one heartbeat period after it (re)joined, so
    /// every other replica has seen it: until then they serve its clients,
    /// and it only claims what they left after that).
    pub fn serving(&self, now: Millis) -> bool {
        !self.fenced(now) && now >= self.warming_until
    }

    /// The live replica that owns `client`, if any is live.
    pub fn owner(&self, client: &PublicKey) -> Option<&ReplicaId> {
        owner_among(&self.live, client)
    }

    /// How many of `clients` each live replica owns.
    pub fn owned<'a>(
        &self,
        clients: impl IntoIterator<Item = &'a PublicKey>,
    ) -> BTreeMap<ReplicaId, usize> {
        let mut counts: BTreeMap<ReplicaId, usize> =
            self.live.iter().map(|r| (r.clone(), 0)).collect();
        for client in clients {
            if let Some(owner) = self.owner(client)
                && let Some(n) = counts.get_mut(owner)
            {
                *n += 1;
            }
        }
        counts
    }

    /// Route an event from a relay: handle it here, or keep it aside.
    pub fn route(&mut self, now: Millis, event: &Event) -> Route {
        if self.serving(now) && self.owner(&event.pubkey) == Some(&self.config.me) {
            return Route::Handle;
        }
        self.defer(now, event);
        Route::Deferred
    }

    fn defer(&mut self, now: Millis, event: &Event) {
        if self.deferred.contains_key(&event.id) {
            return;
        }
        self.deferred_bytes += kept_size(event);
        self.order.push_back(event.id);
        self.deferred.insert(
            event.id,
            Deferred {
                event: event.clone(),
                arrived: now,
                claiming: false,
            },
        );
        while self.deferred.len() > self.config.max_deferred
            || self.deferred_bytes > self.config.max_deferred_bytes
        {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(id) = self.order.pop_front() else {
            return false;
        };
        self.forget(&id);
        true
    }

    fn forget(&mut self, id: &EventId) -> Option<Deferred> {
        let gone = self.deferred.remove(id)?;
        self.deferred_bytes = self.deferred_bytes.saturating_sub(kept_size(&gone.event));
        Some(gone)
    }

    /// A heartbeat sent at `sent` succeeded and listed `beats`: update the
    /// live set, drop what was kept too long, and return the deferred
    /// events this replica now owns, to claim (oldest first).
    pub fn on_beat(&mut self, sent: Millis, now: Millis, beats: &[ReplicaBeat]) -> Vec<EventId> {
        self.on_heartbeat(sent, now, beats).claim
    }

    /// [`Replicas::on_beat`], with the replicas whose held requests to adopt:
    /// those that were live and are not any more, and on the first heartbeat
    /// this replica's own previous run.
    pub fn on_heartbeat(&mut self, sent: Millis, now: Millis, beats: &[ReplicaBeat]) -> Beat {
        let first = self.last_beat.is_none() && !self.started;
        self.started = true;
        let before = self.live.clone();
        // A replica whose run changed restarted (within its lease, perhaps):
        // its previous run died, with what it held and kept.
        let restarted: Vec<ReplicaId> = beats
            .iter()
            .filter(|b| b.replica != self.config.me)
            .filter(|b| {
                self.incarnations
                    .get(&b.replica)
                    .is_some_and(|seen| *seen != b.incarnation)
            })
            .map(|b| b.replica.clone())
            .collect();
        for b in beats {
            self.incarnations
                .insert(b.replica.clone(), b.incarnation.clone());
        }
        let mut claim = self.beat_and_claims(sent, now, beats);
        if !restarted.is_empty() && self.serving(now) {
            claim.extend(self.claim_kept_for(&restarted));
        }
        let mut adopt_from: Vec<ReplicaId> = before
            .into_iter()
            .filter(|r| *r != self.config.me && !self.live.contains(r))
            .chain(restarted)
            .collect();
        if first {
            adopt_from.push(self.config.me.clone());
        }
        Beat { claim, adopt_from }
    }

    /// The events kept aside for `replicas` (whose runs died), to claim: the
    /// new run never received them. Of several survivors claiming one, one
    /// gets it.
    fn claim_kept_for(&mut self, replicas: &[ReplicaId]) -> Vec<EventId> {
        self.mark_claiming(|owner| owner.is_some_and(|o| replicas.contains(o)))
    }

    /// Mark for claiming (oldest first) the kept events not being claimed
    /// whose owner among the live replicas satisfies `wanted`.
    fn mark_claiming(&mut self, wanted: impl Fn(Option<&ReplicaId>) -> bool) -> Vec<EventId> {
        let mut claim = Vec::new();
        for id in &self.order {
            let Some(entry) = self.deferred.get_mut(id) else {
                continue;
            };
            if entry.claiming || !wanted(owner_among(&self.live, &entry.event.pubkey)) {
                continue;
            }
            entry.claiming = true;
            claim.push(*id);
        }
        claim
    }

    /// Forget an event kept aside (its request was adopted with its holder's
    /// held requests).
    pub fn forget_deferred(&mut self, id: &EventId) {
        if self.forget(id).is_some() {
            self.order.retain(|e| e != id);
        }
    }

    fn beat_and_claims(
        &mut self,
        sent: Millis,
        now: Millis,
        beats: &[ReplicaBeat],
    ) -> Vec<EventId> {
        if self.fenced(now) {
            // (Re)joining: the others see us at their next heartbeat.
            self.warming_until =
                now.plus_ms(self.config.beat_ms.saturating_add(self.config.beat_ms / 2));
        }
        self.last_beat = Some(self.last_beat.map_or(sent, |t| t.max(sent)));
        let mut live: Vec<ReplicaId> = beats
            .iter()
            .filter(|b| b.age_ms <= self.config.lease_ms)
            .map(|b| b.replica.clone())
            .collect();
        if !live.contains(&self.config.me) {
            // Our own beat just committed: we are live whatever it listed.
            live.push(self.config.me.clone());
        }
        live.sort();
        if live != self.live {
            tracing::info!(live = ?live.iter().map(ReplicaId::as_str).collect::<Vec<_>>(), "live replicas changed");
        }
        self.live = live;
        self.expire(now);
        if now < self.warming_until {
            return Vec::new();
        }
        let me = self.config.me.clone();
        self.mark_claiming(|owner| owner == Some(&me))
    }

    /// The heartbeat failed: this replica stops handling requests at once
    /// (what it cannot record it must not answer) until a heartbeat works.
    pub fn on_beat_failed(&mut self, now: Millis) {
        self.fence_now();
        self.expire(now);
    }

    /// Whether "another process has this name" was reported already (it
    /// is said once, not every heartbeat); marks it said.
    pub fn warned_name_in_use(&mut self) -> bool {
        std::mem::replace(&mut self.name_in_use_said, true)
    }

    /// Stop handling requests until the next successful heartbeat (the store
    /// failed a commit or a heartbeat).
    pub fn fence_now(&mut self) {
        self.last_beat = None;
    }

    /// Keep aside events whose answers could not be recorded: claimed (and
    /// answered, unless another replica did) once the store is back.
    pub fn defer_again(&mut self, now: Millis, events: &[Event]) {
        for event in events {
            self.defer(now, event);
        }
    }

    /// Drop events kept longer than [`ReplicaConfig::keep_ms`].
    fn expire(&mut self, now: Millis) {
        let keep = self.config.keep_ms();
        while let Some(id) = self.order.front().copied() {
            let old = match self.deferred.get(&id) {
                Some(entry) => now.0.saturating_sub(entry.arrived.0) > keep && !entry.claiming,
                None => true,
            };
            if !old {
                break;
            }
            self.order.pop_front();
            self.forget(&id);
        }
    }

    /// A claim's outcome, per event.
    pub fn on_claims(&mut self, claims: Vec<(EventId, Claim)>) -> Takeover {
        let mut takeover = Takeover::default();
        for (id, claim) in claims {
            let Some(entry) = self.forget(&id) else {
                continue;
            };
            match claim {
                Claim::Ours => {
                    self.taken_over += 1;
                    takeover.handle.push(entry.event);
                }
                Claim::AnsweredHere { answer } => takeover.republish.push(answer),
                Claim::Theirs { replica, answer } if !self.live.contains(&replica) => {
                    // Its holder died after committing: send what it sealed
                    // (it may not have), never a second signature. One that
                    // died between claiming and answering leaves it unanswered.
                    if let Some(answer) = answer {
                        takeover.republish.push(answer);
                    }
                }
                Claim::Theirs { .. } => takeover.left += 1,
            }
        }
        self.order.retain(|id| self.deferred.contains_key(id));
        takeover
    }

    /// A claim failed (the store is down): the events stay aside, to be
    /// claimed again after the next heartbeat.
    pub fn on_claim_failed(&mut self, events: &[EventId]) {
        for id in events {
            if let Some(entry) = self.deferred.get_mut(id) {
                entry.claiming = false;
            }
        }
    }
}

/// About what an event kept aside costs in memory: its content and tags,
/// and the fixed fields.
fn kept_size(event: &Event) -> usize {
    let tags: usize = event
        .tags
        .iter()
        .map(|tag| tag.as_slice().iter().map(|v| v.len() + 24).sum::<usize>())
        .sum();
    event.content.len() + tags + 256
}

/// Rendezvous hashing: the replica whose hash with the client is highest
/// (what every replica computes from the same live set).
pub fn owner_among<'a>(live: &'a [ReplicaId], client: &PublicKey) -> Option<&'a ReplicaId> {
    live.iter().max_by_key(|replica| score(replica, client))
}

fn score(replica: &ReplicaId, client: &PublicKey) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(replica.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(client.to_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use nip46::nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Kind, Timestamp};

    use super::*;

    fn id(name: &str) -> ReplicaId {
        ReplicaId::parse(name).expect("a valid name")
    }

    fn beat(name: &str, age_ms: u64) -> ReplicaBeat {
        run(name, age_ms, "1")
    }

    fn run(name: &str, age_ms: u64, incarnation: &str) -> ReplicaBeat {
        ReplicaBeat {
            replica: id(name),
            age_ms,
            started_at: Timestamp::from_secs(1),
            incarnation: incarnation.into(),
        }
    }

    static NEXT: AtomicU64 = AtomicU64::new(1_700_000_000);

    fn request(keys: &Keys) -> Event {
        // One byte of content, different each time (ids differ).
        let nonce = Keys::generate().public_key().to_bytes()[0] % 10;
        EventBuilder::new(Kind::NostrConnect, nonce.to_string())
            .custom_created_at(Timestamp::from_secs(NEXT.fetch_add(1, Ordering::Relaxed)))
            .finalize(keys)
            .expect("signed")
    }

    /// Clients whose owner among {a, b} is `owner`.
    fn clients_of(owner: &str, n: usize) -> Vec<Keys> {
        let live = [id("a"), id("b")];
        std::iter::repeat_with(Keys::generate)
            .filter(|k| owner_among(&live, &k.public_key()).map(ReplicaId::as_str) == Some(owner))
            .take(n)
            .collect()
    }

    fn replica(name: &str) -> Replicas {
        Replicas::new(ReplicaConfig::new(id(name)))
    }

    /// After its warm-up: joined at 0 with `live`, serving from 2 s on.
    fn joined(name: &str, live: &[&str]) -> Replicas {
        let mut r = replica(name);
        let beats: Vec<ReplicaBeat> = live.iter().map(|n| beat(n, 0)).collect();
        r.on_beat(Millis(0), Millis(0), &beats);
        assert!(!r.serving(Millis(1_000)), "warming up");
        r.on_beat(Millis(2_000), Millis(2_000), &beats);
        assert!(r.serving(Millis(2_000)));
        r
    }

    #[test]
    fn clients_spread_over_live_replicas_and_move_only_when_theirs_dies() {
        let live = vec![id("a"), id("b"), id("c")];
        let clients: Vec<PublicKey> = (0..600).map(|_| Keys::generate().public_key()).collect();
        let mut counts = BTreeMap::new();
        for c in &clients {
            *counts.entry(owner_among(&live, c).cloned()).or_insert(0) += 1;
        }
        for n in counts.values() {
            assert!((120..=280).contains(n), "uneven spread: {counts:?}");
        }
        let without_b = vec![id("a"), id("c")];
        for c in &clients {
            let before = owner_among(&live, c).cloned();
            let after = owner_among(&without_b, c).cloned();
            if before != Some(id("b")) {
                assert_eq!(before, after, "a client of a live replica moved");
            }
        }
    }

    #[test]
    fn until_a_heartbeat_after_it_joined_a_replica_defers_everything() {
        let mut a = replica("a");
        let keys = Keys::generate();
        assert_eq!(a.route(Millis(1_000), &request(&keys)), Route::Deferred);
        let claim = a.on_beat(Millis(1_100), Millis(1_200), &[beat("a", 0)]);
        assert!(claim.is_empty(), "warming up: the others may still serve");
        assert_eq!(a.route(Millis(1_300), &request(&keys)), Route::Deferred);
        let claim = a.on_beat(Millis(2_800), Millis(2_800), &[beat("a", 0)]);
        assert_eq!(claim.len(), 2, "alone, it owns every client");
        let out = a.on_claims(claim.into_iter().map(|id| (id, Claim::Ours)).collect());
        assert_eq!(out.handle.len(), 2);
        assert_eq!(a.route(Millis(2_900), &request(&keys)), Route::Handle);
    }

    #[test]
    fn the_owner_handles_the_other_defers_then_takes_over_after_the_lease() {
        let mine = &clients_of("a", 1)[0];
        let theirs = &clients_of("b", 1)[0];
        let mut a = joined("a", &["a", "b"]);
        assert_eq!(a.route(Millis(2_010), &request(mine)), Route::Handle);
        let kept = request(theirs);
        assert_eq!(a.route(Millis(2_010), &kept), Route::Deferred);
        // b still beats: nothing to claim.
        assert!(
            a.on_beat(
                Millis(3_000),
                Millis(3_000),
                &[beat("a", 0), beat("b", 900)]
            )
            .is_empty()
        );
        // b's heartbeat is past the lease: its deferred request is ours to claim.
        let claim = a.on_beat(
            Millis(6_000),
            Millis(6_000),
            &[beat("a", 0), beat("b", 5_001)],
        );
        assert_eq!(claim, vec![kept.id]);
        assert!(
            a.on_beat(Millis(6_500), Millis(6_500), &[beat("a", 0)])
                .is_empty(),
            "a claim in flight is not asked twice"
        );
        let out = a.on_claims(vec![(kept.id, Claim::Ours)]);
        assert_eq!(out.handle, vec![kept]);
        assert_eq!(a.taken_over(), 1);
        assert_eq!(a.route(Millis(6_600), &request(theirs)), Route::Handle);
    }

    #[test]
    fn a_dead_replicas_sealed_answer_is_republished_a_live_ones_is_left() {
        let theirs = clients_of("b", 2);
        let mut a = joined("a", &["a", "b"]);
        let (one, two) = (request(&theirs[0]), request(&theirs[1]));
        a.route(Millis(2_010), &one);
        a.route(Millis(2_010), &two);
        let claim = a.on_beat(Millis(5_000), Millis(5_000), &[beat("a", 0)]);
        assert_eq!(claim.len(), 2);
        // A replica a2 joins meanwhile (it is live, so what it holds is its).
        a.on_beat(Millis(5_100), Millis(5_100), &[beat("a", 0), beat("a2", 0)]);
        let out = a.on_claims(vec![
            (
                one.id,
                Claim::Theirs {
                    replica: id("b"),
                    answer: Some("sealed".into()),
                },
            ),
            (
                two.id,
                Claim::Theirs {
                    replica: id("a2"),
                    answer: Some("x".into()),
                },
            ),
        ]);
        assert!(out.handle.is_empty());
        assert_eq!(out.republish, vec!["sealed".to_owned()]);
        assert_eq!(out.left, 1, "a2 is not known dead: it answers");
        assert_eq!(a.deferred(), 0);
    }

    #[test]
    fn without_a_renewed_heartbeat_a_replica_fences_itself_before_the_lease() {
        let mine = &clients_of("a", 1)[0];
        let mut a = joined("a", &["a", "b"]);
        assert_eq!(a.route(Millis(5_900), &request(mine)), Route::Handle);
        let late = request(mine);
        assert_eq!(a.route(Millis(6_100), &late), Route::Deferred);
        assert!(a.fenced(Millis(6_100)));
        // Back: what it kept aside is claimed first (b may have taken it).
        let back = [beat("a", 0), beat("b", 0)];
        assert!(
            a.on_beat(Millis(9_000), Millis(9_000), &back).is_empty(),
            "warming up again after the fence"
        );
        let claim = a.on_beat(Millis(10_600), Millis(10_600), &back);
        assert_eq!(claim, vec![late.id]);
        let out = a.on_claims(vec![(
            late.id,
            Claim::Theirs {
                replica: id("b"),
                answer: Some("b answered".into()),
            },
        )]);
        assert!(out.handle.is_empty() && out.republish.is_empty());
    }

    #[test]
    fn a_failed_heartbeat_fences_at_once_and_failed_requests_wait_for_the_store() {
        let mine = &clients_of("a", 1)[0];
        let mut a = joined("a", &["a", "b"]);
        a.on_beat_failed(Millis(2_100));
        let during = request(mine);
        assert_eq!(a.route(Millis(2_200), &during), Route::Deferred);
        let failed = request(mine);
        a.defer_again(Millis(2_300), std::slice::from_ref(&failed));
        let back = [beat("a", 0), beat("b", 0)];
        assert!(a.on_beat(Millis(3_000), Millis(3_000), &back).is_empty());
        let claim = a.on_beat(Millis(4_600), Millis(4_600), &back);
        assert_eq!(claim, vec![during.id, failed.id]);
    }

    #[test]
    fn held_requests_are_adopted_from_replicas_that_died_and_from_our_last_run() {
        let mut a = replica("a");
        let first = a.on_heartbeat(Millis(0), Millis(0), &[beat("a", 0), beat("b", 0)]);
        assert_eq!(
            first.adopt_from,
            vec![id("a")],
            "this replica's previous run"
        );
        let steady = a.on_heartbeat(Millis(1_000), Millis(1_000), &[beat("a", 0), beat("b", 0)]);
        assert!(steady.adopt_from.is_empty());
        let b_died = a.on_heartbeat(
            Millis(2_000),
            Millis(2_000),
            &[beat("a", 0), beat("b", 6_000)],
        );
        assert_eq!(b_died.adopt_from, vec![id("b")]);
        let later = a.on_heartbeat(Millis(3_000), Millis(3_000), &[beat("a", 0)]);
        assert!(later.adopt_from.is_empty(), "adopted once");
    }

    #[test]
    fn a_replica_restarted_within_its_lease_is_taken_over_from_its_previous_run() {
        let theirs = &clients_of("b", 1)[0];
        let mut a = joined("a", &["a", "b"]);
        let kept = request(theirs);
        a.route(Millis(2_010), &kept);
        // b's next heartbeat is another run: the old one died, unseen.
        let seen = a.on_heartbeat(
            Millis(3_000),
            Millis(3_000),
            &[beat("a", 0), run("b", 0, "2")],
        );
        assert_eq!(seen.adopt_from, vec![id("b")]);
        assert_eq!(seen.claim, vec![kept.id], "the new run never received it");
        let again = a.on_heartbeat(
            Millis(4_000),
            Millis(4_000),
            &[beat("a", 0), run("b", 0, "2")],
        );
        assert!(again.adopt_from.is_empty() && again.claim.is_empty());
    }

    #[test]
    fn kept_events_are_bounded_in_time_count_and_bytes() {
        let theirs = clients_of("b", 1);
        let mut config = ReplicaConfig::new(id("a"));
        config.max_deferred = 3;
        let mut a = Replicas::new(config);
        a.on_beat(Millis(0), Millis(0), &[beat("a", 0), beat("b", 0)]);
        for _ in 0..10 {
            a.route(Millis(10), &request(&theirs[0]));
        }
        assert_eq!(a.deferred(), 3);
        let keep = a.config().keep_ms();
        a.on_beat(
            Millis(keep + 20),
            Millis(keep + 20),
            &[beat("a", 0), beat("b", 0)],
        );
        assert_eq!(a.deferred(), 0, "kept past keep_ms");
        let mut config = ReplicaConfig::new(id("a"));
        config.max_deferred_bytes = 600;
        let mut a = Replicas::new(config);
        a.on_beat(Millis(0), Millis(0), &[beat("a", 0), beat("b", 0)]);
        for _ in 0..5 {
            a.route(Millis(10), &request(&theirs[0]));
        }
        assert_eq!(a.deferred(), 2, "a few hundred bytes each");
    }

    #[test]
    fn a_failed_claim_is_asked_again_after_the_next_heartbeat() {
        let theirs = &clients_of("b", 1)[0];
        let mut a = joined("a", &["a", "b"]);
        let kept = request(theirs);
        a.route(Millis(2_010), &kept);
        let claim = a.on_beat(Millis(5_000), Millis(5_000), &[beat("a", 0)]);
        a.on_claim_failed(&claim);
        let again = a.on_beat(Millis(6_000), Millis(6_000), &[beat("a", 0)]);
        assert_eq!(again, vec![kept.id]);
    }
}
