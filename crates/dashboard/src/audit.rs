//! The audit log: every request the bunker answered or refused, newest
//! first, filtered by time, key, app, method and decision.

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Html;
use bunker::admin::{self, AuditView};
use bunker::describe;
use nip46::Method;
use nip46::nostr::prelude::Timestamp;
use serde::Deserialize;
use store::{AuditDecision, AuditQuery};

use crate::app::App;
use crate::auth::{AdminSession, Viewer};
use crate::error::{ApiResult, DashboardError, PageResult};
use crate::html::{self, Section, esc};

/// Most rows one query returns.
const MAX_ROWS: u32 = 1000;

/// Filters (the page's form and the API's query string).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilter {
    /// Only rows newer than this (`1h`, `7days`); empty = all.
    #[serde(default)]
    pub since: String,
    /// Only this method.
    #[serde(default)]
    pub method: String,
    /// Only this decision (`allowed`, `approved`, `denied`, …).
    #[serde(default)]
    pub decision: String,
    /// Only this app (client pubkey, hex or npub).
    #[serde(default)]
    pub client: String,
    /// Only this key (by name).
    #[serde(default)]
    pub key: String,
    /// At most this many rows (default 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Rows matching `filter` that `viewer` reads (its keys'; rows about no
/// key or every key only for a viewer covering every key), newest first.
/// Only owners and auditors read the audit log.
pub async fn query(
    app: &App,
    viewer: &Viewer,
    filter: &AuditFilter,
) -> Result<Vec<AuditView>, DashboardError> {
    if !viewer.reads_audit() {
        return Err(DashboardError::Forbidden(
            "only owners and auditors read the audit log",
        ));
    }
    let viewer = viewer.clone();
    let now = Timestamp::now();
    let since = match filter.since.trim() {
        "" => None,
        t => {
            let d = humantime::parse_duration(t).map_err(|_| {
                DashboardError::BadRequest(format!("`{}` is not a duration", describe::clip(t, 40)))
            })?;
            Some(Timestamp::from_secs(
                now.as_secs().saturating_sub(d.as_secs()),
            ))
        }
    };
    let decision = match filter.decision.trim() {
        "" => None,
        d => Some(AuditDecision::parse(d).ok_or_else(|| {
            DashboardError::BadRequest(format!("unknown decision `{}`", describe::clip(d, 40)))
        })?),
    };
    let client = match filter.client.trim() {
        "" => None,
        c => Some(admin::parse_pubkey(c)?),
    };
    let method = Some(filter.method.trim().to_owned()).filter(|m| !m.is_empty());
    let key = filter.key.trim().to_owned();
    let limit = filter.limit.unwrap_or(200).clamp(1, MAX_ROWS);
    app.dashboard
        .with_store(move |store| {
            let keys = store.keys().map_err(admin::AdminError::from)?;
            // Another key's name is as unknown as a name no key has.
            let key_id = if key.is_empty() {
                None
            } else {
                let found = keys
                    .iter()
                    .find(|k| k.name == key && viewer.covers(k.id))
                    .ok_or_else(|| {
                        DashboardError::BadRequest(format!(
                            "no key named `{}`",
                            describe::clip(&key, 40)
                        ))
                    })?;
                Some(found.id)
            };
            // A scoped viewer's rows are selected in the store, so the limit
            // counts its rows only.
            let key_ids = (!viewer.covers_all()).then(|| {
                keys.iter()
                    .filter(|k| viewer.covers(k.id))
                    .map(|k| k.id)
                    .collect()
            });
            let query = AuditQuery {
                since,
                until: None,
                key_id,
                key_ids,
                client,
                method,
                decision,
                limit: Some(limit),
            };
            let rows = store.audit(&query).map_err(admin::AdminError::from)?;
            let sessions = store.sessions().map_err(admin::AdminError::from)?;
            Ok(rows
                .iter()
                .filter(|r| {
                    if r.key_id.0 == 0 {
                        viewer.covers_all()
                    } else {
                        viewer.covers(r.key_id)
                    }
                })
                .map(|r| AuditView::new(r, &keys, &sessions))
                .collect())
        })
        .await
}

/// `GET /audit`.
pub async fn audit_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Query(filter): Query<AuditFilter>,
) -> PageResult<Html<String>> {
    if !session.viewer().reads_audit() {
        return Err(
            DashboardError::Forbidden("only owners and auditors read the audit log").into(),
        );
    }
    let viewer = session.viewer().clone();
    let keys: Vec<String> = app
        .dashboard
        .with_store(move |store| {
            Ok(store
                .keys()
                .map_err(admin::AdminError::from)?
                .into_iter()
                .filter(|k| viewer.covers(k.id))
                .map(|k| k.name)
                .collect())
        })
        .await?;
    let (rows, problem) = match query(&app, session.viewer(), &filter).await {
        Ok(rows) => (rows, String::new()),
        Err(e @ (DashboardError::BadRequest(_) | DashboardError::Admin(_))) => {
            (Vec::new(), html::notice("error", &e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let since = [
        ("1h", "last hour"),
        ("24h", "last 24 hours"),
        ("7days", "last 7 days"),
        ("30days", "last 30 days"),
        ("", "all time"),
    ];
    let mut methods = vec![("", "any method")];
    methods.extend(Method::ALL.iter().map(|m| (m.as_str(), m.as_str())));
    let decisions = [
        ("", "any decision"),
        ("allowed", "allowed by a rule"),
        ("approved", "approved by you"),
        ("denied", "denied"),
        ("pending", "waiting (auth_url sent)"),
        ("rate_limited", "rate limited"),
        ("invalid", "invalid"),
        ("action", "operators' logins and edits"),
    ];
    let mut key_choices = vec![("", "any key")];
    key_choices.extend(keys.iter().map(|k| (k.as_str(), k.as_str())));
    let key_select = if keys.len() > 1 {
        format!(
            "<label>Key <select name=\"key\">{}</select></label>",
            html::options(&key_choices, filter.key.trim())
        )
    } else {
        String::new()
    };
    let mut table = String::new();
    let now = Timestamp::now().as_secs();
    for r in &rows {
        let kind = r
            .kind
            .map(|k| {
                format!(
                    " <span class=\"muted\">{}</span>",
                    esc(&describe::kind_label(k))
                )
            })
            .unwrap_or_default();
        let signed = r
            .signed_event_id
            .as_deref()
            .map(|id| {
                format!(
                    "<span class=\"mono small\" title=\"{id}\">signed {}</span>",
                    esc(&html::short(id)),
                    id = esc(id)
                )
            })
            .unwrap_or_default();
        table.push_str(&format!(
            "<tr><td title=\"{ago}\">{at}</td><td>{key}</td><td><a href=\"/audit?client={client}\" title=\"{client}\">{app}</a></td>\
             <td><code>{method}</code>{kind}</td><td><span class=\"badge {decision}\">{decision}</span></td><td class=\"by\">{by}</td><td>{outcome}{events} {signed}</td>\
             <td class=\"mono small\">{request}</td></tr>",
            ago = esc(&html::ago(now, r.at)),
            at = html::time(r.at),
            key = esc(&r.key),
            client = esc(&r.client),
            app = match &r.app {
                Some(name) => esc(&describe::clip(name, 30)).to_string(),
                None => format!("<span class=\"mono\">{}</span>", esc(&html::short(&r.client))),
            },
            method = esc(&r.method),
            decision = r.decision,
            by = esc(r.operator.as_deref().unwrap_or("")),
            outcome = esc(&r.outcome),
            events = if r.events == 1 {
                String::new()
            } else {
                format!(" <span class=\"muted\">×{}</span>", r.events)
            },
            request = esc(&describe::clip(&r.request_id, 24)),
        ));
    }
    if rows.is_empty() {
        table.push_str("<tr><td colspan=\"8\" class=\"muted\">No requests match.</td></tr>");
    }
    let body = format!(
        "<h1>Audit log</h1>{problem}<form method=\"get\" action=\"/audit\" class=\"card inline-form filters\">\
         <label>When <select name=\"since\">{since}</select></label>{key_select}\
         <label>Method <select name=\"method\">{methods}</select></label>\
         <label>Decision <select name=\"decision\">{decisions}</select></label>\
         <label>App key <input name=\"client\" value=\"{client}\" placeholder=\"hex or npub\" size=\"20\"></label>\
         <button class=\"btn\">Filter</button> <a href=\"/audit\">Clear</a></form>\
         <section class=\"card flush\"><table class=\"list audit\"><thead><tr><th>When</th><th>Key</th><th>App</th><th>Request</th>\
         <th>Decision</th><th>By</th><th>Outcome</th><th>Request id</th></tr></thead><tbody>{table}</tbody></table></section>\
         <p class=\"muted small\">{count} row(s), newest first. <code>rampart audit</code> reads the same log.</p>",
        since = html::options(&since, filter.since.trim()),
        methods = html::options(&methods, filter.method.trim()),
        decisions = html::options(&decisions, filter.decision.trim()),
        client = esc(filter.client.trim()),
        count = rows.len(),
    );
    Ok(html::page("Audit log", Section::Audit, &session, &body))
}

/// `GET /api/audit?since=1h&method=&decision=&client=&key=&limit=`.
pub async fn audit_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Query(filter): Query<AuditFilter>,
) -> ApiResult<Vec<AuditView>> {
    Ok(Json(query(&app, session.viewer(), &filter).await?))
}
