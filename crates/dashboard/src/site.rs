//! Where the dashboard is served: the hosts and origins it answers to, the
//! session cookie it sets there, and the header scripts send the CSRF token
//! in. The gate (`guard`) checks requests against it; logging in
//! (`login`) sets the cookie.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, header};

/// The header scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Where the dashboard is served: the hosts and origins it answers to.
#[derive(Debug, Clone)]
pub struct Site {
    hosts: Vec<String>,
    origins: Vec<String>,
    cookie_name: String,
}

impl Site {
    /// The site of a dashboard bound at `local`, also reached at `extra_origins`.
    pub fn new(local: SocketAddr, extra_origins: &[String]) -> Self {
        let port = local.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            local.to_string(),
        ];
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
        for extra in extra_origins {
            let Ok(url) = url::Url::parse(extra) else {
                continue;
            };
            let Some(host) = url.host_str() else { continue };
            hosts.push(match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            });
            origins.push(url.origin().ascii_serialization());
        }
        hosts.dedup();
        Site {
            hosts,
            origins,
            // Cookies are not isolated by port: name them by port so two
            // dashboards on one machine do not overwrite each other's.
            cookie_name: format!("rampart_session_{port}"),
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    pub(crate) fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub(crate) fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The value of the session cookie, if the browser sent one.
pub fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that stores a session (`max_age` seconds; 0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> HeaderValue {
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}
