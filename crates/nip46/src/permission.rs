//! The NIP-46 permission grammar: `method[:param]`, comma-separated.
//!
//! Clients request permissions in `connect` and in `nostrconnect://` URIs;
//! the bunker grants them to sessions. Both ends read and write the same
//! text, so the grammar lives here as a typed [`PermissionSet`].

use core::fmt;
use core::str::FromStr;
use std::collections::BTreeSet;

use crate::method::{Method, truncate_for_display};

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Every call of a method, whatever its parameters (`sign_event`, `nip44_encrypt`).
    Method(Method),
    /// `sign_event` for a single event kind (`sign_event:1`).
    SignEventKind(u16),
    /// A method with a parameter NIP-46 has not defined yet (`nip44_encrypt:x`).
    ///
    /// Kept so the text round-trips and can be shown to the user, but it
    /// grants nothing: a restriction we do not understand must not become a
    /// blanket allowance.
    Scoped {
        /// The method the parameter belongs to.
        method: Method,
        /// The uninterpreted parameter.
        param: String,
    },
}

impl Permission {
    /// Whether this permission allows calling `method` (with `kind` for `sign_event`).
    pub fn allows(&self, method: Method, kind: Option<u16>) -> bool {
        match self {
            Permission::Method(m) => *m == method,
            Permission::SignEventKind(k) => method == Method::SignEvent && kind == Some(*k),
            Permission::Scoped { .. } => false,
        }
    }

    /// The method this permission is about.
    pub fn method(&self) -> Method {
        match self {
            Permission::Method(m) | Permission::Scoped { method: m, .. } => *m,
            Permission::SignEventKind(_) => Method::SignEvent,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Method(m) => write!(f, "{m}"),
            Permission::SignEventKind(k) => write!(f, "sign_event:{k}"),
            Permission::Scoped { method, param } => write!(f, "{method}:{param}"),
        }
    }
}

/// Why a permission string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// The method name is not a NIP-46 method.
    #[error(
        "unknown method `{0}` in permission list; expected one of the NIP-46 method names or a preset (read, write, encrypt, full)"
    )]
    UnknownMethod(String),
    /// `sign_event:` must be followed by an event kind from 0 to 65535.
    #[error("`sign_event:{0}` is not a valid event kind; use a number from 0 to 65535")]
    InvalidKind(String),
    /// A parameter may not be empty and may not contain `,` or `:`.
    #[error("permission `{0}` has an empty or malformed parameter")]
    MalformedParam(String),
}

impl FromStr for Permission {
    type Err = PermissionError;

    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let (name, param) = match item.split_once(':') {
            Some((name, param)) => (name, Some(param)),
            None => (item, None),
        };
        let method = Method::from_str(name)
            .map_err(|_| PermissionError::UnknownMethod(truncate_for_display(name)))?;
        let Some(param) = param else {
            return Ok(Permission::Method(method));
        };
        if param.is_empty() || param.contains([':', ',']) {
            return Err(PermissionError::MalformedParam(truncate_for_display(item)));
        }
        if method == Method::SignEvent {
            return param
                .parse::<u16>()
                .map(Permission::SignEventKind)
                .map_err(|_| PermissionError::InvalidKind(truncate_for_display(param)));
        }
        Ok(Permission::Scoped {
            method,
            param: param.to_owned(),
        })
    }
}

/// A named bundle of permissions offered when minting a connection token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// `get_public_key`, `get_relays`, `ping`, `switch_relays`.
    Read,
    /// `read` plus `sign_event` of any kind.
    Write,
    /// `read` plus NIP-04 and NIP-44 encryption and decryption.
    Encrypt,
    /// Every method.
    Full,
}

impl Preset {
    /// All presets.
    pub const ALL: [Preset; 4] = [Preset::Read, Preset::Write, Preset::Encrypt, Preset::Full];

    const READ: [Method; 4] = [
        Method::GetPublicKey,
        Method::GetRelays,
        Method::Ping,
        Method::SwitchRelays,
    ];

    /// The preset's name as written in grants and permission lists.
    pub const fn as_str(self) -> &'static str {
        match self {
            Preset::Read => "read",
            Preset::Write => "write",
            Preset::Encrypt => "encrypt",
            Preset::Full => "full",
        }
    }

    /// The permissions the preset stands for.
    pub fn permissions(self) -> PermissionSet {
        let methods: Vec<Method> = match self {
            Preset::Read => Self::READ.to_vec(),
            Preset::Write => [&Self::READ[..], &[Method::SignEvent]].concat(),
            Preset::Encrypt => [
                &Self::READ[..],
                &[
                    Method::Nip04Encrypt,
                    Method::Nip04Decrypt,
                    Method::Nip44Encrypt,
                    Method::Nip44Decrypt,
                ],
            ]
            .concat(),
            Preset::Full => Method::ALL.to_vec(),
        };
        methods.into_iter().map(Permission::Method).collect()
    }
}

impl FromStr for Preset {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, e.g. `nip44_encrypt,sign_event:4`.
///
/// Parsing accepts preset names as items (`write,nip44_encrypt`) and expands
/// them; display writes the expanded items in a canonical order, so
/// `parse(display(set)) == set`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    /// No permissions at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether the set allows calling `method` (with `kind` for `sign_event`).
    pub fn allows(&self, method: Method, kind: Option<u16>) -> bool {
        self.0.iter().any(|p| p.allows(method, kind))
    }

    /// Add one permission.
    pub fn insert(&mut self, permission: Permission) -> bool {
        self.0.insert(permission)
    }

    /// Remove one permission.
    pub fn remove(&mut self, permission: &Permission) -> bool {
        self.0.remove(permission)
    }

    /// Every permission of `other` added to this one.
    pub fn extend(&mut self, other: &PermissionSet) {
        self.0.extend(other.0.iter().cloned());
    }

    /// Iterate in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }

    /// Number of permissions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parse what a peer requested, keeping what is understood.
    ///
    /// Clients send permission lists written for other signers; one unknown
    /// item should not make the whole request unreadable. Returns the set and
    /// the items that were skipped (for display to the user).
    pub fn parse_lenient(s: &str) -> (PermissionSet, Vec<String>) {
        let mut set = PermissionSet::empty();
        let mut skipped = Vec::new();
        for item in items(s) {
            match parse_item(item) {
                Ok(perms) => set.extend(&perms),
                Err(_) => skipped.push(truncate_for_display(item)),
            }
        }
        (set, skipped)
    }
}

fn items(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|i| !i.is_empty())
}

fn parse_item(item: &str) -> Result<PermissionSet, PermissionError> {
    if let Ok(preset) = item.parse::<Preset>() {
        return Ok(preset.permissions());
    }
    let permission = item.parse::<Permission>()?;
    Ok(PermissionSet(BTreeSet::from([permission])))
}

impl FromStr for PermissionSet {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = PermissionSet::empty();
        for item in items(s) {
            set.extend(&parse_item(item)?);
        }
        Ok(set)
    }
}

impl fmt::Display for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<T: IntoIterator<Item = Permission>>(iter: T) -> Self {
        PermissionSet(iter.into_iter().collect())
    }
}

impl From<Preset> for PermissionSet {
    fn from(preset: Preset) -> Self {
        preset.permissions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let set: PermissionSet = "nip44_encrypt,sign_event:4".parse().unwrap();
        assert!(set.allows(Method::Nip44Encrypt, None));
        assert!(set.allows(Method::SignEvent, Some(4)));
        assert!(!set.allows(Method::SignEvent, Some(1)));
        assert!(!set.allows(Method::SignEvent, None));
        assert!(!set.allows(Method::Nip44Decrypt, None));
        assert_eq!(set.to_string(), "nip44_encrypt,sign_event:4");
    }

    #[test]
    fn whole_method_covers_every_kind() {
        let set: PermissionSet = "sign_event".parse().unwrap();
        assert!(set.allows(Method::SignEvent, Some(0)));
        assert!(set.allows(Method::SignEvent, Some(30023)));
    }

    #[test]
    fn presets() {
        let read = Preset::Read.permissions();
        assert!(read.allows(Method::GetPublicKey, None));
        assert!(read.allows(Method::Ping, None));
        assert!(read.allows(Method::GetRelays, None));
        assert!(read.allows(Method::SwitchRelays, None));
        assert!(!read.allows(Method::SignEvent, Some(1)));
        assert!(!read.allows(Method::Nip44Encrypt, None));

        let write = Preset::Write.permissions();
        assert!(write.allows(Method::SignEvent, Some(1)));
        assert!(!write.allows(Method::Nip04Decrypt, None));

        let encrypt = Preset::Encrypt.permissions();
        for m in [
            Method::Nip04Encrypt,
            Method::Nip04Decrypt,
            Method::Nip44Encrypt,
            Method::Nip44Decrypt,
        ] {
            assert!(encrypt.allows(m, None));
        }
        assert!(!encrypt.allows(Method::SignEvent, Some(1)));

        let full = Preset::Full.permissions();
        for m in Method::ALL {
            assert!(full.allows(m, Some(1)));
        }
    }

    #[test]
    fn preset_names_expand_inside_lists() {
        let set: PermissionSet = " read , sign_event:1 ,".parse().unwrap();
        assert!(set.allows(Method::Ping, None));
        assert!(set.allows(Method::SignEvent, Some(1)));
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn scoped_permission_round_trips_but_grants_nothing() {
        let set: PermissionSet = "nip44_encrypt:someone".parse().unwrap();
        assert!(!set.allows(Method::Nip44Encrypt, None));
        assert_eq!(set.to_string(), "nip44_encrypt:someone");
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            "sign_event:x".parse::<PermissionSet>(),
            Err(PermissionError::InvalidKind("x".into()))
        );
        assert_eq!(
            "sign_event:70000".parse::<PermissionSet>(),
            Err(PermissionError::InvalidKind("70000".into()))
        );
        assert_eq!(
            "fly".parse::<PermissionSet>(),
            Err(PermissionError::UnknownMethod("fly".into()))
        );
        assert_eq!(
            "sign_event:".parse::<PermissionSet>(),
            Err(PermissionError::MalformedParam("sign_event:".into()))
        );
        assert_eq!(
            "nip44_encrypt:a:b".parse::<PermissionSet>(),
            Err(PermissionError::MalformedParam("nip44_encrypt:a:b".into()))
        );
    }

    #[test]
    fn lenient_parse_keeps_what_it_understands() {
        let (set, skipped) = PermissionSet::parse_lenient("sign_event:1,teleport,nip44_decrypt");
        assert!(set.allows(Method::SignEvent, Some(1)));
        assert!(set.allows(Method::Nip44Decrypt, None));
        assert_eq!(skipped, vec!["teleport".to_string()]);
    }

    #[test]
    fn empty_string_is_empty_set() {
        assert!("".parse::<PermissionSet>().unwrap().is_empty());
    }
}
