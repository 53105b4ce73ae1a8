//! NIP-42 on the relay side: challenges and the check of `AUTH` events.
//!
//! Kept apart from the connection loop so the rules (kind, signature,
//! challenge, relay, freshness) can be read and tested in one place.

use nostr::prelude::{Event, Kind, SubscriptionId, Timestamp};

/// How far `created_at` of an `AUTH` event may be from now (NIP-42 suggests
/// about ten minutes).
const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// A fresh, unpredictable challenge (32 hex characters from the OS RNG).
pub(crate) fn new_challenge() -> String {
    SubscriptionId::generate().as_str().to_owned()
}

/// Checks an `AUTH` event against the connection's challenge. The error is
/// the `OK false` reason, machine-readable prefix included.
pub(crate) fn check(
    event: &Event,
    challenge: &str,
    relay_url: Option<&str>,
    now: Timestamp,
) -> Result<(), &'static str> {
    if event.kind != Kind::Authentication {
        return Err("invalid: AUTH event must be kind 22242");
    }
    if event.created_at.as_secs().abs_diff(now.as_secs()) > MAX_CLOCK_SKEW_SECS {
        return Err("invalid: AUTH event created_at is too far from now");
    }
    let tag = |name: &str| {
        event
            .tags
            .iter()
            .find(|tag| tag.kind() == name)
            .and_then(|tag| tag.content())
    };
    // The cheap checks first: a signature is only verified for an event
    // that answers this connection's challenge.
    if tag("challenge") != Some(challenge) {
        return Err("invalid: AUTH challenge does not match");
    }
    if event.verify().is_err() {
        return Err("invalid: bad AUTH event id or signature");
    }
    let Some(relay) = tag("relay") else {
        return Err("invalid: AUTH event has no relay tag");
    };
    if let Some(ours) = relay_url
        && !same_relay(relay, ours)
    {
        return Err("invalid: AUTH relay tag names another relay");
    }
    Ok(())
}

/// Loose comparison: same host and port, whatever the path, case or
/// trailing slash.
fn same_relay(theirs: &str, ours: &str) -> bool {
    match (url::Url::parse(theirs), url::Url::parse(ours)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => theirs
            .trim_end_matches('/')
            .eq_ignore_ascii_case(ours.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{ClientAuthentication, EventBuilder, FinalizeEvent, Keys, RelayUrl};

    fn auth_event(keys: &Keys, challenge: &str, relay: &str) -> Event {
        ClientAuthentication::new(challenge, RelayUrl::parse(relay).unwrap())
            .finalize(keys)
            .unwrap()
    }

    #[test]
    fn accepts_a_good_answer_and_refuses_bad_ones() {
        let keys = Keys::generate();
        let now = Timestamp::now();
        let relay = Some("ws://127.0.0.1:7000");
        let good = auth_event(&keys, "abc", "ws://127.0.0.1:7000/");
        assert_eq!(check(&good, "abc", relay, now), Ok(()));
        assert_eq!(check(&good, "abc", None, now), Ok(()));
        assert!(check(&good, "other", relay, now).is_err());
        let elsewhere = auth_event(&keys, "abc", "ws://127.0.0.1:7001");
        assert!(check(&elsewhere, "abc", relay, now).is_err());
        let later = Timestamp::from_secs(now.as_secs() + 3600);
        assert!(check(&good, "abc", relay, later).is_err());
        let note = EventBuilder::new(Kind::TextNote, "hi")
            .finalize(&keys)
            .unwrap();
        assert!(check(&note, "abc", relay, now).is_err());
    }
}
