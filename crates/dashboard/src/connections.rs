//! Connections (sessions): who is connected, what each app may do, when it
//! was last used, and the two things a user does about it: change its rules
//! and revoke it.
//!
//! Edits go through [`bunker::admin`] on the store with a revision bump, the
//! same functions `rampart sessions` uses; the bunker applies them on its
//! next reload.
//!
//! Scoped: every role sees the sessions of its keys (another key's session
//! is not found); owners and approvers change them, auditors only read.
//! Changes are audited with who made them.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bunker::admin::{self, SessionEdit, SessionView};
use bunker::describe;
use nip46::Method;
use nip46::nostr::prelude::Timestamp;
use serde::Deserialize;
use store::{KeyId, RuleEffect};

use crate::app::App;
use crate::auth::{AdminSession, Viewer};
use crate::error::{ApiResult, DashboardError, PageResult};
use crate::html::{self, Section, esc};
use crate::state::Recorded;

/// A rule change as forms and the API send it.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleInput {
    /// `sign_event:1`, `nip44_encrypt`, …
    pub permission: String,
    /// `allow`, `deny`, or `remove` (ask again).
    pub effect: String,
    /// For how long (`1h`, `7days`); empty = until changed.
    #[serde(default, rename = "for")]
    pub duration: String,
}

/// Which session (forms).
#[derive(Debug, Clone, Deserialize)]
pub struct SessionRef {
    /// The key id.
    pub key_id: i64,
    /// The client pubkey (hex or npub).
    pub client: String,
}

/// `?all=true` lists revoked sessions too (API).
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Include revoked sessions.
    #[serde(default)]
    pub all: bool,
}

const NO_SESSION: &str = "There is no such connection.";

/// Every session of `viewer`'s keys (active first), as views.
pub async fn sessions(
    app: &App,
    viewer: &Viewer,
    all: bool,
) -> Result<Vec<SessionView>, DashboardError> {
    let viewer = viewer.clone();
    app.dashboard
        .with_store(move |store| {
            let now = Timestamp::now();
            let keys = store.keys().map_err(admin::AdminError::from)?;
            let mut views: Vec<SessionView> = store
                .sessions()
                .map_err(admin::AdminError::from)?
                .iter()
                .filter(|s| all || s.is_active(now))
                .filter(|s| viewer.covers(s.key_id))
                .map(|s| SessionView::new(s, &keys, now))
                .collect();
            views.sort_by(|a, b| {
                b.active.cmp(&a.active).then(
                    b.last_used_at
                        .unwrap_or(b.created_at)
                        .cmp(&a.last_used_at.unwrap_or(a.created_at)),
                )
            });
            Ok(views)
        })
        .await
}

/// One session of `viewer`'s keys, as a view.
pub async fn session(
    app: &App,
    viewer: &Viewer,
    key_id: i64,
    client: &str,
) -> Result<SessionView, DashboardError> {
    if !viewer.covers(KeyId(key_id)) {
        return Err(DashboardError::NotFound(NO_SESSION.into()));
    }
    let client = admin::parse_pubkey(client)?;
    app.dashboard
        .with_store(move |store| {
            let keys = store.keys().map_err(admin::AdminError::from)?;
            let session = admin::session(store, KeyId(key_id), &client)?;
            Ok(SessionView::new(&session, &keys, Timestamp::now()))
        })
        .await
}

/// Revoke a session.
pub async fn revoke(
    app: &App,
    viewer: &Viewer,
    key_id: i64,
    client: &str,
) -> Result<(), DashboardError> {
    viewer.must_manage(KeyId(key_id), NO_SESSION)?;
    let client = admin::parse_pubkey(client)?;
    app.dashboard
        .with_store(move |store| {
            Ok(admin::revoke_session(
                store,
                KeyId(key_id),
                &client,
                Timestamp::now(),
            )?)
        })
        .await?;
    tracing::info!(client = %client, by = viewer.name(), "session revoked in the dashboard");
    let recorded = Recorded {
        method: "session.revoke",
        key_id: KeyId(key_id),
        client: Some(client),
        detail: String::new(),
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(())
}

/// Add, change or remove a rule of a session.
pub async fn apply_rule(
    app: &App,
    viewer: &Viewer,
    key_id: i64,
    client: &str,
    input: &RuleInput,
) -> Result<SessionView, DashboardError> {
    viewer.must_manage(KeyId(key_id), NO_SESSION)?;
    let client = admin::parse_pubkey(client)?;
    let now = Timestamp::now();
    let duration = parse_duration(&input.duration)?;
    let edit = match input.effect.trim() {
        "allow" => SessionEdit::SetRule(admin::parse_rule(
            &input.permission,
            RuleEffect::Allow,
            duration,
            now,
        )?),
        "deny" => SessionEdit::SetRule(admin::parse_rule(
            &input.permission,
            RuleEffect::Deny,
            duration,
            now,
        )?),
        "remove" => SessionEdit::RemoveRule(
            admin::parse_rule(&input.permission, RuleEffect::Allow, None, now)?.permission,
        ),
        _ => {
            return Err(DashboardError::BadRequest(
                "effect must be allow, deny or remove".into(),
            ));
        }
    };
    let view = app
        .dashboard
        .with_store(move |store| {
            let keys = store.keys().map_err(admin::AdminError::from)?;
            let session = admin::edit_session(store, KeyId(key_id), &client, edit, now)?;
            Ok(SessionView::new(&session, &keys, now))
        })
        .await?;
    tracing::info!(client = %view.client, permission = %input.permission.trim(), effect = %input.effect.trim(), by = viewer.name(), "session rule changed in the dashboard");
    let recorded = Recorded {
        method: "session.rules",
        key_id: KeyId(key_id),
        client: Some(client),
        detail: format!(
            "{} {} {}",
            input.effect.trim(),
            input.permission.trim(),
            input.duration.trim()
        ),
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(view)
}

/// `GET /connections`.
pub async fn list_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
) -> PageResult<Html<String>> {
    let views = sessions(&app, session.viewer(), true).await?;
    let now = Timestamp::now().as_secs();
    let (active, ended): (Vec<&SessionView>, Vec<&SessionView>) =
        views.iter().partition(|v| v.active);
    let mut body = String::from("<h1>Connections</h1>");
    if active.is_empty() {
        body.push_str(
            "<section class=\"card empty\"><p><b>No app is connected.</b></p><p class=\"muted\">\
             <a href=\"/pair\">Connect an app</a> with a bunker:// link or its nostrconnect:// link.</p></section>",
        );
    } else {
        body.push_str("<section class=\"card flush\"><table class=\"list\"><thead><tr><th>App</th><th>Permissions</th>\
                       <th>Last used</th><th class=\"num\">Requests</th><th></th></tr></thead><tbody>");
        for v in &active {
            let manages = session.viewer().manages(KeyId(v.key_id));
            body.push_str(&row(v, session.csrf(), now, manages));
        }
        body.push_str("</tbody></table></section>");
    }
    if !ended.is_empty() {
        body.push_str(&format!(
            "<details class=\"card\"><summary>{} ended connection(s)</summary><table class=\"list\"><tbody>",
            ended.len()
        ));
        for v in &ended {
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"muted\">ended {}</td><td class=\"num\">{} requests</td></tr>",
                app_cell(v),
                v.revoked_at.map(html::time).unwrap_or_default(),
                v.requests
            ));
        }
        body.push_str("</tbody></table></details>");
    }
    Ok(html::page(
        "Connections",
        Section::Connections,
        &session,
        &body,
    ))
}

/// `POST /connections/revoke`.
pub async fn revoke_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Form(target): Form<SessionRef>,
) -> PageResult<Response> {
    revoke(&app, session.viewer(), target.key_id, &target.client).await?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        header::HeaderValue::from_static("/connections"),
    );
    Ok(response)
}

/// `GET /connections/{key_id}/{client}`.
pub async fn edit_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path((key_id, client)): Path<(i64, String)>,
) -> PageResult<Html<String>> {
    let view = self::session(&app, session.viewer(), key_id, &client).await?;
    Ok(edit(&view, &session, ""))
}

/// `POST /connections/{key_id}/{client}`: add, change or remove a rule.
pub async fn rule_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path((key_id, client)): Path<(i64, String)>,
    Form(input): Form<RuleInput>,
) -> PageResult<Html<String>> {
    match apply_rule(&app, session.viewer(), key_id, &client, &input).await {
        Ok(view) => {
            let permission = input.permission.trim();
            let done = match input.effect.trim() {
                "remove" => format!("Removed the rule for {permission}: the app will be asked."),
                "deny" => format!("Saved: {permission} is denied."),
                _ => format!("Saved: {permission} is allowed."),
            };
            Ok(edit(&view, &session, &html::notice("ok", &done)))
        }
        Err(
            e @ (DashboardError::BadRequest(_)
            | DashboardError::Admin(
                admin::AdminError::Invalid(_) | admin::AdminError::NotFound(_),
            )),
        ) => {
            let view = self::session(&app, session.viewer(), key_id, &client).await?;
            Ok(edit(
                &view,
                &session,
                &html::notice("error", &e.to_string()),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/sessions[?all=true]`.
pub async fn list_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Query(params): Query<ListParams>,
) -> ApiResult<Vec<SessionView>> {
    Ok(Json(sessions(&app, session.viewer(), params.all).await?))
}

/// `POST /api/sessions/{key_id}/{client}/revoke`.
pub async fn revoke_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path((key_id, client)): Path<(i64, String)>,
) -> ApiResult<serde_json::Value> {
    revoke(&app, session.viewer(), key_id, &client).await?;
    Ok(Json(serde_json::json!({ "revoked": true })))
}

/// `POST /api/sessions/{key_id}/{client}/rules` with `{"permission", "effect", "for"}`.
pub async fn rule_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path((key_id, client)): Path<(i64, String)>,
    Json(input): Json<RuleInput>,
) -> ApiResult<SessionView> {
    Ok(Json(
        apply_rule(&app, session.viewer(), key_id, &client, &input).await?,
    ))
}

fn parse_duration(text: &str) -> Result<Option<Duration>, DashboardError> {
    match text.trim() {
        "" => Ok(None),
        t => humantime::parse_duration(t).map(Some).map_err(|_| {
            DashboardError::BadRequest(format!("`{}` is not a duration", describe::clip(t, 40)))
        }),
    }
}

fn app_cell(v: &SessionView) -> String {
    let name = v
        .name
        .as_deref()
        .map(|n| describe::clip(n, 40))
        .unwrap_or_else(|| "(unnamed app)".into());
    let url = v
        .url
        .as_deref()
        .map(|u| {
            format!(
                "<div class=\"muted small mono\">{}</div>",
                esc(&describe::clip(u, 60))
            )
        })
        .unwrap_or_default();
    format!(
        "<div class=\"app-name\">{} <span class=\"hint\">unverified</span></div>{url}\
         <div class=\"muted small\"><span class=\"mono\" title=\"{}\">{}</span> · key <b>{}</b> · via {}</div>",
        esc(&name),
        esc(&v.client),
        esc(&html::short(&v.client_npub)),
        esc(&v.key),
        v.origin
    )
}

fn chips(v: &SessionView) -> String {
    let mut out = String::new();
    for rule in v.rules.iter().filter(|r| !r.expired) {
        let class = match rule.effect {
            RuleEffect::Allow => "chip allow",
            RuleEffect::Deny => "chip deny",
        };
        let until = rule
            .expires_at
            .map(|t| format!(" <small>until {}</small>", html::utc(t)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<span class=\"{class}\">{}{until}</span> ",
            esc(&rule.permission)
        ));
    }
    if out.is_empty() {
        "<span class=\"muted\">nothing (every request is asked)</span>".into()
    } else {
        out
    }
}

/// One active session; `manages`: with its Edit and Revoke buttons (an
/// auditor reads only).
fn row(v: &SessionView, csrf: &str, now: u64, manages: bool) -> String {
    let last = v
        .last_used_at
        .map(|t| html::ago(now, t))
        .unwrap_or_else(|| "never".into());
    let actions = if manages {
        format!(
            "<a class=\"btn small\" href=\"/connections/{key_id}/{client}\">Edit</a>\
             <form method=\"post\" action=\"/connections/revoke\" data-confirm=\"Revoke this app? It will have to connect again.\">\
             {csrf}<input type=\"hidden\" name=\"key_id\" value=\"{key_id}\"><input type=\"hidden\" name=\"client\" value=\"{client}\">\
             <button class=\"btn small deny-outline\">Revoke</button></form>",
            key_id = v.key_id,
            client = esc(&v.client),
            csrf = html::csrf_field(csrf),
        )
    } else {
        String::new()
    };
    format!(
        "<tr><td>{app}</td><td class=\"chips\">{chips}</td><td>{last}</td><td class=\"num\">{requests}</td>\
         <td class=\"actions\">{actions}</td></tr>",
        app = app_cell(v),
        chips = chips(v),
        requests = v.requests,
    )
}

fn edit(v: &SessionView, session: &AdminSession, notice: &str) -> Html<String> {
    let csrf = session.csrf();
    let now = Timestamp::now().as_secs();
    let action = format!("/connections/{}/{}", v.key_id, esc(&v.client));
    let mut rules = String::new();
    for rule in &v.rules {
        let (label, class) = match (rule.effect, rule.expired) {
            (_, true) => ("expired", "muted"),
            (RuleEffect::Allow, false) => ("allowed", "allow"),
            (RuleEffect::Deny, false) => ("denied", "deny"),
        };
        let until = rule
            .expires_at
            .map(html::time)
            .unwrap_or_else(|| "until changed".into());
        rules.push_str(&format!(
            "<tr><td><code>{perm}</code></td><td><span class=\"badge {class}\">{label}</span></td><td>{until}</td>\
             <td class=\"actions\"><form method=\"post\" action=\"{action}\">{csrf}\
             <input type=\"hidden\" name=\"permission\" value=\"{perm}\"><input type=\"hidden\" name=\"effect\" value=\"remove\">\
             <button class=\"btn small\">Remove</button></form></td></tr>",
            perm = esc(&rule.permission),
            csrf = html::csrf_field(csrf),
        ));
    }
    if rules.is_empty() {
        rules.push_str(
            "<tr><td colspan=\"4\" class=\"muted\">No rules: every request is asked.</td></tr>",
        );
    }
    let mut suggestions = String::new();
    for m in Method::ALL.iter().filter(|m| !m.is_session_control()) {
        suggestions.push_str(&format!("<option value=\"{}\">", m.as_str()));
    }
    for kind in [
        0u16, 1, 3, 4, 5, 6, 7, 14, 1059, 9734, 10002, 22242, 27235, 30023,
    ] {
        let name = describe::kind_name(kind).unwrap_or_default();
        suggestions.push_str(&format!(
            "<option value=\"sign_event:{kind}\">{}</option>",
            esc(name)
        ));
    }
    let requested = if v.requested.is_empty() {
        "nothing in particular".to_owned()
    } else {
        v.requested.clone()
    };
    let body = format!(
        "<p><a href=\"/connections\">← Connections</a></p>{notice}\
         <section class=\"card\">{app}\
         <dl class=\"facts\"><dt>Connected</dt><dd>{created}</dd><dt>Last used</dt><dd>{last}</dd>\
         <dt>Requests</dt><dd>{requests}</dd><dt>Asked for at connect</dt><dd><code>{requested}</code></dd></dl></section>\
         <section class=\"card\"><h2>Permissions</h2>\
         <table class=\"list rules\"><thead><tr><th>Permission</th><th></th><th>Until</th><th></th></tr></thead><tbody>{rules}</tbody></table>\
         <form method=\"post\" action=\"{action}\" class=\"inline-form\">{csrf}\
         <label>Permission <input name=\"permission\" list=\"permissions\" required placeholder=\"sign_event:1\"></label>\
         <label>Rule <select name=\"effect\"><option value=\"allow\">allow</option><option value=\"deny\">deny</option></select></label>\
         <label>How long <select name=\"for\">{durations}</select></label>\
         <button class=\"btn primary\">Save rule</button></form>\
         <datalist id=\"permissions\">{suggestions}</datalist>\
         <p class=\"muted small\">Deny rules win over allow rules. Requests no rule covers are held for you to answer.</p></section>\
         <section class=\"card\"><h2>Revoke</h2><p class=\"muted\">The app loses access and has to connect again with a new link.</p>\
         <form method=\"post\" action=\"/connections/revoke\" data-confirm=\"Revoke this app?\">{csrf}\
         <input type=\"hidden\" name=\"key_id\" value=\"{key_id}\"><input type=\"hidden\" name=\"client\" value=\"{client}\">\
         <button class=\"btn deny\">Revoke this connection</button></form></section>",
        app = app_cell(v),
        created = html::time(v.created_at),
        last = v
            .last_used_at
            .map(|t| html::ago(now, t))
            .unwrap_or_else(|| "never".into()),
        requests = v.requests,
        requested = esc(&requested),
        csrf = html::csrf_field(csrf),
        durations = html::options(&html::DURATIONS, ""),
        key_id = v.key_id,
        client = esc(&v.client),
    );
    let title = v.name.clone().unwrap_or_else(|| "Connection".into());
    html::page(&title, Section::Connections, session, &body)
}
