//! Connecting apps: mint a single-use `bunker://` token (shown as text and
//! as a QR code), or accept the `nostrconnect://` link an app shows.
//!
//! Both go through [`bunker::admin`] like `rampart uri` and `rampart
//! connect`. The token's secret appears only in the response that shows it
//! (the store keeps a hash; the page is never cached).

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Form, RawQuery, State};
use axum::response::Html;
use bunker::OsRandomness;
use bunker::admin::{self, SessionView};
use bunker::describe;
use nip46::nostr::prelude::Timestamp;
use nip46::{NostrConnectUri, PermissionSet, Preset};
use serde::{Deserialize, Serialize};
use store::{KeyId, StoredKey};

use crate::app::App;
use crate::auth::{AdminSession, Viewer};
use crate::error::{ApiResult, DashboardError, PageResult};
use crate::html::{self, Section, esc};
use crate::state::Recorded;

/// A token to mint (form and API).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MintInput {
    /// The key's name (default: the first key).
    #[serde(default)]
    pub key: String,
    /// A preset (`read`, `write`, `encrypt`, `full`) or a permission list; empty = the default grant.
    #[serde(default)]
    pub grant: String,
    /// How long the secret stays usable (`10m`, `1h`, `7days`); empty = no expiry.
    #[serde(default)]
    pub expires: String,
    /// A label to recognise it by.
    #[serde(default)]
    pub label: String,
}

/// A minted token.
#[derive(Debug, Serialize)]
pub struct Minted {
    /// The `bunker://` URI (holds the single-use secret).
    pub uri: String,
    /// Its QR code, as SVG.
    pub qr_svg: String,
    /// The key it connects to.
    pub key: String,
    /// What a session made with it may do.
    pub grant: String,
    /// When the secret stops working (unix seconds).
    pub expires_at: Option<u64>,
}

/// A `nostrconnect://` link to accept (form and API).
#[derive(Debug, Clone, Deserialize)]
pub struct AcceptInput {
    /// The link.
    pub uri: String,
    /// The key's name (default: the first key).
    #[serde(default)]
    pub key: String,
    /// `requested` (what the link asks for), a preset or a permission list;
    /// empty = the default grant.
    #[serde(default)]
    pub grant: String,
}

/// The key named (or the first `viewer` manages), if `viewer` manages it.
fn managed_key(
    store: &dyn store::Store,
    viewer: &Viewer,
    name: &str,
) -> Result<StoredKey, DashboardError> {
    const NO_KEY: &str = "There is no such key.";
    if !viewer.decides() {
        return Err(DashboardError::Forbidden(
            "an auditor reads; it connects no apps",
        ));
    }
    // Only the viewer's keys are looked at: another key's name is as
    // unknown as a name no key has.
    let name = name.trim();
    store
        .keys()
        .map_err(admin::AdminError::from)?
        .into_iter()
        .filter(|k| viewer.manages(k.id))
        .find(|k| name.is_empty() || k.name == name)
        .ok_or_else(|| DashboardError::NotFound(NO_KEY.into()))
}

/// Mint a token: the one implementation behind the form and the API.
pub async fn mint(app: &App, viewer: &Viewer, input: &MintInput) -> Result<Minted, DashboardError> {
    let grant = grant(&input.grant, &app.dashboard.config().default_grant, None)?;
    let now = Timestamp::now();
    let expires_at = admin::until(now, duration(&input.expires)?);
    let relays = app.dashboard.config().relays.clone();
    let key_name = input.key.clone();
    let label = Some(input.label.trim())
        .filter(|l| !l.is_empty())
        .map(|l| describe::clip(l, 80))
        .or_else(|| Some("dashboard".into()));
    let shown_grant = grant.to_string();
    let who = viewer.clone();
    let (uri, key, key_id) = app
        .dashboard
        .with_store(move |store| {
            let key = managed_key(store, &who, &key_name)?;
            let mut rng = OsRandomness::new();
            let uri =
                admin::mint_token(store, &key, grant, expires_at, label, relays, &mut rng, now)?;
            Ok((uri.to_string(), key.name, key.id))
        })
        .await?;
    tracing::info!(key = %key, grant = %shown_grant, by = viewer.name(), "token minted in the dashboard");
    let recorded = Recorded {
        method: "token.mint",
        key_id,
        client: None,
        detail: shown_grant.clone(),
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(Minted {
        qr_svg: qr_svg(&uri)?,
        uri,
        key,
        grant: shown_grant,
        expires_at: expires_at.map(|t| t.as_secs()),
    })
}

/// Accept a `nostrconnect://` link: the bunker sends the app its `connect` answer.
pub async fn accept(
    app: &App,
    viewer: &Viewer,
    input: &AcceptInput,
) -> Result<SessionView, DashboardError> {
    let uri: NostrConnectUri = input.uri.trim().parse().map_err(|e| {
        DashboardError::BadRequest(format!("that is not a usable nostrconnect:// link: {e}"))
    })?;
    let grant = grant(
        &input.grant,
        &app.dashboard.config().default_grant,
        uri.perms.as_ref(),
    )?;
    let key_name = input.key.clone();
    let who = viewer.clone();
    let view = app
        .dashboard
        .with_store(move |store| {
            let key = managed_key(store, &who, &key_name)?;
            let keys = store.keys().map_err(admin::AdminError::from)?;
            let now = Timestamp::now();
            let session = admin::accept_nostrconnect(store, key.id, &uri, &grant, now)?;
            Ok(SessionView::new(&session, &keys, now))
        })
        .await?;
    tracing::info!(client = %view.client, by = viewer.name(), "nostrconnect link accepted in the dashboard");
    let recorded = Recorded {
        method: "nostrconnect.accept",
        key_id: KeyId(view.key_id),
        client: admin::parse_pubkey(&view.client).ok(),
        detail: view.allowed.clone(),
    };
    app.dashboard.audit(viewer, recorded).await;
    Ok(view)
}

/// `GET /pair`.
///
/// `?uri=<nostrconnect://…>` fills in the link to accept: the page is the
/// `nostrconnect_url` of the signer announcement, where clients send users
/// with their `nostrconnect://` string in place of `<nostrconnect>`.
pub async fn pair_page(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    RawQuery(query): RawQuery,
) -> PageResult<Html<String>> {
    let keys = keys(&app, session.viewer()).await?;
    let prefill = query.as_deref().and_then(nostrconnect_param);
    Ok(page(
        &app,
        &keys,
        &session,
        "",
        prefill.as_deref().unwrap_or(""),
    ))
}

/// The `nostrconnect://` string of a `uri=` query. Clients put it in raw
/// (its own `&relay=…&secret=…` then look like more parameters) or
/// percent-encoded; both are taken: everything after `uri=` is the link,
/// decoded once if it is encoded.
pub fn nostrconnect_param(query: &str) -> Option<String> {
    let raw = query.strip_prefix("uri=")?;
    // The marker the login page's reload appends (see `login::login_needed`).
    let raw = raw.strip_suffix("&retry=1").unwrap_or(raw);
    let decoded = if raw
        .get(..15)
        .is_some_and(|p| p.eq_ignore_ascii_case("nostrconnect%3A"))
    {
        percent_decode(raw)?
    } else {
        raw.to_owned()
    };
    decoded.starts_with("nostrconnect://").then_some(decoded)
}

/// `%XX` decoding (and `+` as a space, as forms send it).
fn percent_decode(text: &str) -> Option<String> {
    let decoded: String = url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(decoded)
}

/// `POST /pair/token`.
pub async fn mint_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Form(input): Form<MintInput>,
) -> PageResult<Html<String>> {
    let keys = keys(&app, session.viewer()).await?;
    let result = match mint(&app, session.viewer(), &input).await {
        Ok(minted) => {
            let expiry = minted
                .expires_at
                .map(|t| format!("until {}", html::time(t)))
                .unwrap_or_else(|| "with no expiry".into());
            format!(
                "<section class=\"card minted\"><h2>Your bunker:// link</h2>\
                 <div class=\"minted-grid\"><div class=\"qr\">{qr}</div><div>\
                 <p>Paste it into the app, or scan the code. It works <b>once</b>, {expiry}, for key <b>{key}</b> \
                 with <code>{grant}</code>.</p>\
                 <textarea id=\"bunker-uri\" readonly rows=\"4\">{uri}</textarea>\
                 <p><button type=\"button\" class=\"btn\" data-copy=\"bunker-uri\">Copy</button></p>\
                 <p class=\"muted small\">Anyone who has this link before the app uses it can connect instead; \
                 treat it like a password until then.</p></div></div></section>",
                qr = minted.qr_svg,
                key = esc(&minted.key),
                grant = esc(&minted.grant),
                uri = esc(&minted.uri),
            )
        }
        Err(e) => html::notice("error", &e.to_string()),
    };
    Ok(page(&app, &keys, &session, &result, ""))
}

/// `POST /pair/nostrconnect`.
pub async fn nostrconnect_form(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Form(input): Form<AcceptInput>,
) -> PageResult<Html<String>> {
    let keys = keys(&app, session.viewer()).await?;
    let result = match accept(&app, session.viewer(), &input).await {
        Ok(view) => html::notice(
            "ok",
            &format!(
                "Accepted {} with {}. The bunker is sending the app its answer now; it appears under Connections.",
                view.name.as_deref().unwrap_or("the app"),
                if view.allowed.is_empty() {
                    "no permissions (everything is asked)"
                } else {
                    &view.allowed
                },
            ),
        ),
        Err(e) => html::notice("error", &e.to_string()),
    };
    Ok(page(&app, &keys, &session, &result, ""))
}

/// `POST /api/tokens` with `{"key", "grant", "expires", "label"}` (all optional).
pub async fn mint_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Json(input): Json<MintInput>,
) -> ApiResult<Minted> {
    Ok(Json(mint(&app, session.viewer(), &input).await?))
}

/// `POST /api/nostrconnect` with `{"uri", "key", "grant"}`.
pub async fn nostrconnect_api(
    State(app): State<App>,
    Extension(session): Extension<AdminSession>,
    Json(input): Json<AcceptInput>,
) -> ApiResult<SessionView> {
    Ok(Json(accept(&app, session.viewer(), &input).await?))
}

/// The keys `viewer` may pair apps with (an auditor: none, refused).
async fn keys(app: &App, viewer: &Viewer) -> Result<Vec<StoredKey>, DashboardError> {
    if !viewer.decides() {
        return Err(DashboardError::Forbidden(
            "an auditor reads; it connects no apps",
        ));
    }
    let viewer = viewer.clone();
    app.dashboard
        .with_store(move |store| {
            let mut keys = store.keys().map_err(admin::AdminError::from)?;
            keys.retain(|k| viewer.manages(k.id));
            Ok(keys)
        })
        .await
}

fn page(
    app: &App,
    keys: &[StoredKey],
    session: &AdminSession,
    result: &str,
    prefill: &str,
) -> Html<String> {
    let csrf = session.csrf();
    let key_options: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.name.as_str(), k.name.as_str()))
        .collect();
    let key_select = if keys.len() > 1 {
        format!(
            "<label>Key <select name=\"key\">{}</select></label>",
            html::options(&key_options, "")
        )
    } else {
        String::new()
    };
    let default_grant = app.dashboard.config().default_grant.to_string();
    let preset = Preset::ALL
        .into_iter()
        .find(|p| p.permissions().to_string() == default_grant)
        .map_or("", Preset::as_str);
    let grants = [
        ("read", "read: public key and relays only"),
        ("write", "write: read + sign any event"),
        ("encrypt", "encrypt: read + encrypt and decrypt"),
        ("full", "full: everything"),
        (
            "sign_event:1,sign_event:7",
            "notes and reactions only (kinds 1, 7)",
        ),
    ];
    let expiries = [
        ("10m", "10 minutes"),
        ("1h", "1 hour"),
        ("24h", "24 hours"),
        ("7days", "7 days"),
        ("", "never"),
    ];
    let mut nc_grants = vec![("requested", "what the app asks for")];
    nc_grants.extend_from_slice(&grants);
    let body = format!(
        "<h1>Connect an app</h1>{result}\
         <div class=\"two\">\
         <section class=\"card\"><h2>Give the app a bunker:// link</h2>\
         <p class=\"muted\">For apps that have a “login with bunker” field.</p>\
         <form method=\"post\" action=\"/pair/token\" class=\"stack\">{csrf}{key_select}\
         <label>The app may <select name=\"grant\">{grant_options}</select></label>\
         <label>Link works for <select name=\"expires\">{expiry_options}</select></label>\
         <label>Label <input name=\"label\" placeholder=\"e.g. laptop browser\" maxlength=\"80\"></label>\
         <button class=\"btn primary\">Create link</button></form>\
         <p class=\"muted small\">Requests outside what you grant are held for you to answer.</p></section>\
         <section class=\"card\"><h2>Accept the app's nostrconnect:// link</h2>\
         <p class=\"muted\">For apps that show a link or QR code to give to your signer.</p>\
         <form method=\"post\" action=\"/pair/nostrconnect\" class=\"stack\">{csrf}\
         <label>nostrconnect:// link <textarea name=\"uri\" rows=\"4\" required placeholder=\"nostrconnect://…\">{prefill}</textarea></label>\
         {key_select}<label>The app may <select name=\"grant\">{nc_options}</select></label>\
         <button class=\"btn primary\">Accept</button></form>\
         <p class=\"muted small\">The link's name and picture are the app's own claims.</p></section></div>",
        csrf = html::csrf_field(csrf),
        grant_options = html::options(&grants, preset),
        expiry_options = html::options(&expiries, "1h"),
        nc_options = html::options(&nc_grants, "requested"),
        prefill = esc(prefill),
    );
    html::page("Connect an app", Section::Pair, session, &body)
}

/// A grant from user input: empty = `default`, `requested` = what the link asks for.
fn grant(
    text: &str,
    default: &PermissionSet,
    requested: Option<&PermissionSet>,
) -> Result<PermissionSet, DashboardError> {
    match text.trim() {
        "" => Ok(default.clone()),
        "requested" => Ok(requested
            .cloned()
            .unwrap_or_else(|| Preset::Read.permissions())),
        t => t.parse().map_err(|_| {
            DashboardError::BadRequest(format!(
                "`{}` is not a preset (read, write, encrypt, full) or a permission list",
                describe::clip(t, 60)
            ))
        }),
    }
}

fn duration(text: &str) -> Result<Option<Duration>, DashboardError> {
    match text.trim() {
        "" => Ok(None),
        t => humantime::parse_duration(t).map(Some).map_err(|_| {
            DashboardError::BadRequest(format!("`{}` is not a duration", describe::clip(t, 40)))
        }),
    }
}

/// The QR code of `text`, as an inline SVG element.
pub fn qr_svg(text: &str) -> Result<String, DashboardError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| DashboardError::Internal(format!("no QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    // Inline in HTML: drop the XML declaration.
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_qr_codes() {
        let default = Preset::Write.permissions();
        assert_eq!(grant("", &default, None).unwrap(), default);
        assert_eq!(
            grant("read", &default, None).unwrap(),
            Preset::Read.permissions()
        );
        let asked: PermissionSet = "sign_event:1".parse().unwrap();
        assert_eq!(grant("requested", &default, Some(&asked)).unwrap(), asked);
        assert!(grant("everything", &default, None).is_err());
        let svg = qr_svg("bunker://abc?relay=ws%3A%2F%2F127.0.0.1%3A7447&secret=00").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(!svg.contains("<script"));
    }
}
