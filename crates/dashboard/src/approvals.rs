//! Pending requests: the list, the single-request page that `auth_url`
//! challenges point at, and the decision (form and JSON).
//!
//! The list comes from the engine itself, so it is exactly what is waiting;
//! a decision goes back to the engine, which answers the client at once
//! with the original request id. A request that is no longer waiting is
//! looked up in the store to say what became of it.
//!
//! Scoped to who is logged in: an approver sees and answers only its keys'
//! requests (another key's is "no such request", 404), an auditor answers
//! none (403). A request whose kind needs a quorum shows who allowed it so
//! far, and an allow short of the quorum is recorded, not yet sent.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bunker::admin::{self, Answer, ApprovalView};
use bunker::describe;
use nip46::nostr::prelude::Timestamp;
use serde::{Deserialize, Serialize};
use store::{
    ApprovalId, ApprovalStatus, DecisionScope, PendingApproval, RequestSummary, StoredKey, Vote,
};

use crate::app::App;
use crate::auth::{AdminSession, Viewer};
use crate::error::{ApiResult, DashboardError, PageResult};
use crate::html::{self, Section, esc};
use crate::state::{Counted, Recorded};

/// A decision as forms and the API send it.
#[derive(Debug, Clone, Deserialize)]
pub struct DecisionInput {
    /// `allow_once`, `allow_always`, `deny_once` or `deny_always`.
    pub answer: String,
    /// With an "always" answer: for how long (`1h`, `7days`); empty = until changed.
    #[serde(default, rename = "for")]
    pub duration: String,
    /// `list`: go back to the pending list afterwards (forms only).
    #[serde(default)]
    pub back: String,
}

impl DecisionInput {
    fn parse(&self) -> Result<(Answer, Option<Duration>), DashboardError> {
        let answer = Answer::parse(self.answer.trim()).ok_or_else(|| {
            DashboardError::BadRequest(
                "answer must be allow_once, allow_always, deny_once or deny_always".into(),
            )
        })?;
        let duration = match self.duration.trim() {
            "" => None,
            text => Some(humantime::parse_duration(text).map_err(|_| {
                DashboardError::BadRequest(format!(
                    "`{}` is not a duration",
                    describe::clip(text, 40)
                ))
            })?),
        };
        Ok((answer, duration.filter(|_| answer.is_always())))
    }
}

/// What a decision did (the API's answer).
#[derive(Debug, Serialize)]
pub struct Decided {
    /// The approval id.
    pub id: String,
    /// The answer applied.
    pub answer: &'static str,
    /// With "always": the rule's end (unix seconds), if any.
    pub until: Option<u64>,
    /// Whether the app has its answer (`false`: the request waits for more
    /// allows, or another replica holds it and answers within a second).
    pub settled: bool,
    /// Distinct people who allowed it so far, when it still waits here.
    pub allowed: Option<u32>,
    /// How many must, when it still waits here.
    pub needed: Option<u32>,
}

/// Apply a decision to a held request: the one implementation behind the
/// form, the API (and, through the same engine call, the terminal prompt).
/// Only a request `viewer` may answer is found.
pub async fn decide(
    app: &App,
    viewer: &Viewer,
    id: &str,
    input: &DecisionInput,
) -> Result<Decided, DashboardError> {
    let id = approval_id(id)?;
    let (answer, duration) = input.parse()?;
    let (pending, _) = pending_for(app, viewer).await?;
    let Some(approval) = pending.iter().find(|a| a.id == id) else {
        // Answered or expired already (a conflict), or not the viewer's to
        // see at all (not found, as if it did not exist).
        let wanted = id.clone();
        let who = viewer.clone();
        let known = app
            .dashboard
            .with_store(move |store| {
                Ok(store
                    .approvals()
                    .map_err(admin::AdminError::from)?
                    .iter()
                    .any(|a| a.id == wanted && who.manages(a.key_id)))
            })
            .await?;
        if known {
            return Err(bunker::engine::DecideError::NotPending(id.0).into());
        }
        return Err(DashboardError::NotFound("There is no such request.".into()));
    };
    let (key_id, client) = (approval.key_id, approval.client);
    let until = admin::until(Timestamp::now(), duration);
    let decision = answer.decision(until);
    let vote = Vote {
        by: viewer.name().to_owned(),
        decision,
    };
    let counted = app.dashboard.decide(id.clone(), vote).await?;
    tracing::info!(approval = %id, answer = answer.as_str(), by = viewer.name(), "decided in the dashboard");
    // A settled request's audit row names who decided; an allow that did
    // not settle it gets a row of its own (the request may yet expire).
    if counted != Counted::Settled {
        let recorded = Recorded {
            method: "approval.vote",
            key_id,
            client: Some(client),
            detail: format!("{} {}", answer.as_str(), id),
        };
        app.dashboard.audit(viewer, recorded).await;
    }
    let until = match decision.scope {
        DecisionScope::Always { until } => until.map(|t| t.as_secs()),
        DecisionScope::Once => None,
    };
    let (allowed, needed) = match counted {
        Counted::Waiting { allowed, needed } => (Some(allowed), Some(needed)),
        _ => (None, None),
    };
    Ok(Decided {
        id: id.0,
        answer: answer.as_str(),
        until,
        settled: counted == Counted::Settled,
        allowed,
        needed,
    })
}

/// `GET /`: every pending request `viewer` may answer, with its buttons
/// (an auditor, who answers none, is sent to the audit log).
pub async fn pending_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
) -> PageResult<Response> {
    if !session.viewer().decides() {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(header::LOCATION, header::HeaderValue::from_static("/audit"));
        return Ok(response);
    }
    let (pending, keys) = pending_for(&app, session.viewer()).await?;
    let sensitive = &app.dashboard.config().sensitive_kinds;
    let ids: Vec<&str> = pending.iter().map(|a| a.id.0.as_str()).collect();
    let mut body = format!(
        "<div data-live-pending=\"{}\"></div><h1>Pending requests</h1>",
        esc(&sorted(&ids))
    );
    if pending.is_empty() {
        body.push_str(&format!(
            "<section class=\"card empty\"><p><b>Nothing is waiting.</b></p><p class=\"muted\">When \
             an app asks for something no rule covers, it shows up here (this page refreshes by \
             itself) and in the terminal running <code>rampart run</code>. Unanswered requests \
             are refused after {} s.</p></section>",
            app.dashboard.config().approval_timeout_secs
        ));
    }
    for approval in &pending {
        body.push_str(&card(
            &ApprovalView::new(approval, &keys, sensitive),
            session.csrf(),
            true,
        ));
    }
    Ok(html::page("Pending requests", Section::Pending, &session, &body).into_response())
}

/// `GET /approve/{id}`: one request (the `auth_url` target).
pub async fn approve_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let id = approval_id(&id)?;
    let (pending, keys) = pending_for(&app, session.viewer()).await?;
    let sensitive = &app.dashboard.config().sensitive_kinds;
    if let Some(approval) = pending.iter().find(|a| a.id == id) {
        let body = format!(
            "<div data-live-approval=\"{id}\"></div><h1>Approve a request</h1>{}",
            card(
                &ApprovalView::new(approval, &keys, sensitive),
                session.csrf(),
                false
            )
        );
        return Ok(html::page("Approve", Section::Pending, &session, &body).into_response());
    }
    Ok(settled_page(&app, &session, &id).await?)
}

/// `POST /approve/{id}`: the decision form.
pub async fn decide_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<String>,
    Form(input): Form<DecisionInput>,
) -> PageResult<Response> {
    let approval_id = approval_id(&id)?;
    let (pending, keys) = pending_for(&app, session.viewer()).await?;
    let sensitive = &app.dashboard.config().sensitive_kinds;
    let Some(view) = pending
        .iter()
        .find(|a| a.id == approval_id)
        .map(|a| ApprovalView::new(a, &keys, sensitive))
    else {
        return Ok(settled_page(&app, &session, &approval_id).await?);
    };
    let decided = decide(&app, session.viewer(), &id, &input).await?;
    if input.back == "list" {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(header::LOCATION, header::HeaderValue::from_static("/"));
        return Ok(response);
    }
    let Some(answer) = Answer::parse(decided.answer) else {
        return Err(DashboardError::Internal("unknown answer".into()).into());
    };
    if !decided.settled {
        let (title, text) = match (decided.allowed, decided.needed) {
            (Some(allowed), Some(needed)) => (
                "Allow recorded",
                format!(
                    "This request needs {needed} people to allow it; {allowed} have. It is sent \
                     once enough have, and refused if anyone denies it."
                ),
            ),
            _ => (
                "Decision recorded",
                "Another Rampart replica holds this request; it applies your answer within a \
                 second."
                    .to_owned(),
            ),
        };
        let body = format!(
            "<section class=\"card result\" id=\"vote-recorded\"><h1>{title}</h1><p>{}</p>\
             <p><a href=\"/\">Back to pending requests</a></p></section>",
            esc(&text)
        );
        return Ok(html::page(title, Section::Pending, &session, &body).into_response());
    }
    let class = if answer.allows() { "allowed" } else { "denied" };
    let title = match answer {
        Answer::AllowOnce => "Allowed once",
        Answer::AllowAlways => "Allowed, and remembered",
        Answer::DenyOnce => "Denied",
        Answer::DenyAlways => "Denied, and remembered",
    };
    let sent = if answer.allows() {
        format!(
            "{} has been sent the answer to its <code>{}</code> request.",
            esc(&view.app),
            esc(&view.method)
        )
    } else {
        format!(
            "{} has been told <code>unauthorized</code>.",
            esc(&view.app)
        )
    };
    let remembered = if answer.is_always() {
        let verb = if answer.allows() { "allowed" } else { "denied" };
        let until = decided
            .until
            .map(|t| format!(" until {}", html::time(t)))
            .unwrap_or_default();
        format!(
            "<p>From now on <code>{}</code> is {verb} for this app{until}, without asking. \
             Change it under <a href=\"/connections\">Connections</a>.</p>",
            esc(&view.permission)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<section class=\"card result {class}\"><h1>{title}</h1><p>{sent}</p>{remembered}\
         <p><a href=\"/\">Back to pending requests</a></p></section>"
    );
    Ok(html::page(title, Section::Pending, &session, &body).into_response())
}

/// `GET /api/pending`: the requests the session may answer.
pub async fn pending_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
) -> ApiResult<Vec<ApprovalView>> {
    let (pending, keys) = pending_for(&app, session.viewer()).await?;
    let sensitive = &app.dashboard.config().sensitive_kinds;
    Ok(Json(
        pending
            .iter()
            .map(|a| ApprovalView::new(a, &keys, sensitive))
            .collect(),
    ))
}

/// `POST /api/approvals/{id}` with `{"answer": "allow_once", "for": "1h"}`.
pub async fn decide_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<String>,
    Json(input): Json<DecisionInput>,
) -> ApiResult<Decided> {
    Ok(Json(decide(&app, session.viewer(), &id, &input).await?))
}

/// The pending requests `viewer` may answer (its keys'), with every key;
/// a role that answers none is refused.
async fn pending_for(
    app: &App,
    viewer: &Viewer,
) -> Result<(Vec<PendingApproval>, Vec<StoredKey>), DashboardError> {
    if !viewer.decides() {
        return Err(DashboardError::Forbidden(
            "an auditor reads the audit log and sessions; it answers no requests",
        ));
    }
    let (mut pending, keys) = pending_with_keys(app).await?;
    pending.retain(|a| viewer.manages(a.key_id));
    Ok((pending, keys))
}

async fn pending_with_keys(
    app: &App,
) -> Result<(Vec<PendingApproval>, Vec<StoredKey>), DashboardError> {
    let pending = app.dashboard.pending().await?;
    let keys = app
        .dashboard
        .with_store(|store| Ok(store.keys().map_err(admin::AdminError::from)?))
        .await?;
    Ok((pending, keys))
}

/// What became of a request that is no longer waiting.
async fn settled_page(
    app: &App,
    session: &AdminSession,
    id: &ApprovalId,
) -> Result<Response, DashboardError> {
    let wanted = id.clone();
    let record = app
        .dashboard
        .with_store(move |store| {
            Ok(store
                .approvals()
                .map_err(admin::AdminError::from)?
                .into_iter()
                .find(|a| a.id == wanted))
        })
        .await?;
    let Some(record) = record.filter(|r| session.viewer().manages(r.key_id)) else {
        return Err(DashboardError::NotFound("There is no such request.".into()));
    };
    let (title, text) = match record.status {
        ApprovalStatus::Done(d) if d.allow => (
            "Already allowed",
            "This request was allowed, and the app has its answer.",
        ),
        ApprovalStatus::Done(_) => (
            "Already denied",
            "This request was denied; the app was told unauthorized.",
        ),
        ApprovalStatus::Decided(_) => (
            "Being answered",
            "A decision was made; the bunker is applying it.",
        ),
        ApprovalStatus::Expired | ApprovalStatus::Pending => (
            "Expired",
            "Nobody answered this request in time (or the bunker restarted), so the app was told unauthorized. If it asks again, the new request shows up under Pending.",
        ),
    };
    let body = format!(
        "<section class=\"card result\"><h1>{title}</h1><p>{}</p><p class=\"muted\">{}</p>\
         <p><a href=\"/\">Pending requests</a></p></section>",
        esc(text),
        esc(&describe::one_line(&record))
    );
    Ok(html::page(title, Section::Pending, session, &body).into_response())
}

/// One request with its answer buttons. `in_list`: answering returns to the list.
pub fn card(view: &ApprovalView, csrf: &str, in_list: bool) -> String {
    let now = Timestamp::now().as_secs();
    let left = view.expires_at.saturating_sub(now);
    let url = view
        .app_url
        .as_deref()
        .map(|u| {
            format!(
                "<div class=\"muted small\">claims to be <span class=\"mono\">{}</span></div>",
                esc(&describe::clip(u, 120))
            )
        })
        .unwrap_or_default();
    let image = view
        .app_image
        .as_deref()
        .map(|u| {
            format!(
                "<div class=\"muted small\">image {} (not loaded)</div>",
                esc(&describe::clip(u, 120))
            )
        })
        .unwrap_or_default();
    let back = if in_list {
        "<input type=\"hidden\" name=\"back\" value=\"list\">"
    } else {
        ""
    };
    let remember = match (view.kind, view.kind_name) {
        (Some(k), Some(name)) => format!(
            "<code>{}</code> ({})",
            esc(&view.permission),
            esc(&format!("{name}, kind {k}"))
        ),
        _ => format!("<code>{}</code>", esc(&view.permission)),
    };
    format!(
        "<article class=\"card request\" id=\"request-{id}\">\
         <header class=\"request-head\"><div>\
         <div class=\"app\">{app} <span class=\"hint\" title=\"Apps name themselves; Rampart cannot check this\">unverified</span></div>\
         {url}{image}\
         <div class=\"muted small\">app key <span class=\"mono\" title=\"{client}\">{npub}</span> · your key <b>{key}</b></div>\
         </div><div class=\"expires\" data-expires=\"{expires}\">expires in {left} s</div></header>\
         {details}{quorum}\
         <form method=\"post\" action=\"/approve/{id}\" class=\"decide\">{csrf}{back}\
         <div class=\"buttons\">\
         <button class=\"btn allow\" name=\"answer\" value=\"allow_once\">Allow once</button>\
         <button class=\"btn deny\" name=\"answer\" value=\"deny_once\">Deny</button></div>\
         <div class=\"remember\"><div>Or decide once and for all: {remember} for this app</div>\
         <div class=\"remember-row\">\
         <button class=\"btn allow-outline\" name=\"answer\" value=\"allow_always\">Always allow</button>\
         <button class=\"btn deny-outline\" name=\"answer\" value=\"deny_always\">Always deny</button>\
         <select name=\"for\" aria-label=\"for how long\">{durations}</select></div></div>\
         </form></article>",
        id = esc(&view.id),
        app = esc(&view.app),
        client = esc(&view.client),
        npub = esc(&html::short(&view.client_npub)),
        key = esc(&view.key),
        expires = view.expires_at,
        details = details(view),
        quorum = quorum(view),
        csrf = html::csrf_field(csrf),
        durations = html::options(&html::DURATIONS, ""),
    )
}

/// For a request needing several people: how many, and who allowed so far.
fn quorum(view: &ApprovalView) -> String {
    if view.allows_needed <= 1 && view.allowed_by.is_empty() {
        return String::new();
    }
    let so_far = if view.allowed_by.is_empty() {
        "nobody yet".to_owned()
    } else {
        view.allowed_by
            .iter()
            .map(|n| esc(n).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<div class=\"warning quorum\">Needs <b>{needed}</b> different people to allow it \
         (one deny refuses it). Allowed so far by: <span class=\"allowed-by\">{so_far}</span> \
         ({count} of {needed}).</div>",
        needed = view.allows_needed,
        count = view.allowed_by.len(),
    )
}

/// What the request asks, readably: a summary (what it shortens it says),
/// and for `sign_event` the complete event exactly as it is signed.
fn details(view: &ApprovalView) -> String {
    match &view.details {
        RequestSummary::SignEvent {
            kind,
            content,
            content_hidden,
            tags,
            tags_hidden,
            created_at,
        } => {
            let name = describe::kind_name(*kind).unwrap_or("event");
            let warning = describe::kind_warning(*kind)
                .map(|w| format!("<div class=\"warning\">{}</div>", esc(w)))
                .unwrap_or_default();
            let content = if content.is_empty() {
                "<p class=\"muted\">(empty content)</p>".to_owned()
            } else {
                format!(
                    "<pre class=\"content\">{}</pre>{}",
                    esc(content),
                    hidden_note(*content_hidden, "more characters of content")
                )
            };
            let tags = if tags.is_empty() {
                "<p class=\"muted small\">No tags.</p>".to_owned()
            } else {
                let rows: String = tags
                    .iter()
                    .map(|tag| {
                        let (name, values) = tag
                            .split_first()
                            .map_or(("", &[][..]), |(n, v)| (n.as_str(), v));
                        let values: Vec<String> =
                            values.iter().map(|v| esc(v).to_string()).collect();
                        format!(
                            "<tr><th><code>{}</code></th><td class=\"mono\">{}</td></tr>",
                            esc(name),
                            values.join("<br>")
                        )
                    })
                    .collect();
                format!(
                    "<table class=\"tags\"><caption>Tags</caption>{rows}</table>{}",
                    hidden_note(*tags_hidden, "more tags")
                )
            };
            let when = created_at
                .map(|t| format!("<p class=\"muted small\">Dated {}</p>", html::time(t)))
                .unwrap_or_default();
            format!(
                "<p class=\"ask\">wants you to <b>sign</b> a <b>{}</b> <span class=\"muted\">(kind {kind})</span></p>{warning}\
                 <div class=\"event\">{content}{tags}{when}</div>{full}",
                esc(name),
                full = complete_event(view)
            )
        }
        RequestSummary::Encrypt {
            peer,
            plaintext,
            plaintext_hidden,
        } => format!(
            "<p class=\"ask\">wants you to <b>encrypt</b> a message to <span class=\"mono\">{}</span> <span class=\"muted\">({})</span></p>\
             <div class=\"event\"><pre class=\"content\">{}</pre>{}</div>",
            esc(&html::short(&peer.to_hex())),
            esc(&view.method),
            esc(plaintext),
            hidden_note(*plaintext_hidden, "more characters")
        ),
        RequestSummary::Decrypt {
            peer,
            ciphertext_len,
        } => format!(
            "<p class=\"ask\">wants you to <b>decrypt</b> {ciphertext_len} bytes from <span class=\"mono\">{}</span> <span class=\"muted\">({})</span></p>\
             <div class=\"warning\">The app will read the decrypted message.</div>",
            esc(&html::short(&peer.to_hex())),
            esc(&view.method)
        ),
        RequestSummary::Other => format!(
            "<p class=\"ask\">wants to call <code>{}</code></p>",
            esc(&view.method)
        ),
    }
}

/// "…and N more" when a summary left something out.
fn hidden_note(hidden: u64, what: &str) -> String {
    if hidden == 0 {
        return String::new();
    }
    format!(
        "<p class=\"muted small hidden-note\">…and {hidden} {what}, shown in the complete event below.</p>"
    )
}

/// The complete event that is signed if allowed: every tag, all the content,
/// the id; open at once when it is small.
fn complete_event(view: &ApprovalView) -> String {
    let (Some(event), Some(json)) = (&view.event, &view.event_json) else {
        return String::new();
    };
    let pretty = serde_json::to_string_pretty(event).unwrap_or_else(|_| json.clone());
    let open = if json.len() <= 4096 { " open" } else { "" };
    let id = event.id.map(|id| id.to_hex()).unwrap_or_default();
    format!(
        "<details class=\"complete-event\"{open}><summary>Complete event: {} bytes, {} tags, id <span class=\"mono\">{}</span></summary>\
         <pre class=\"content event-json\">{}</pre></details>",
        json.len(),
        event.tags.len(),
        esc(&id),
        esc(&pretty)
    )
}

/// Only ids the engine could have made (32 hex digits) reach the engine or a page.
fn approval_id(text: &str) -> Result<ApprovalId, DashboardError> {
    let ok = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(ApprovalId(text.to_ascii_lowercase()))
    } else {
        Err(DashboardError::NotFound("There is no such request.".into()))
    }
}

fn sorted(ids: &[&str]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.join(",")
}
