//! Logging in and out: the one-time login link, the "log in first" page, and
//! the session cookie.
//!
//! The link printed at start (`/login?token=…`) is redeemed once for a
//! session cookie, then the browser is sent on without the token in the
//! address bar. The "log in first" page is what anybody without a session
//! sees, an app holding an `auth_url` included: it shows nothing about the
//! request and offers no button that could approve it.

use axum::Extension;
use axum::Json;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::App;
use crate::auth::AdminSession;
use crate::error::{DashboardError, PageError};
use crate::html::{self, esc};
use crate::site::{self, session_cookie};
use crate::state::Recorded;
use store::KeyId;

/// `/login` parameters.
#[derive(Debug, Deserialize)]
pub struct LoginParams {
    /// The one-time token, or a whole login link pasted.
    #[serde(default)]
    token: String,
    /// Where to go afterwards (a path on this site).
    #[serde(default)]
    next: String,
}

/// `GET /login?token=…`: the link printed at start.
pub async fn login_link(State(app): State<App>, Query(params): Query<LoginParams>) -> Response {
    log_in(&app, &params).await
}

/// `POST /login`: the token pasted into the "log in first" page.
pub async fn login_form(State(app): State<App>, Form(params): Form<LoginParams>) -> Response {
    log_in(&app, &params).await
}

async fn log_in(app: &App, params: &LoginParams) -> Response {
    let token = token_from(&params.token);
    let redeemed = match app.dashboard.redeem_login(&token).await {
        Ok(redeemed) => redeemed,
        Err(e) => return PageError(e).into_response(),
    };
    let Some(user) = redeemed else {
        tracing::warn!("dashboard login refused: unknown or used login token");
        let body = format!(
            "<section class=\"card narrow\"><h1>That login link does not work</h1>\
             <p>Login links work once. Run <code>rampart dashboard login</code> for a fresh \
             one, or restart <code>rampart run</code>.</p>{}</section>",
            paste_form(&params.next)
        );
        return (StatusCode::UNAUTHORIZED, html::bare_page("Log in", &body)).into_response();
    };
    let (cookie, viewer) = match app.dashboard.open_session(user).await {
        Ok((cookie, Some(viewer))) => (cookie, viewer),
        // The operator was removed between the link and now.
        Ok((_, None)) => return PageError(DashboardError::NotLoggedIn).into_response(),
        Err(e) => return PageError(e).into_response(),
    };
    tracing::info!(who = viewer.name(), "dashboard login");
    let recorded = Recorded {
        method: "dashboard.login",
        key_id: KeyId(0),
        client: None,
        detail: viewer.role().as_str().to_owned(),
    };
    app.dashboard.audit(&viewer, recorded).await;
    let max_age = app.dashboard.config().session_ttl.as_secs();
    let mut response = redirect(safe_next(&params.next));
    response.headers_mut().insert(
        header::SET_COOKIE,
        site::set_cookie(app.site.cookie_name(), &cookie, max_age),
    );
    response
}

/// `POST /logout`.
pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session_cookie(&headers, app.site.cookie_name())
        && let Err(e) = app.dashboard.close_session(&cookie).await
    {
        tracing::warn!(error = %e, "could not end a dashboard session");
    }
    let mut response = (
        StatusCode::OK,
        html::bare_page(
            "Logged out",
            "<section class=\"card narrow\"><h1>Logged out</h1><p>Use a login link to come back \
             (<code>rampart dashboard login</code> prints one).</p></section>",
        ),
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        site::set_cookie(app.site.cookie_name(), "", 0),
    );
    response
}

/// `GET /api/csrf`: the session's CSRF token, for scripts using the API.
pub async fn csrf_api(Extension(session): Extension<AdminSession>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "csrf_token": session.csrf(), "header": site::CSRF_HEADER }))
}

/// What a browser without a session gets for a protected page.
///
/// A session cookie is `SameSite=Strict`, so when an app opens an
/// `auth_url` from its own site the browser leaves the cookie out. The
/// first time, the page therefore reloads itself from this origin (the
/// cookie is sent then); only if there is still no session does the user
/// see "log in first".
pub fn login_needed(req: &Request) -> Response {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let from_elsewhere = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site");
    let retried = query.split('&').any(|p| p == "retry=1");
    if req.method() == axum::http::Method::GET && from_elsewhere && !retried {
        let again = if query.is_empty() {
            format!("{path}?retry=1")
        } else {
            format!("{path}?{query}&retry=1")
        };
        let body = format!(
            "<section class=\"card narrow\"><p>Opening the dashboard…</p>\
             <p><a id=\"continue\" href=\"{url}\">Continue</a></p></section>",
            url = esc(&again)
        );
        let mut response = html::bare_page("Opening", &body).into_response();
        if let Ok(refresh) = header::HeaderValue::from_str(&format!("0; url={again}")) {
            response.headers_mut().insert(header::REFRESH, refresh);
        }
        return response;
    }
    // Back to the same page after login, query included (the pairing
    // page's `uri=` is the link to accept), minus the reload marker.
    let kept = query
        .strip_suffix("&retry=1")
        .or_else(|| query.strip_suffix("retry=1"))
        .unwrap_or(query);
    let next = if path.starts_with("/api/") {
        "/".to_owned()
    } else if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{kept}")
    };
    let what = if path.starts_with("/approve/") {
        "An app asked you to approve a request here. Only you can: log in to the Rampart \
         dashboard first, then this page shows the request."
    } else {
        "This is the Rampart dashboard. Log in to see and answer requests."
    };
    let body = format!(
        "<section class=\"card narrow\"><h1>Log in first</h1><p>{what}</p>\
         <p>Open the login link <code>rampart run</code> printed when it started \
         (<code>dashboard: http://…/login?token=…</code>), or print a new one with \
         <code>rampart dashboard login</code>. Or paste it here:</p>{form}</section>",
        form = paste_form(&next)
    );
    (StatusCode::UNAUTHORIZED, html::bare_page("Log in", &body)).into_response()
}

fn paste_form(next: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Login link or token <input name=\"token\" autocomplete=\"off\" required \
         placeholder=\"http://127.0.0.1:7448/login?token=…\"></label>\
         <button class=\"btn primary\">Log in</button></form>",
        next = esc(&safe_next(next))
    )
}

/// The token, from a bare token or a pasted login link.
fn token_from(text: &str) -> String {
    let text = text.trim();
    if let Some((_, query)) = text.split_once('?') {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == "token" {
                return v.trim().to_owned();
            }
        }
    }
    text.to_owned()
}

/// A path on this site to continue to; anything else becomes `/`.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if ok { next.to_owned() } else { "/".to_owned() }
}

fn redirect(to: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match header::HeaderValue::from_str(&to) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            response
                .headers_mut()
                .insert(header::LOCATION, header::HeaderValue::from_static("/"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/approve/ab"), "/approve/ab");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next(""), "/");
    }

    #[test]
    fn tokens_are_read_from_links() {
        assert_eq!(token_from(" abc "), "abc");
        assert_eq!(
            token_from("http://127.0.0.1:7448/login?token=abc&next=/"),
            "abc"
        );
    }
}
