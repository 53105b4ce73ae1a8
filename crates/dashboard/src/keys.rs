//! Keys and the kill switch: which keys the bunker serves, which are
//! locked, and the buttons that lock and unlock them.
//!
//! A lock goes through [`bunker::admin::set_lock`] on the store, as
//! `rampart lock` does: every bunker on the store refuses the key's requests
//! from its next reload (within a second), and its held requests at once.
//!
//! The page also sets each key's quorum: how many different people must
//! allow a request for one of its sensitive kinds. Owners only; every change
//! is audited with who made it.

use axum::Extension;
use axum::Json;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bunker::admin;
use nip46::nostr::prelude::Timestamp;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::auth::{AdminSession, Viewer};
use crate::error::{ApiResult, DashboardError, PageResult};
use crate::html::{self, Section, esc};
use crate::state::Recorded;

/// A key as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// Its name.
    pub name: String,
    /// The user's npub.
    pub npub: String,
    /// Since when it is locked (unix seconds), if it is.
    pub locked_at: Option<u64>,
    /// The kinds it always asks to sign, whatever an app was granted.
    pub sensitive_kinds: Vec<u16>,
    /// Whether those are its own (`rampart policy sensitive`) or the default.
    pub sensitive_own: bool,
    /// How many different people must allow a request for one of them.
    pub quorum: u32,
}

/// A quorum change, as forms and the API send it.
#[derive(Debug, Clone, Deserialize)]
pub struct QuorumInput {
    /// The key's name; absent or empty: every key.
    #[serde(default)]
    pub key: Option<String>,
    /// At least 1.
    pub quorum: u32,
}

/// A lock or unlock, as forms and the API send it.
#[derive(Debug, Clone, Deserialize)]
pub struct LockInput {
    /// The key's name; absent or empty: every key.
    #[serde(default)]
    pub key: Option<String>,
    /// Lock (`true`) or unlock.
    pub locked: bool,
}

/// Refuse anyone but an owner.
fn must_own(viewer: &Viewer) -> Result<(), DashboardError> {
    if viewer.owns() {
        Ok(())
    } else {
        Err(DashboardError::Forbidden(
            "only an owner locks keys and sets their policy",
        ))
    }
}

/// Every key, oldest first.
pub async fn keys(app: &App) -> Result<Vec<KeyView>, DashboardError> {
    let default = app.dashboard.config().sensitive_kinds.clone();
    app.dashboard
        .with_store(move |store| {
            let keys = store.keys().map_err(admin::AdminError::from)?;
            Ok(keys
                .into_iter()
                .map(|k| KeyView {
                    npub: describe_npub(&k.user_pubkey),
                    sensitive_own: k.sensitive_kinds.is_some(),
                    sensitive_kinds: k.sensitive_kinds.unwrap_or_else(|| default.clone()),
                    name: k.name,
                    locked_at: k.locked_at.map(|t| t.as_secs()),
                    quorum: k.quorum,
                })
                .collect())
        })
        .await
}

fn key_name(key: &Option<String>) -> Option<String> {
    key.as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// Set a key's quorum (every key's without one); the names it applied to.
pub async fn set_quorum(
    app: &App,
    viewer: &Viewer,
    input: &QuorumInput,
) -> Result<Vec<String>, DashboardError> {
    must_own(viewer)?;
    let name = key_name(&input.key);
    let quorum = input.quorum;
    let applied = app
        .dashboard
        .with_store(move |store| Ok(admin::set_quorum(store, name.as_deref(), quorum)?))
        .await?;
    let names = applied.names.join(",");
    tracing::warn!(keys = %names, quorum, by = viewer.name(), "quorum set in the dashboard");
    let recorded = Recorded {
        method: "key.quorum",
        key_id: applied.key_id,
        client: None,
        detail: format!("{quorum} {names}"),
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(applied.names)
}

/// Lock or unlock; returns the names of the keys it applied to.
pub async fn set_lock(
    app: &App,
    viewer: &Viewer,
    input: &LockInput,
) -> Result<Vec<String>, DashboardError> {
    must_own(viewer)?;
    let name = key_name(&input.key);
    let locked = input.locked;
    let applied = app
        .dashboard
        .with_store(move |store| {
            Ok(admin::set_lock(
                store,
                name.as_deref(),
                locked,
                Timestamp::now(),
            )?)
        })
        .await?;
    let verb = if locked { "locked" } else { "unlocked" };
    let names = applied.names.join(",");
    tracing::warn!(keys = %names, by = viewer.name(), "keys {verb} in the dashboard");
    let recorded = Recorded {
        method: if locked { "key.lock" } else { "key.unlock" },
        key_id: applied.key_id,
        client: None,
        detail: names,
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(applied.names)
}

/// `GET /keys`.
pub async fn list_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
) -> PageResult<Html<String>> {
    must_own(session.viewer())?;
    let views = keys(&app).await?;
    Ok(page(&views, &session))
}

/// `POST /keys/lock` (form: `key`, `locked`).
pub async fn lock_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Form(input): Form<LockInput>,
) -> PageResult<Response> {
    set_lock(&app, session.viewer(), &input).await?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, header::HeaderValue::from_static("/keys"));
    Ok(response)
}

/// `POST /keys/quorum` (form: `key`, `quorum`).
pub async fn quorum_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Form(input): Form<QuorumInput>,
) -> PageResult<Response> {
    set_quorum(&app, session.viewer(), &input).await?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, header::HeaderValue::from_static("/keys"));
    Ok(response)
}

/// `GET /api/keys`.
pub async fn list_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
) -> ApiResult<Vec<KeyView>> {
    must_own(session.viewer())?;
    Ok(Json(keys(&app).await?))
}

/// `POST /api/keys/quorum` with `{"key": name or null, "quorum": n}`.
pub async fn quorum_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Json(input): Json<QuorumInput>,
) -> ApiResult<serde_json::Value> {
    let names = set_quorum(&app, session.viewer(), &input).await?;
    Ok(Json(
        serde_json::json!({ "keys": names, "quorum": input.quorum }),
    ))
}

/// `POST /api/keys/lock` with `{"key": name or null, "locked": bool}`.
pub async fn lock_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Json(input): Json<LockInput>,
) -> ApiResult<serde_json::Value> {
    let names = set_lock(&app, session.viewer(), &input).await?;
    Ok(Json(
        serde_json::json!({ "keys": names, "locked": input.locked }),
    ))
}

fn describe_npub(pubkey: &nip46::nostr::prelude::PublicKey) -> String {
    use nip46::nostr::prelude::ToBech32;
    pubkey.to_bech32().unwrap_or_else(|_| pubkey.to_hex())
}

fn page(views: &[KeyView], session: &AdminSession) -> Html<String> {
    let csrf = session.csrf();
    let field = html::csrf_field(csrf);
    let mut body = String::from("<h1>Keys</h1>");
    if views.is_empty() {
        body.push_str(
            "<section class=\"card empty\"><p><b>No keys yet.</b></p><p class=\"muted\">\
             Run <code>rampart key generate</code>.</p></section>",
        );
        return html::page("Keys", Section::Keys, session, &body);
    }
    body.push_str(&format!(
        "<section class=\"card\"><p class=\"muted\">A locked key refuses every request \
         (<code>unauthorized: key locked</code>) and the requests waiting for it, on every \
         bunker using this store, until it is unlocked.</p>\
         <form method=\"post\" action=\"/keys/lock\" data-confirm=\"Lock every key? Every app will be refused.\">\
         {field}<input type=\"hidden\" name=\"locked\" value=\"true\">\
         <button class=\"btn deny\" id=\"lock-all\">Lock every key</button></form></section>"
    ));
    body.push_str(
        "<section class=\"card flush\"><table class=\"list\"><thead><tr><th>Key</th>\
         <th>State</th><th>Always asks to sign</th><th>People who must allow those</th><th></th></tr></thead><tbody>",
    );
    for v in views {
        let (state, button) = match v.locked_at {
            Some(at) => (
                format!("<span class=\"chip deny\">locked {}</span>", html::time(at)),
                format!(
                    "<input type=\"hidden\" name=\"locked\" value=\"false\">\
                     <button class=\"btn small\" data-key=\"{name}\">Unlock</button>",
                    name = esc(&v.name)
                ),
            ),
            None => (
                "<span class=\"chip allow\">serving</span>".to_owned(),
                format!(
                    "<input type=\"hidden\" name=\"locked\" value=\"true\">\
                     <button class=\"btn small deny-outline\" data-key=\"{name}\">Lock</button>",
                    name = esc(&v.name)
                ),
            ),
        };
        body.push_str(&format!(
            "<tr class=\"key-row\" data-key=\"{name}\"><td><b>{name}</b>\
             <div class=\"muted small mono\">{npub}</div></td><td class=\"state\">{state}</td>\
             <td class=\"sensitive\">{sensitive}</td><td class=\"quorum\">\
             <form method=\"post\" action=\"/keys/quorum\" class=\"inline-form\">{field}\
             <input type=\"hidden\" name=\"key\" value=\"{name}\">\
             <input type=\"number\" name=\"quorum\" min=\"1\" max=\"99\" value=\"{quorum}\" aria-label=\"quorum\">\
             <button class=\"btn small\">Set</button></form></td><td class=\"actions\"><form method=\"post\" action=\"/keys/lock\">{field}\
             <input type=\"hidden\" name=\"key\" value=\"{name}\">{button}</form></td></tr>",
            name = esc(&v.name),
            npub = esc(&html::short(&v.npub)),
            sensitive = sensitive_cell(v),
            quorum = v.quorum,
        ));
    }
    body.push_str("</tbody></table></section>");
    html::page("Keys", Section::Keys, session, &body)
}

/// The kinds a key always asks for, by name where known, and whose list it is.
fn sensitive_cell(v: &KeyView) -> String {
    let whose = if v.sensitive_own {
        "its own"
    } else {
        "the default"
    };
    if v.sensitive_kinds.is_empty() {
        return format!("<span class=\"muted\">none ({whose})</span>");
    }
    let kinds: Vec<String> = v
        .sensitive_kinds
        .iter()
        .map(|k| match bunker::describe::kind_name(*k) {
            Some(name) => format!("{k} <span class=\"muted small\">{}</span>", esc(name)),
            None => k.to_string(),
        })
        .collect();
    format!(
        "{} <div class=\"muted small\">{whose}</div>",
        kinds.join(", ")
    )
}
