//! Which events the embedded relay takes.
//!
//! By default it is a relay for NIP-46 and nothing else: kind 24133
//! requests and answers (forwarded, never stored), NIP-42 `AUTH`, and the
//! remote-signer announcements of NIP-46's appendix (kind 31990 with a
//! `k` tag of 24133, stored one per author and `d` tag). Anything else is
//! refused with `OK false` and a reason, so a stranger cannot use a local
//! bunker's relay as free storage. A general relay (every kind) is one
//! setting away, for tests and for people who want one.

use nostr::prelude::{Event, Kind};

/// The NIP-46 kind.
const NOSTR_CONNECT: u16 = 24133;
/// NIP-89 handler information, used to announce remote signers.
const HANDLER_INFORMATION: u16 = 31990;

/// What the relay accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindPolicy {
    /// NIP-46 traffic and remote-signer announcements only.
    #[default]
    Nip46,
    /// Every kind (a general NIP-01 relay).
    Any,
}

impl KindPolicy {
    /// Why `event` is refused (the `OK false` message), if it is.
    pub fn refusal(self, event: &Event) -> Option<&'static str> {
        if self == KindPolicy::Any {
            return None;
        }
        let kind = event.kind.as_u16();
        if kind == NOSTR_CONNECT {
            return None;
        }
        if event.kind == Kind::from(HANDLER_INFORMATION) {
            let announces_a_signer = event
                .tags
                .iter()
                .any(|tag| tag.kind() == "k" && tag.content() == Some("24133"));
            return (!announces_a_signer)
                .then_some("blocked: only kind 31990 announcements of NIP-46 signers (k = 24133) are kept here");
        }
        Some("blocked: this relay serves NIP-46 only (kinds 24133 and 31990 with k = 24133)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Tag};

    fn event(kind: u16, tags: Vec<Tag>) -> Event {
        EventBuilder::new(Kind::from(kind), "")
            .tags(tags)
            .finalize(&Keys::generate())
            .unwrap()
    }

    #[test]
    fn nip46_only_by_default() {
        let policy = KindPolicy::default();
        assert_eq!(policy.refusal(&event(24133, vec![])), None);
        let k = |v: &str| Tag::parse(["k", v]).unwrap();
        assert_eq!(policy.refusal(&event(31990, vec![k("24133")])), None);
        assert!(policy.refusal(&event(31990, vec![k("1")])).is_some());
        assert!(
            policy
                .refusal(&event(1, vec![]))
                .unwrap()
                .starts_with("blocked: ")
        );
        assert!(policy.refusal(&event(0, vec![])).is_some());
        assert_eq!(KindPolicy::Any.refusal(&event(1, vec![])), None);
    }
}
