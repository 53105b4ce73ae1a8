//! What a session's rules mean: the permission decision for one call (allow,
//! deny, or ask the user), and which permissions are in force.
//!
//! The one place rule semantics live: a rule applies while unexpired and
//! when its permission covers the call; deny rules win over allow rules, so
//! "always deny kind 0" holds even under a blanket `sign_event` grant. Pure:
//! a session, a time and a call in; a verdict out.

use nip46::nostr::prelude::Timestamp;
use nip46::{Method, Permission, PermissionSet};
use store::{Rule, RuleEffect, Session};

/// What the rules say about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An allow rule covers it and no deny rule does.
    Allow,
    /// A deny rule covers it.
    Deny(String),
    /// No rule covers it: the user decides (or the configuration denies).
    Ask,
}

/// The permission a call needs, in its narrowest form: `sign_event:<kind>`
/// for signing, the method otherwise. "Always allow" rules are made from it.
pub fn permission_for(method: Method, kind: Option<u16>) -> Permission {
    match (method, kind) {
        (Method::SignEvent, Some(kind)) => Permission::SignEventKind(kind),
        (method, _) => Permission::Method(method),
    }
}

/// Decide a call against a session's rules. Deny rules win; `connect` and
/// `logout` are always allowed because a client must be able to manage its
/// own session.
pub fn evaluate(session: &Session, now: Timestamp, method: Method, kind: Option<u16>) -> Verdict {
    if method.is_session_control() {
        return Verdict::Allow;
    }
    let mut allowed = false;
    for rule in session
        .rules
        .iter()
        .filter(|r| in_force(r, now) && r.permission.allows(method, kind))
    {
        match rule.effect {
            RuleEffect::Deny => {
                return Verdict::Deny(format!("{} is denied for this app", rule.permission));
            }
            RuleEffect::Allow => allowed = true,
        }
    }
    if allowed {
        Verdict::Allow
    } else {
        Verdict::Ask
    }
}

/// Whether a rule is still in force at `now` (rules with an end stop at it).
pub fn in_force(rule: &Rule, now: Timestamp) -> bool {
    rule.expires_at.is_none_or(|t| now < t)
}

/// The permissions a session's allow rules grant at `now`, for display (deny
/// rules are listed separately, as rules).
pub fn allowed(session: &Session, now: Timestamp) -> PermissionSet {
    session
        .rules
        .iter()
        .filter(|r| r.effect == RuleEffect::Allow && in_force(r, now))
        .map(|r| r.permission.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::prelude::Keys;
    use nip46::{PermissionSet, Preset};
    use store::{KeyId, SessionOrigin};

    fn session(grant: &PermissionSet) -> Session {
        Session::new(
            KeyId(1),
            Keys::generate().public_key(),
            grant,
            SessionOrigin::Bunker,
            Timestamp::from_secs(0),
        )
    }

    #[test]
    fn grant_allows_and_the_rest_asks() {
        let s = session(&"sign_event:1,nip44_encrypt".parse().unwrap());
        let now = Timestamp::from_secs(10);
        assert_eq!(
            evaluate(&s, now, Method::SignEvent, Some(1)),
            Verdict::Allow
        );
        assert_eq!(evaluate(&s, now, Method::SignEvent, Some(0)), Verdict::Ask);
        assert_eq!(
            evaluate(&s, now, Method::Nip44Encrypt, None),
            Verdict::Allow
        );
        assert_eq!(evaluate(&s, now, Method::Nip44Decrypt, None), Verdict::Ask);
        assert_eq!(evaluate(&s, now, Method::Logout, None), Verdict::Allow);
    }

    #[test]
    fn always_allow_kind_one_allows_kind_one_only() {
        let mut s = session(&Preset::Read.permissions());
        let now = Timestamp::from_secs(10);
        assert_eq!(evaluate(&s, now, Method::SignEvent, Some(1)), Verdict::Ask);
        s.set_rule(Rule::permanent(
            permission_for(Method::SignEvent, Some(1)),
            RuleEffect::Allow,
        ));
        assert_eq!(
            evaluate(&s, now, Method::SignEvent, Some(1)),
            Verdict::Allow
        );
        assert_eq!(evaluate(&s, now, Method::SignEvent, Some(0)), Verdict::Ask);
    }

    #[test]
    fn deny_wins_and_rules_expire() {
        let mut s = session(&Preset::Write.permissions());
        s.set_rule(Rule {
            permission: permission_for(Method::SignEvent, Some(0)),
            effect: RuleEffect::Deny,
            expires_at: Some(Timestamp::from_secs(100)),
        });
        assert!(matches!(
            evaluate(&s, Timestamp::from_secs(50), Method::SignEvent, Some(0)),
            Verdict::Deny(_)
        ));
        assert_eq!(
            evaluate(&s, Timestamp::from_secs(50), Method::SignEvent, Some(1)),
            Verdict::Allow
        );
        // After the deny rule expires, the blanket grant applies again.
        assert_eq!(
            evaluate(&s, Timestamp::from_secs(100), Method::SignEvent, Some(0)),
            Verdict::Allow
        );
    }

    #[test]
    fn timed_allow_expires_into_ask() {
        let mut s = session(&PermissionSet::empty());
        s.set_rule(Rule {
            permission: permission_for(Method::Nip44Decrypt, None),
            effect: RuleEffect::Allow,
            expires_at: Some(Timestamp::from_secs(100)),
        });
        assert_eq!(
            evaluate(&s, Timestamp::from_secs(99), Method::Nip44Decrypt, None),
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&s, Timestamp::from_secs(100), Method::Nip44Decrypt, None),
            Verdict::Ask
        );
    }

    #[test]
    fn allowed_lists_unexpired_allow_rules_only() {
        let mut s = session(&"nip44_encrypt".parse().unwrap());
        s.set_rule(Rule::permanent(
            permission_for(Method::SignEvent, Some(0)),
            RuleEffect::Deny,
        ));
        s.set_rule(Rule {
            permission: permission_for(Method::SignEvent, Some(1)),
            effect: RuleEffect::Allow,
            expires_at: Some(Timestamp::from_secs(100)),
        });
        assert_eq!(
            allowed(&s, Timestamp::from_secs(99)).to_string(),
            "nip44_encrypt,sign_event:1"
        );
        assert_eq!(
            allowed(&s, Timestamp::from_secs(100)).to_string(),
            "nip44_encrypt"
        );
    }
}
