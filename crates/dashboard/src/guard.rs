//! The dashboard's gate: which requests reach a handler at all.
//!
//! - [`check_host`]: only `Host`s the dashboard answers to (its loopback
//!   address, configured public origins): a DNS-rebinding page cannot talk
//!   to it under a name of its own.
//! - [`require_session`]: no data and no action without a valid session
//!   cookie; every state change also needs the session's CSRF token (form
//!   field `csrf` or header `X-CSRF-Token`) and, when the browser says where
//!   it comes from, a same-origin `Origin` and `Sec-Fetch-Site`.
//! - [`check_origin`]: the same origin rule for the public routes (login).
//! - [`security_headers`]: CSP without inline code, no framing
//!   (clickjacking an "Allow" button), no referrers to other sites, no caching.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::auth::AdminSession;
use crate::error::{ApiError, DashboardError, PageError};
use crate::site::{CSRF_HEADER, Site, session_cookie};
use crate::{html, login};

/// Largest request body read (forms and JSON are small).
const MAX_BODY: usize = 64 * 1024;

/// Refuse requests for a `Host` the dashboard does not answer to.
pub async fn check_host(State(app): State<App>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        Some(h) if app.site.allows_host(h) => next.run(req).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            "This Rampart dashboard does not answer to that host name.\n",
        )
            .into_response(),
    }
}

/// Refuse cross-site state changes on the public routes.
pub async fn check_origin(State(app): State<App>, req: Request, next: Next) -> Response {
    if changes_state(req.method())
        && let Err(reason) = same_origin(req.headers(), &app.site)
    {
        return PageError(DashboardError::Forbidden(reason)).into_response();
    }
    next.run(req).await
}

/// Let through only requests of a logged-in browser, and state changes only
/// with the session's CSRF token from the dashboard's own origin. The
/// session is handed to the handler as a request extension.
pub async fn require_session(State(app): State<App>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let refuse = |e: DashboardError| {
        if api {
            ApiError(e).into_response()
        } else {
            PageError(e).into_response()
        }
    };
    let session = match session_cookie(req.headers(), app.site.cookie_name()) {
        Some(cookie) => match app.dashboard.session(&cookie).await {
            Ok(session) => session,
            Err(e) => return refuse(e),
        },
        None => None,
    };
    let Some(session) = session else {
        if api {
            return refuse(DashboardError::NotLoggedIn);
        }
        return login::login_needed(&req);
    };
    let mut req = if changes_state(req.method()) {
        if let Err(reason) = same_origin(req.headers(), &app.site) {
            return refuse(DashboardError::Forbidden(reason));
        }
        match with_csrf_checked(req, &session).await {
            Ok(req) => req,
            Err(e) => return refuse(e),
        }
    } else {
        req
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Read the body (bounded), find the CSRF token in the header or the form,
/// check it, and put the body back.
async fn with_csrf_checked(
    req: Request,
    session: &AdminSession,
) -> Result<Request, DashboardError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| DashboardError::BadRequest("the request body is too large".into()))?;
    let from_header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let token = from_header.or_else(|| {
        is_form
            .then(|| {
                url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.into_owned())
            })
            .flatten()
    });
    match token {
        Some(t) if session.csrf_matches(&t) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Some(_) => Err(DashboardError::Forbidden("wrong CSRF token")),
        None => Err(DashboardError::Forbidden("missing CSRF token")),
    }
}

/// Whether a method changes state (everything but GET, HEAD, OPTIONS).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The browser's word on where a request comes from: `Sec-Fetch-Site` must
/// be `same-origin` and `Origin` one of ours, when they are sent. (Clients
/// that send neither are not browsers acting for a page; they still need
/// the cookie and the CSRF token.)
pub fn same_origin(headers: &HeaderMap, site: &Site) -> Result<(), &'static str> {
    if let Some(fetch_site) = headers.get("sec-fetch-site")
        && fetch_site.as_bytes() != b"same-origin"
    {
        return Err("cross-site request");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ours = origin.to_str().is_ok_and(|o| site.allows_origin(o));
        if !ours {
            return Err("request from another origin");
        }
    }
    Ok(())
}

/// Headers on every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let fixed: [(&str, &str); 7] = [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // Referrers stay on this site (approval links never leak out), yet
        // our own form posts keep their Origin (`no-referrer` makes it `null`).
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ];
    // A public, cross-origin document (nostr.json) sets its own resource
    // policy; everything else stays same-origin.
    let public = headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    for (name, value) in fixed {
        if public && name == "cross-origin-resource-policy" {
            continue;
        }
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Anything else.
pub async fn not_found() -> Response {
    let body = "<section class=\"card\"><h1>Not found</h1><p><a href=\"/\">Pending requests</a></p></section>";
    (StatusCode::NOT_FOUND, html::bare_page("Not found", body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::set_cookie;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_and_fetch_metadata() {
        let site = Site::new(
            "127.0.0.1:7448".parse().unwrap(),
            &["https://signer.example".into()],
        );
        assert!(same_origin(&headers(&[]), &site).is_ok());
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:7448")]), &site).is_ok());
        assert!(same_origin(&headers(&[("origin", "https://signer.example")]), &site).is_ok());
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:7449")]), &site).is_err());
        assert!(same_origin(&headers(&[("origin", "null")]), &site).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")]), &site).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), &site).is_ok());
        assert!(site.allows_host("LOCALHOST:7448"));
        assert!(site.allows_host("signer.example"));
        assert!(!site.allows_host("evil.example:7448"));
    }

    #[test]
    fn cookies_are_read_by_name() {
        let h = headers(&[("cookie", "a=1; rampart_session_7448=abc; b=2")]);
        assert_eq!(
            session_cookie(&h, "rampart_session_7448").as_deref(),
            Some("abc")
        );
        assert_eq!(session_cookie(&h, "rampart_session_7449"), None);
        let c = set_cookie("n", "v", 60);
        assert_eq!(
            c.to_str().unwrap(),
            "n=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
    }
}
