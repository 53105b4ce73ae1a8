//! NIP-46 responses: `{"id": …, "result": …, "error": …}`.
//!
//! Errors carry a stable machine-readable code as a prefix of the error
//! string: `"<code>: <human reason>"`, e.g. `"unauthorized: sign_event:0 not
//! granted"`. Clients that only show the string still show something useful;
//! clients that know the format get the code.

use core::fmt;
use core::str::FromStr;

use nostr::prelude::RelayUrl;
use serde_json::Value;

/// The error codes Rampart puts in front of an error string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The session may not do this (not granted, denied by the user, revoked,
    /// bad or used secret, no session).
    Unauthorized,
    /// Too many requests; retry later.
    RateLimited,
    /// The parameters could not be read.
    InvalidParams,
    /// The method is not a NIP-46 method.
    MethodNotFound,
    /// The signer failed; not the client's fault.
    InternalError,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::InvalidParams,
        ErrorCode::MethodNotFound,
        ErrorCode::InternalError,
    ];

    /// The code as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code, when the signer used the `"<code>: <reason>"` format.
    pub code: Option<ErrorCode>,
    /// The human-readable part (the whole string when there is no code).
    pub message: String,
}

impl RpcError {
    /// An error with a code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code: Some(code),
            message: message.into(),
        }
    }

    /// Read an error string from any signer.
    pub fn parse(s: &str) -> Self {
        if let Some((code, message)) = s.split_once(": ")
            && let Ok(code) = code.parse::<ErrorCode>()
        {
            return RpcError::new(code, message);
        }
        match s.parse::<ErrorCode>() {
            Ok(code) => RpcError::new(code, ""),
            Err(()) => RpcError {
                code: None,
                message: s.to_owned(),
            },
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.message.is_empty()) {
            (Some(code), true) => write!(f, "{code}"),
            (Some(code), false) => write!(f, "{code}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// What a response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success, with the method's result string.
    Result(String),
    /// Failure.
    Error(RpcError),
    /// The user must approve at this URL; the real response follows later with
    /// the same id.
    AuthUrl(String),
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request id it answers.
    pub id: String,
    /// The outcome.
    pub outcome: Outcome,
}

/// Why response text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response: {0}")]
pub struct ResponseError(pub String);

impl Response {
    /// A successful response.
    pub fn ok(id: impl Into<String>, result: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            outcome: Outcome::Result(result.into()),
        }
    }

    /// An error response.
    pub fn error(id: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            outcome: Outcome::Error(RpcError::new(code, message)),
        }
    }

    /// An `auth_url` challenge.
    pub fn auth_url(id: impl Into<String>, url: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            outcome: Outcome::AuthUrl(url.into()),
        }
    }

    /// Serialize for the wire.
    ///
    /// Error replies carry no `result` key: some clients parse any `result`
    /// present against the method before looking at `error`.
    pub fn to_json(&self) -> String {
        let value = match &self.outcome {
            Outcome::Result(r) => serde_json::json!({"id": self.id, "result": r}),
            Outcome::Error(e) => serde_json::json!({"id": self.id, "error": e.to_string()}),
            Outcome::AuthUrl(u) => {
                serde_json::json!({"id": self.id, "result": "auth_url", "error": u})
            }
        };
        value.to_string()
    }

    /// Read a response from any signer, liberally: `result` may be a string
    /// or another JSON value, `error` may be null or empty.
    pub fn parse(json: &str) -> Result<Response, ResponseError> {
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(json).map_err(|e| ResponseError(e.to_string()))?;
        let id = match map.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ResponseError("id is not a string".into())),
        };
        let error = match map.get("error") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        // `"result": null` is a real answer (`switch_relays`: nothing to
        // change), unlike a missing result.
        let result = match map.get("result") {
            None => None,
            Some(Value::Null) => Some("null".to_owned()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let outcome = match (result, error) {
            (Some(r), Some(url)) if r == "auth_url" => Outcome::AuthUrl(url),
            (_, Some(e)) => Outcome::Error(RpcError::parse(&e)),
            (Some(r), None) => Outcome::Result(r),
            (None, None) => return Err(ResponseError("neither result nor error".into())),
        };
        Ok(Response { id, outcome })
    }
}

/// The `get_relays` result: a NIP-07-style map `{url: {read, write}}`, stringified.
pub fn relay_map_json(relays: &[RelayUrl]) -> String {
    let map: serde_json::Map<String, Value> = relays
        .iter()
        .map(|r| {
            (
                r.as_str().to_owned(),
                serde_json::json!({"read": true, "write": true}),
            )
        })
        .collect();
    Value::Object(map).to_string()
}

/// The `switch_relays` result: a stringified array of relay URLs.
pub fn relay_list_json(relays: &[RelayUrl]) -> String {
    Value::Array(relays.iter().map(|r| r.as_str().into()).collect()).to_string()
}

/// Read a `switch_relays` result: `None` when the signer says nothing changes
/// (`null`, empty, or an empty list). Unparseable relay URLs are skipped.
pub fn parse_relay_list(result: &str) -> Option<Vec<RelayUrl>> {
    let list: Vec<Value> = match serde_json::from_str::<Value>(result).ok()? {
        Value::Array(a) => a,
        _ => return None,
    };
    let relays: Vec<RelayUrl> = list
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| RelayUrl::parse(s).ok())
        .collect();
    (!relays.is_empty()).then_some(relays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_format_is_stable() {
        let r = Response::error("1", ErrorCode::Unauthorized, "sign_event:0 not granted");
        assert_eq!(
            r.to_json(),
            r#"{"error":"unauthorized: sign_event:0 not granted","id":"1"}"#
        );
        assert_eq!(Response::parse(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn auth_url_form() {
        let r = Response::auth_url("1", "https://signer.example/approve/abc");
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["result"], "auth_url");
        assert_eq!(v["error"], "https://signer.example/approve/abc");
        assert_eq!(Response::parse(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn liberal_parsing() {
        let r = Response::parse(r#"{"id":"1","result":"ack","error":null}"#).unwrap();
        assert_eq!(r.outcome, Outcome::Result("ack".into()));
        let r = Response::parse(r#"{"id":"1","result":"x","error":""}"#).unwrap();
        assert_eq!(r.outcome, Outcome::Result("x".into()));
        let r = Response::parse(r#"{"id":"1","result":"error","error":"Empty response"}"#).unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Error(RpcError {
                code: None,
                message: "Empty response".into()
            })
        );
        let r = Response::parse(r#"{"id":"1","result":{"kind":1}}"#).unwrap();
        assert_eq!(r.outcome, Outcome::Result(r#"{"kind":1}"#.into()));
        let r = Response::parse(r#"{"id":"1","result":null}"#).unwrap();
        assert_eq!(r.outcome, Outcome::Result("null".into()));
        assert!(Response::parse(r#"{"id":"1"}"#).is_err());
        assert!(Response::parse("nope").is_err());
    }

    #[test]
    fn every_code_round_trips() {
        for code in ErrorCode::ALL {
            let e = RpcError::new(code, "why");
            assert_eq!(RpcError::parse(&e.to_string()), e);
        }
        assert_eq!(
            RpcError::parse("rate_limited").code,
            Some(ErrorCode::RateLimited)
        );
    }

    #[test]
    fn relay_results() {
        let relays = vec![
            RelayUrl::parse("wss://a.example").unwrap(),
            RelayUrl::parse("ws://127.0.0.1:7000").unwrap(),
        ];
        let map: Value = serde_json::from_str(&relay_map_json(&relays)).unwrap();
        assert_eq!(map["wss://a.example"]["write"], true);
        assert_eq!(parse_relay_list(&relay_list_json(&relays)), Some(relays));
        assert_eq!(parse_relay_list("null"), None);
        assert_eq!(parse_relay_list("[]"), None);
        assert_eq!(parse_relay_list("garbage"), None);
    }
}
