//! NIP-46 requests: `{"id": …, "method": …, "params": [strings]}`.
//!
//! Parameters are turned into typed values here, at the boundary, so the
//! bunker never touches a raw `params` array. A request whose method is known
//! but whose parameters are wrong is still answerable (`invalid_params` with
//! its id); a method nobody knows parses into [`Command::Unknown`].

use core::fmt;

use nostr::prelude::{Kind, PublicKey, Tag, Tags, Timestamp, UnsignedEvent};
use serde::Deserialize;
use serde_json::Value;

use crate::limits::Limits;
use crate::method::{Method, truncate_for_display};
use crate::permission::PermissionSet;
use crate::secret::ConnectSecret;

/// Upper bound on a request id: ids are echoed back and stored for replay checks.
pub const MAX_ID_LEN: usize = 128;
/// Longest `connect` secret taken (secrets are short random strings).
pub const MAX_CONNECT_SECRET_LEN: usize = 512;
/// Longest `connect` requested-permissions list taken.
pub const MAX_CONNECT_PERMS_LEN: usize = 8 * 1024;
/// Longest `connect` client metadata taken (JSON).
pub const MAX_CONNECT_METADATA_LEN: usize = 16 * 1024;
/// Longest client metadata field kept (`name`, `url`, `image`), in bytes.
pub const MAX_METADATA_FIELD_LEN: usize = 2048;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// The client-chosen id, echoed in the response.
    pub id: String,
    /// What the client asks for.
    pub command: Command,
}

/// What a request asks the signer to do, with typed parameters.
pub enum Command {
    /// `connect`.
    Connect(ConnectParams),
    /// `get_public_key`.
    GetPublicKey,
    /// `sign_event`.
    SignEvent(EventTemplate),
    /// `ping`.
    Ping,
    /// `get_relays`.
    GetRelays,
    /// `nip04_encrypt`.
    Nip04Encrypt {
        /// The third party.
        peer: PublicKey,
        /// Text to encrypt.
        plaintext: String,
    },
    /// `nip04_decrypt`.
    Nip04Decrypt {
        /// The third party.
        peer: PublicKey,
        /// Text to decrypt.
        ciphertext: String,
    },
    /// `nip44_encrypt`.
    Nip44Encrypt {
        /// The third party.
        peer: PublicKey,
        /// Text to encrypt.
        plaintext: String,
    },
    /// `nip44_decrypt`.
    Nip44Decrypt {
        /// The third party.
        peer: PublicKey,
        /// Text to decrypt.
        ciphertext: String,
    },
    /// `switch_relays`.
    SwitchRelays,
    /// `logout`.
    Logout,
    /// A method NIP-46 does not define; answered `method_not_found`.
    Unknown {
        /// The method name as sent (truncated for display).
        method: String,
    },
}

impl Command {
    /// The method, or `None` for an unknown one.
    pub fn method(&self) -> Option<Method> {
        Some(match self {
            Command::Connect(_) => Method::Connect,
            Command::GetPublicKey => Method::GetPublicKey,
            Command::SignEvent(_) => Method::SignEvent,
            Command::Ping => Method::Ping,
            Command::GetRelays => Method::GetRelays,
            Command::Nip04Encrypt { .. } => Method::Nip04Encrypt,
            Command::Nip04Decrypt { .. } => Method::Nip04Decrypt,
            Command::Nip44Encrypt { .. } => Method::Nip44Encrypt,
            Command::Nip44Decrypt { .. } => Method::Nip44Decrypt,
            Command::SwitchRelays => Method::SwitchRelays,
            Command::Logout => Method::Logout,
            Command::Unknown { .. } => return None,
        })
    }

    /// The event kind, for `sign_event`.
    pub fn kind(&self) -> Option<u16> {
        match self {
            Command::SignEvent(t) => Some(t.kind.as_u16()),
            _ => None,
        }
    }

    /// The method name as it appears on the wire.
    pub fn method_name(&self) -> &str {
        match self {
            Command::Unknown { method } => method,
            other => other.method().map(Method::as_str).unwrap_or_default(),
        }
    }
}

impl fmt::Debug for Command {
    /// Shows the method and the non-sensitive parameters; texts are elided
    /// because they are users' private messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Connect(p) => f.debug_tuple("Connect").field(p).finish(),
            Command::SignEvent(t) => f.debug_tuple("SignEvent").field(&t.kind).finish(),
            Command::Nip04Encrypt { peer, .. }
            | Command::Nip04Decrypt { peer, .. }
            | Command::Nip44Encrypt { peer, .. }
            | Command::Nip44Decrypt { peer, .. } => {
                write!(f, "{}({})", self.method_name(), peer.to_hex())
            }
            other => f.write_str(other.method_name()),
        }
    }
}

/// The parameters of `connect`.
pub struct ConnectParams {
    /// First param: the signer's pubkey per the current NIP, a user pubkey per
    /// older text, or empty (some clients) → `None`.
    pub target: Option<PublicKey>,
    /// The connection secret, if one was sent and is not empty.
    pub secret: Option<ConnectSecret>,
    /// Requested permissions (unknown items skipped).
    pub requested_perms: PermissionSet,
    /// Client metadata (display hints only, never used for authorization).
    pub metadata: Option<ClientMetadata>,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("target", &self.target)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("requested_perms", &self.requested_perms.to_string())
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Client metadata from `connect` or a `nostrconnect://` URI. Unauthenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Application name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Application URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Application image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl ClientMetadata {
    /// Parse the JSON-stringified object; anything unreadable is `None`
    /// (metadata is a hint, so a bad one must not fail the `connect`).
    pub fn parse_lenient(s: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Loose {
            name: Option<Value>,
            url: Option<Value>,
            image: Option<Value>,
        }
        let loose: Loose = serde_json::from_str(s).ok()?;
        let field = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(truncate_bytes(s)),
            _ => None,
        };
        let meta = ClientMetadata {
            name: field(loose.name),
            url: field(loose.url),
            image: field(loose.image),
        };
        (meta != ClientMetadata::default()).then_some(meta)
    }
}

fn truncate_bytes(mut s: String) -> String {
    if s.len() > MAX_METADATA_FIELD_LEN {
        let mut cut = MAX_METADATA_FIELD_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The event a client asks to have signed.
///
/// `pubkey`, `id` and `sig` may be absent (the NIP's template has none);
/// `created_at` may be absent too, and the signer fills in its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    /// Event kind.
    pub kind: Kind,
    /// Content.
    pub content: String,
    /// Tags.
    pub tags: Tags,
    /// Creation time, if the client set one.
    pub created_at: Option<Timestamp>,
    /// The author the client expects, if it said.
    pub pubkey: Option<PublicKey>,
}

impl EventTemplate {
    /// Parse a template from its JSON text.
    pub fn parse(json: &str) -> Result<Self, ParamsError> {
        #[derive(Deserialize)]
        struct Wire {
            kind: u16,
            #[serde(default)]
            content: String,
            #[serde(default)]
            tags: Vec<Vec<String>>,
            created_at: Option<u64>,
            pubkey: Option<String>,
        }
        let wire: Wire = serde_json::from_str(json)
            .map_err(|e| ParamsError::new(format!("event template is not valid: {e}")))?;
        let mut tags = Vec::with_capacity(wire.tags.len());
        for tag in wire.tags {
            tags.push(
                Tag::parse(tag).map_err(|_| ParamsError::new("event template has an empty tag"))?,
            );
        }
        let pubkey = match wire.pubkey.as_deref() {
            None | Some("") => None,
            Some(hex) => Some(parse_hex_pubkey(hex)?),
        };
        Ok(EventTemplate {
            kind: Kind::from_u16(wire.kind),
            content: wire.content,
            tags: Tags::from_list(tags),
            created_at: wire.created_at.map(Timestamp::from_secs),
            pubkey,
        })
    }

    /// The unsigned event for `author`, with `now` where no time was given.
    ///
    /// Refused when the template names another author: the client is
    /// confused about whose key it is talking to.
    pub fn into_unsigned(
        self,
        author: PublicKey,
        now: Timestamp,
    ) -> Result<UnsignedEvent, ParamsError> {
        if let Some(expected) = self.pubkey
            && expected != author
        {
            return Err(ParamsError::new(
                "the template's pubkey is not this signer's user pubkey; call get_public_key",
            ));
        }
        Ok(UnsignedEvent::new(
            author,
            self.created_at.unwrap_or(now),
            self.kind,
            self.tags,
            self.content,
        ))
    }
}

/// Why a request's parameters were refused; answered with `invalid_params`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

impl ParamsError {
    fn new(reason: impl Into<String>) -> Self {
        ParamsError(reason.into())
    }
}

/// Why a decrypted request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a request object at all, or without a usable id: nothing can be
    /// answered, so the message is dropped.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The id and method are readable but the parameters are not; answer
    /// `invalid_params` with this id.
    #[error("invalid params for `{method}`: {reason}")]
    InvalidParams {
        /// The request id.
        id: String,
        /// The method name (truncated).
        method: String,
        /// What was wrong.
        reason: ParamsError,
    },
}

/// The raw request object. `params` are strings per the NIP; other JSON
/// values are accepted and stringified (some clients send the template as an
/// object).
#[derive(Deserialize)]
struct WireRequest {
    id: Value,
    method: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// A request id: a string, or a number some clients send.
fn request_id(id: Value) -> Result<String, RequestError> {
    let id = match id {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return Err(RequestError::Malformed("id is not a string".into())),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(RequestError::Malformed(format!(
            "id must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(id)
}

/// Only what answering needs: a request over the size limit is read this
/// far (its params skipped, not kept) to answer `invalid_params` with its id.
#[derive(Deserialize)]
struct WireHeader {
    id: Value,
    method: String,
    #[serde(default)]
    #[allow(dead_code)]
    params: serde::de::IgnoredAny,
}

impl Request {
    /// Parse decrypted request text, at most [`DEFAULT_MAX_MESSAGE`] bytes.
    ///
    /// [`DEFAULT_MAX_MESSAGE`]: crate::limits::DEFAULT_MAX_MESSAGE
    pub fn parse(json: &str) -> Result<Request, RequestError> {
        Self::parse_limited(json, &Limits::default())
    }

    /// Parse decrypted request text. Text over `limits.max_message` bytes is
    /// answered `invalid_params` with the limit (when its id is readable)
    /// before any parameter is looked at.
    pub fn parse_limited(json: &str, limits: &Limits) -> Result<Request, RequestError> {
        if json.len() > limits.max_message {
            let header: WireHeader =
                serde_json::from_str(json).map_err(|e| RequestError::Malformed(e.to_string()))?;
            let id = request_id(header.id)?;
            return Err(RequestError::InvalidParams {
                id,
                method: truncate_for_display(&header.method),
                reason: ParamsError::new(format!(
                    "request of {} bytes exceeds this signer's limit of {} bytes",
                    json.len(),
                    limits.max_message
                )),
            });
        }
        let wire: WireRequest =
            serde_json::from_str(json).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let id = request_id(wire.id)?;
        let invalid = |reason: ParamsError| RequestError::InvalidParams {
            id: id.clone(),
            method: truncate_for_display(&wire.method),
            reason,
        };
        let params: Vec<String> = wire.params.into_iter().map(stringify).collect();
        let command = Command::parse(&wire.method, params).map_err(invalid)?;
        Ok(Request { id, command })
    }

    /// Serialize for the wire (what a client sends).
    pub fn to_json(&self) -> String {
        let params = self.command.params();
        serde_json::json!({
            "id": self.id,
            "method": self.command.method_name(),
            "params": params,
        })
        .to_string()
    }
}

fn stringify(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Command {
    fn parse(method: &str, params: Vec<String>) -> Result<Command, ParamsError> {
        let Ok(method) = method.parse::<Method>() else {
            return Ok(Command::Unknown {
                method: truncate_for_display(method),
            });
        };
        let mut params = params.into_iter();
        let command = match method {
            Method::Connect => Command::Connect(ConnectParams::parse(params)?),
            Method::GetPublicKey => Command::GetPublicKey,
            Method::Ping => Command::Ping,
            Method::GetRelays => Command::GetRelays,
            Method::SwitchRelays => Command::SwitchRelays,
            Method::Logout => Command::Logout,
            Method::SignEvent => {
                let template = params
                    .next()
                    .ok_or_else(|| ParamsError::new("sign_event needs an event template"))?;
                Command::SignEvent(EventTemplate::parse(&template)?)
            }
            Method::Nip04Encrypt
            | Method::Nip04Decrypt
            | Method::Nip44Encrypt
            | Method::Nip44Decrypt => {
                let (peer, text) = peer_and_text(method, &mut params)?;
                match method {
                    Method::Nip04Encrypt => Command::Nip04Encrypt {
                        peer,
                        plaintext: text,
                    },
                    Method::Nip04Decrypt => Command::Nip04Decrypt {
                        peer,
                        ciphertext: text,
                    },
                    Method::Nip44Encrypt => Command::Nip44Encrypt {
                        peer,
                        plaintext: text,
                    },
                    _ => Command::Nip44Decrypt {
                        peer,
                        ciphertext: text,
                    },
                }
            }
        };
        Ok(command)
    }

    /// The positional string params, as a client sends them.
    fn params(&self) -> Vec<String> {
        match self {
            Command::Connect(p) => {
                let mut v = vec![
                    p.target.map(|k| k.to_hex()).unwrap_or_default(),
                    p.secret
                        .as_ref()
                        .map(|s| s.expose().to_owned())
                        .unwrap_or_default(),
                ];
                let perms = p.requested_perms.to_string();
                if let Some(meta) = &p.metadata {
                    v.push(perms);
                    v.push(serde_json::to_string(meta).unwrap_or_default());
                } else if !perms.is_empty() {
                    v.push(perms);
                }
                while v.last().is_some_and(String::is_empty) && v.len() > 1 {
                    v.pop();
                }
                v
            }
            Command::SignEvent(t) => vec![t.to_json()],
            Command::Nip04Encrypt {
                peer,
                plaintext: text,
            }
            | Command::Nip04Decrypt {
                peer,
                ciphertext: text,
            }
            | Command::Nip44Encrypt {
                peer,
                plaintext: text,
            }
            | Command::Nip44Decrypt {
                peer,
                ciphertext: text,
            } => {
                vec![peer.to_hex(), text.clone()]
            }
            _ => Vec::new(),
        }
    }
}

impl EventTemplate {
    /// The template as JSON, as a client sends it.
    pub fn to_json(&self) -> String {
        let mut obj = serde_json::json!({
            "kind": self.kind.as_u16(),
            "content": self.content,
            "tags": self.tags,
        });
        if let Some(t) = self.created_at {
            obj["created_at"] = t.as_secs().into();
        }
        if let Some(pk) = self.pubkey {
            obj["pubkey"] = pk.to_hex().into();
        }
        obj.to_string()
    }
}

fn peer_and_text(
    method: Method,
    params: &mut impl Iterator<Item = String>,
) -> Result<(PublicKey, String), ParamsError> {
    let (Some(peer), Some(text)) = (params.next(), params.next()) else {
        return Err(ParamsError::new(format!(
            "{method} needs [<third_party_pubkey>, <text>]"
        )));
    };
    Ok((parse_hex_pubkey(&peer)?, text))
}

/// A pubkey parameter: exactly 64 hex characters, as the NIP says.
fn parse_hex_pubkey(s: &str) -> Result<PublicKey, ParamsError> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParamsError::new(format!(
            "`{}` is not a pubkey (64 hex characters)",
            truncate_for_display(s)
        )));
    }
    PublicKey::from_hex(s).map_err(|_| {
        ParamsError::new(format!(
            "`{}` is not a point on the curve",
            truncate_for_display(s)
        ))
    })
}

impl ConnectParams {
    fn parse(params: impl Iterator<Item = String>) -> Result<Self, ParamsError> {
        let mut params = params;
        let target = match params.next().as_deref() {
            None | Some("") => None,
            Some(s) if s.starts_with("npub1") => {
                Some(PublicKey::parse(s).map_err(|_| ParamsError::new("connect: invalid npub"))?)
            }
            Some(s) => Some(parse_hex_pubkey(s)?),
        };
        // Each field bounded on its own: a `connect` comes from a client
        // without a session yet, and may wait for a reload (secret kept).
        let bounded = |p: Option<String>, max: usize, what: &str| match p {
            Some(p) if p.len() > max => Err(ParamsError::new(format!(
                "connect: {what} of {} bytes exceeds {max}",
                p.len()
            ))),
            p => Ok(p),
        };
        let secret = bounded(params.next(), MAX_CONNECT_SECRET_LEN, "the secret")?
            .filter(|s| !s.is_empty())
            .map(ConnectSecret::new);
        let requested_perms = bounded(params.next(), MAX_CONNECT_PERMS_LEN, "requested perms")?
            .map(|p| PermissionSet::parse_lenient(&p).0)
            .unwrap_or_default();
        let metadata = bounded(params.next(), MAX_CONNECT_METADATA_LEN, "client metadata")?
            .and_then(|m| ClientMetadata::parse_lenient(&m));
        Ok(ConnectParams {
            target,
            secret,
            requested_perms,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "eff37350d839ce3707332348af4549a96051bd695d3223af4aabce4993531d86";

    fn parse(json: &str) -> Request {
        Request::parse(json).unwrap()
    }

    #[test]
    fn every_method_parses() {
        let cases = [
            (
                r#"{"id":"1","method":"connect","params":[]}"#,
                Method::Connect,
            ),
            (
                r#"{"id":"1","method":"get_public_key","params":[]}"#,
                Method::GetPublicKey,
            ),
            (r#"{"id":"1","method":"ping"}"#, Method::Ping),
            (
                r#"{"id":"1","method":"get_relays","params":[]}"#,
                Method::GetRelays,
            ),
            (
                r#"{"id":"1","method":"switch_relays","params":[]}"#,
                Method::SwitchRelays,
            ),
            (
                r#"{"id":"1","method":"logout","params":[]}"#,
                Method::Logout,
            ),
            (
                r#"{"id":"1","method":"sign_event","params":["{\"kind\":1,\"content\":\"hi\",\"tags\":[],\"created_at\":1714078911}"]}"#,
                Method::SignEvent,
            ),
        ];
        for (json, method) in cases {
            assert_eq!(parse(json).command.method(), Some(method), "{json}");
        }
        for m in [
            "nip04_encrypt",
            "nip04_decrypt",
            "nip44_encrypt",
            "nip44_decrypt",
        ] {
            let json = format!(r#"{{"id":"x","method":"{m}","params":["{PK}","text"]}}"#);
            let req = parse(&json);
            assert_eq!(req.command.method_name(), m);
        }
    }

    #[test]
    fn unknown_method_is_a_distinct_value() {
        let req = parse(r#"{"id":"7","method":"create_account","params":["a"]}"#);
        assert!(
            matches!(req.command, Command::Unknown { ref method } if method == "create_account")
        );
        assert_eq!(req.command.method(), None);
    }

    #[test]
    fn template_without_pubkey_or_created_at() {
        let req = parse(
            r#"{"id":"1","method":"sign_event","params":["{\"kind\":1,\"content\":\"hi\",\"tags\":[[\"t\",\"x\"]]}"]}"#,
        );
        let Command::SignEvent(t) = req.command else {
            panic!()
        };
        assert_eq!(t.kind, Kind::TextNote);
        assert!(t.pubkey.is_none());
        assert!(t.created_at.is_none());
        let author = PublicKey::from_hex(PK).unwrap();
        let unsigned = t.into_unsigned(author, Timestamp::from_secs(5)).unwrap();
        assert_eq!(unsigned.created_at.as_secs(), 5);
        assert_eq!(unsigned.pubkey, author);
    }

    #[test]
    fn template_as_object_is_accepted() {
        let req = parse(
            r#"{"id":"1","method":"sign_event","params":[{"kind":7,"content":"+","tags":[]}]}"#,
        );
        assert_eq!(req.command.kind(), Some(7));
    }

    #[test]
    fn template_with_other_author_is_refused() {
        let t = EventTemplate::parse(&format!(
            r#"{{"kind":1,"content":"","tags":[],"pubkey":"{PK}"}}"#
        ))
        .unwrap();
        let other =
            PublicKey::from_hex("fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52")
                .unwrap();
        assert!(t.into_unsigned(other, Timestamp::from_secs(1)).is_err());
    }

    #[test]
    fn bad_params_keep_the_id() {
        let err =
            Request::parse(r#"{"id":"abc","method":"nip44_encrypt","params":["npub1xyz","t"]}"#)
                .unwrap_err();
        assert!(matches!(err, RequestError::InvalidParams { ref id, .. } if id == "abc"));
        let err = Request::parse(r#"{"id":"abc","method":"sign_event","params":[]}"#).unwrap_err();
        assert!(matches!(err, RequestError::InvalidParams { .. }));
        let err = Request::parse(
            r#"{"id":"abc","method":"sign_event","params":["{\"kind\":1,\"tags\":[[]]}"]}"#,
        )
        .unwrap_err();
        assert!(matches!(err, RequestError::InvalidParams { .. }));
        let err =
            Request::parse(r#"{"id":"abc","method":"sign_event","params":["{\"kind\":70000}"]}"#)
                .unwrap_err();
        assert!(matches!(err, RequestError::InvalidParams { .. }));
    }

    #[test]
    fn malformed_requests() {
        for json in [
            "",
            "[]",
            "{}",
            r#"{"id":"1"}"#,
            r#"{"id":null,"method":"ping"}"#,
            r#"{"id":"","method":"ping"}"#,
        ] {
            assert!(
                matches!(Request::parse(json), Err(RequestError::Malformed(_))),
                "{json}"
            );
        }
    }

    #[test]
    fn oversized_requests_are_invalid_params_naming_the_limit() {
        let limits = Limits::new(20_000);
        let fits = "a".repeat(19_000);
        let json = format!(r#"{{"id":"1","method":"nip44_encrypt","params":["{PK}","{fits}"]}}"#);
        assert!(Request::parse_limited(&json, &limits).is_ok());
        let big = "a".repeat(20_001);
        let json = format!(r#"{{"id":"7","method":"nip44_encrypt","params":["{PK}","{big}"]}}"#);
        match Request::parse_limited(&json, &limits) {
            Err(RequestError::InvalidParams { id, method, reason }) => {
                assert_eq!((id.as_str(), method.as_str()), ("7", "nip44_encrypt"));
                assert!(reason.0.contains("limit of 20000 bytes"), "{}", reason.0);
            }
            other => panic!("{other:?}"),
        }
        // Past the limit the id must still be readable to answer.
        let json = format!(r#"{{"method":"ping","params":["{big}"]}}"#);
        assert!(matches!(
            Request::parse_limited(&json, &limits),
            Err(RequestError::Malformed(_))
        ));
        // A 300 KB request is within the default.
        let big = "a".repeat(300_000);
        let json = format!(r#"{{"id":"1","method":"nip44_encrypt","params":["{PK}","{big}"]}}"#);
        assert!(Request::parse(&json).is_ok());
    }

    #[test]
    fn connect_fields_are_bounded() {
        let long = "s".repeat(MAX_CONNECT_SECRET_LEN + 1);
        let json = format!(r#"{{"id":"1","method":"connect","params":["","{long}"]}}"#);
        assert!(matches!(
            Request::parse(&json),
            Err(RequestError::InvalidParams { .. })
        ));
        let ok = "s".repeat(MAX_CONNECT_SECRET_LEN);
        let json = format!(r#"{{"id":"1","method":"connect","params":["","{ok}"]}}"#);
        assert!(Request::parse(&json).is_ok());
    }

    #[test]
    fn connect_variants() {
        let req = parse(r#"{"id":"1","method":"connect","params":["","secret1"]}"#);
        let Command::Connect(p) = req.command else {
            panic!()
        };
        assert!(p.target.is_none());
        assert!(p.secret.unwrap().matches("secret1"));

        let json = format!(
            r#"{{"id":"1","method":"connect","params":["{PK}","","sign_event:1,nip44_encrypt","{{\"name\":\"App\",\"url\":\"https://app.example\"}}"]}}"#
        );
        let Command::Connect(p) = parse(&json).command else {
            panic!()
        };
        assert_eq!(p.target.unwrap().to_hex(), PK);
        assert!(p.secret.is_none());
        assert!(p.requested_perms.allows(Method::SignEvent, Some(1)));
        let meta = p.metadata.unwrap();
        assert_eq!(meta.name.as_deref(), Some("App"));
        assert_eq!(meta.url.as_deref(), Some("https://app.example"));

        let json = r#"{"id":"1","method":"connect","params":["","","","not json"]}"#;
        let Command::Connect(p) = parse(json).command else {
            panic!()
        };
        assert!(p.metadata.is_none());
    }

    #[test]
    fn numeric_ids_are_accepted() {
        assert_eq!(parse(r#"{"id":42,"method":"ping"}"#).id, "42");
    }

    #[test]
    fn to_json_round_trips() {
        let json = format!(r#"{{"id":"9","method":"nip44_decrypt","params":["{PK}","abc"]}}"#);
        let req = parse(&json);
        let again = parse(&req.to_json());
        assert_eq!(again.id, "9");
        assert!(
            matches!(again.command, Command::Nip44Decrypt { ref ciphertext, .. } if ciphertext == "abc")
        );
    }

    #[test]
    fn debug_hides_texts() {
        let json = format!(r#"{{"id":"9","method":"nip44_encrypt","params":["{PK}","my diary"]}}"#);
        assert!(!format!("{:?}", parse(&json)).contains("diary"));
    }
}
