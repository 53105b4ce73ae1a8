//! The base of `auth_url` challenges, checked once when it is configured.
//!
//! An `auth_url` is opened by the user's browser on the app's say-so, so the
//! bunker only ever sends `https:` URLs, or `http:` ones on a loopback
//! address (the dashboard on the same machine). Holding the check in a type
//! means an engine cannot be configured with anything else.

use std::fmt;
use std::net::IpAddr;

use store::ApprovalId;

/// Why a URL cannot be an `auth_url` base.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthUrlError {
    /// Not a URL at all.
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    /// Plain HTTP to a non-loopback host, or another scheme.
    #[error("`{0}` is neither https:// nor http:// on a loopback address")]
    Insecure(String),
    /// Query strings and fragments would swallow the approval path.
    #[error("`{0}` has a query or fragment; give a plain base URL")]
    HasQuery(String),
}

/// A checked base URL: approval pages live at `<base>/approve/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUrlBase(String);

impl AuthUrlBase {
    /// Check `text`: `https://…`, or `http://` on 127.0.0.0/8, `::1` or `localhost`.
    pub fn parse(text: &str) -> Result<Self, AuthUrlError> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|_| AuthUrlError::NotAUrl(text.to_owned()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(AuthUrlError::HasQuery(text.to_owned()));
        }
        let secure = match url.scheme() {
            "https" => url.host().is_some(),
            "http" => is_loopback(&url),
            _ => false,
        };
        if !secure {
            return Err(AuthUrlError::Insecure(text.to_owned()));
        }
        Ok(AuthUrlBase(text.trim_end_matches('/').to_owned()))
    }

    /// The approval page of one held request.
    pub fn approval_url(&self, id: &ApprovalId) -> String {
        format!("{}/approve/{id}", self.0)
    }

    /// The base, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuthUrlBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            "https://signer.example",
            "https://signer.example/rampart/",
            "http://127.0.0.1:7448",
            "http://127.8.9.10",
            "http://[::1]:7448/",
            "http://localhost:7448",
        ] {
            assert!(AuthUrlBase::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://192.168.1.2:7448",
            "http://0.0.0.0:7448",
            "http://localhost.evil.example",
            "javascript:alert(1)",
            "ftp://127.0.0.1",
            "https://signer.example/?x=1",
            "not a url",
        ] {
            assert!(AuthUrlBase::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn approval_urls_have_one_slash() {
        let base = AuthUrlBase::parse("https://signer.example/rampart/").unwrap();
        let id = ApprovalId("ab12".into());
        assert_eq!(
            base.approval_url(&id),
            "https://signer.example/rampart/approve/ab12"
        );
    }
}
