//! The dashboard over real HTTP: a server on 127.0.0.1:0, a real client
//! (reqwest), a real SQLite store, and a stand-in for the engine on the
//! admin channel that records every decision it receives.
//!
//! The point is the gate: nothing without the login token, the token works
//! once, the session cookie is HttpOnly and SameSite=Strict, and no state
//! change passes without the CSRF token and a same-origin request; an
//! `auth_url` held by anybody else approves nothing.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker::service::AdminCommand;
use bunker::vault::{self, Passphrase};
use dashboard::{Dashboard, DashboardConfig};
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Keys, RelayUrl, Timestamp};
use nip46::{ClientMetadata, Method, Preset};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use store::{
    ApprovalDecision, ApprovalId, ApprovalStatus, Change, DecisionScope, KeyId, PendingApproval,
    Session, SessionOrigin, Store,
};
use store_sqlite::SqliteStore;
use tokio::sync::{mpsc, oneshot};

const APPROVAL: &str = "0123456789abcdef0123456789abcdef";

type Decisions = Arc<Mutex<Vec<(ApprovalId, ApprovalDecision)>>>;

struct Server {
    base: String,
    token: String,
    decisions: Decisions,
    client: reqwest::Client,
    app_client: Keys,
    key_id: KeyId,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn held(key_id: KeyId, client: &Keys) -> PendingApproval {
    let now = Timestamp::now().as_secs();
    PendingApproval {
        id: ApprovalId(APPROVAL.into()),
        key_id,
        client: client.public_key(),
        metadata: ClientMetadata {
            name: Some("<b>Evil</b> App".into()),
            url: Some("https://app.example".into()),
            image: None,
        },
        request_id: "req-1".into(),
        method: Method::SignEvent,
        kind: Some(1),
        summary: store::RequestSummary::SignEvent {
            kind: 1,
            content: "<script>alert(1)</script> hello".into(),
            content_hidden: 0,
            tags: vec![vec!["t".into(), "rampart".into()]],
            tags_hidden: 0,
            created_at: Some(now),
        },
        event: Some({
            let mut event = nip46::nostr::prelude::UnsignedEvent::new(
                Keys::generate().public_key(),
                Timestamp::from_secs(now),
                nip46::nostr::prelude::Kind::TextNote,
                [nip46::nostr::prelude::Tag::hashtag("rampart")],
                "<script>alert(1)</script> hello",
            );
            event.ensure_id();
            event
        }),
        created_at: Timestamp::from_secs(now),
        expires_at: Timestamp::from_secs(now + 60),
        status: ApprovalStatus::Pending,
        votes: Vec::new(),
    }
}

/// The engine's side of the admin channel: one held request until decided.
fn fake_engine(
    mut rx: mpsc::Receiver<AdminCommand>,
    pending: PendingApproval,
    decisions: Decisions,
) {
    tokio::spawn(async move {
        let mut waiting = vec![pending];
        while let Some(command) = rx.recv().await {
            match command {
                AdminCommand::Pending { reply } => {
                    let _ = reply.send(waiting.clone());
                }
                AdminCommand::Decide { id, vote, reply } => {
                    let found = waiting.iter().position(|a| a.id == id);
                    let result = match found {
                        Some(i) => {
                            waiting.remove(i);
                            decisions.lock().unwrap().push((id, vote.decision));
                            Ok(bunker::engine::VoteOutcome::Settled)
                        }
                        None => Err(bunker::engine::DecideError::NotPending(id.0)),
                    };
                    let _ = reply.send(result);
                }
                AdminCommand::AcceptNostrConnect { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                AdminCommand::WhenServing { reply } => {
                    let _ = reply.send(());
                }
            }
        }
    });
}

async fn start() -> Server {
    start_with(DashboardConfig {
        relays: vec![RelayUrl::parse("ws://127.0.0.1:7447").unwrap()],
        ..DashboardConfig::default()
    })
    .await
}

async fn start_with(config: DashboardConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    let kek = vault::Kek::for_store(&mut store, &Passphrase::new("pw"), 4).unwrap();
    let sealed = vault::seal_key(
        "alice",
        Keys::generate().secret_key(),
        KeySecurity::Medium,
        &kek,
        Timestamp::now(),
    )
    .unwrap();
    let key_id = store.add_key(&sealed).unwrap();
    let app_client = Keys::generate();
    let session = Session::new(
        key_id,
        app_client.public_key(),
        &Preset::Read.permissions(),
        SessionOrigin::Bunker,
        Timestamp::now(),
    );
    store.apply(&[Change::PutSession(session)]).unwrap();
    // The held request's row, as the engine would have written it.
    store
        .apply(&[Change::PutApproval(held(key_id, &app_client))])
        .unwrap();

    let (admin, rx) = mpsc::channel(8);
    let decisions = Decisions::default();
    fake_engine(rx, held(key_id, &app_client), decisions.clone());
    let dash = Dashboard::new(config, Box::new(SqliteStore::open(&path).unwrap()), admin);
    let token = dash.start_link().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(dashboard::serve(listener, dash, async {
        let _ = stopped.await;
    }));
    // Built with the client crate, reqwest's rustls needs a provider (even for http://).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Server {
        base,
        token: token.expose().to_owned(),
        decisions,
        client,
        app_client,
        key_id,
        _stop: stop,
        _dir: dir,
    }
}

/// A logged-in browser: its cookie header and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self) -> Login {
        let r = self
            .client
            .get(self.url(&format!("/login?token={}", self.token)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let r = self
            .client
            .get(self.url("/api/csrf"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        Login {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    fn origin(&self) -> String {
        self.base.clone()
    }

    /// POST JSON with the given extra headers.
    async fn post_json(
        &self,
        path: &str,
        body: serde_json::Value,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        let r = self
            .client
            .post(self.url(path))
            .headers(headers)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post_form(&self, path: &str, form: &str, headers: HeaderMap) -> (StatusCode, String) {
        let r = self
            .client
            .post(self.url(path))
            .headers(headers)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    fn decided(&self) -> usize {
        self.decisions.lock().unwrap().len()
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[tokio::test]
async fn nothing_without_a_session() {
    let s = start().await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Log in first"));

    // The auth_url itself shows nothing of the request and offers no button.
    let r = s
        .client
        .get(s.url(&format!("/approve/{APPROVAL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = r.text().await.unwrap();
    assert!(page.contains("Log in first"), "{page}");
    assert!(!page.contains("Allow once") && !page.contains("hello") && !page.contains("Evil"));

    let r = s.client.get(s.url("/api/pending")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("log in first"));
    for path in [
        "/connections",
        "/pair",
        "/audit",
        "/api/sessions",
        "/api/audit",
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // Holding the URL and posting an answer does nothing either.
    let (status, _) = s
        .post_form(
            &format!("/approve/{APPROVAL}"),
            "answer=allow_once",
            headers(&[("origin", &s.origin())]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post_json(
            &format!("/api/approvals/{APPROVAL}"),
            serde_json::json!({"answer": "allow_once"}),
            HeaderMap::new(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A made-up cookie is no session.
    let forged = headers(&[("cookie", "rampart_session_1=00"), ("x-csrf-token", "00")]);
    let (status, _) = s
        .post_json(
            &format!("/api/approvals/{APPROVAL}"),
            serde_json::json!({"answer": "allow_once"}),
            forged,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.decided(), 0, "nothing reached the engine");
}

#[tokio::test]
async fn the_login_link_works_once_for_a_strict_http_only_cookie() {
    let s = start().await;
    let r = s
        .client
        .get(s.url("/login?token=not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());

    let r = s
        .client
        .get(s.url(&format!(
            "/login?token={}&next=/approve/{APPROVAL}",
            s.token
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        format!("/approve/{APPROVAL}").as_str(),
        "back to the auth_url"
    );
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains(&s.token), "the cookie is not the login token");
    let cookie = set.split(';').next().unwrap().to_owned();

    let r = s
        .client
        .get(s.url(&format!("/approve/{APPROVAL}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Allow once") && page.contains("Always deny"));
    assert!(page.contains("Short text note"));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; hello"),
        "content is shown, escaped"
    );
    assert!(!page.contains("<script>alert"), "and never as markup");
    // The complete event that would be signed, with its size and id.
    assert!(
        page.contains("Complete event: "),
        "the event is shown whole"
    );
    assert!(page.contains(" bytes, 1 tags, id "), "with its size");
    assert!(page.contains("&lt;b&gt;Evil&lt;/b&gt; App") && page.contains("unverified"));

    // Used once: refused the second time, also by POST.
    let r = s
        .client
        .get(s.url(&format!("/login?token={}", s.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post_form("/login", &format!("token={}", s.token), HeaderMap::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Security headers on every page.
    let r = s
        .client
        .get(s.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn cross_site_and_csrf_less_posts_are_refused() {
    let s = start().await;
    let login = s.login().await;
    let path = format!("/api/approvals/{APPROVAL}");
    let allow = serde_json::json!({"answer": "allow_once"});
    let origin = s.origin();

    let cases: Vec<(&str, HeaderMap)> = vec![
        (
            "no CSRF token",
            headers(&[("cookie", &login.cookie), ("origin", &origin)]),
        ),
        (
            "wrong CSRF token",
            headers(&[
                ("cookie", &login.cookie),
                ("origin", &origin),
                ("x-csrf-token", "00ff"),
            ]),
        ),
        (
            "foreign origin",
            headers(&[
                ("cookie", &login.cookie),
                ("origin", "http://evil.example"),
                ("x-csrf-token", &login.csrf),
            ]),
        ),
        (
            "cross-site fetch",
            headers(&[
                ("cookie", &login.cookie),
                ("sec-fetch-site", "cross-site"),
                ("x-csrf-token", &login.csrf),
            ]),
        ),
    ];
    for (what, h) in cases {
        let (status, body) = s.post_json(&path, allow.clone(), h).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    // The same through the HTML form: a foreign origin with a stolen token, and no token.
    let form = format!("csrf={}&answer=allow_once", login.csrf);
    let (status, _) = s
        .post_form(
            &format!("/approve/{APPROVAL}"),
            &form,
            headers(&[("cookie", &login.cookie), ("origin", "http://evil.example")]),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post_form(
            &format!("/approve/{APPROVAL}"),
            "answer=allow_once",
            headers(&[("cookie", &login.cookie), ("origin", &origin)]),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.decided(), 0, "nothing reached the engine");

    // Same origin, with the token: decided.
    let (status, body) = s
        .post_form(
            &format!("/approve/{APPROVAL}"),
            &format!("csrf={}&answer=allow_always&for=1h", login.csrf),
            headers(&[
                ("cookie", &login.cookie),
                ("origin", &origin),
                ("sec-fetch-site", "same-origin"),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Allowed, and remembered"), "{body}");
    let (id, decision) = s.decisions.lock().unwrap()[0].clone();
    assert_eq!(id.0, APPROVAL);
    let DecisionScope::Always { until: Some(until) } = decision.scope else {
        panic!("{decision:?}")
    };
    assert!(decision.allow && until.as_secs() > Timestamp::now().as_secs() + 3500);

    // Answered already: the API says so.
    let h = headers(&[("cookie", &login.cookie), ("x-csrf-token", &login.csrf)]);
    let (status, body) = s.post_json(&path, allow, h).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn foreign_host_names_are_refused() {
    let s = start().await;
    let login = s.login().await;
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let r = s
        .client
        .get(s.url("/api/pending"))
        .header("host", format!("rebound.evil.example:{port}"))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    let r = s
        .client
        .get(s.url("/api/pending"))
        .header("host", format!("localhost:{port}"))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_auth_url_opened_from_another_site_reloads_itself_once() {
    let s = start().await;
    let path = format!("/approve/{APPROVAL}");
    // Opened from the app's site: the Strict cookie is not sent, so the page
    // reloads itself from this origin, where it would be.
    let r = s
        .client
        .get(s.url(&path))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["refresh"].to_str().unwrap(),
        format!("0; url={path}?retry=1")
    );
    assert!(!r.text().await.unwrap().contains("hello"));
    // Still no session after that: log in first.
    let r = s
        .client
        .get(s.url(&format!("{path}?retry=1")))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_api_covers_every_action() {
    let s = start().await;
    let login = s.login().await;
    let auth = || headers(&[("cookie", &login.cookie), ("x-csrf-token", &login.csrf)]);
    let get = |path: &str| {
        let url = s.url(path);
        let cookie = login.cookie.clone();
        let client = s.client.clone();
        async move {
            let r = client
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()
        }
    };

    let pending = get("/api/pending").await;
    assert_eq!(pending[0]["id"], APPROVAL);
    assert_eq!(pending[0]["kind_name"], "Short text note");
    assert_eq!(pending[0]["permission"], "sign_event:1");

    // Mint a token: a bunker:// URI and its QR code.
    let (status, body) = s
        .post_json(
            "/api/tokens",
            serde_json::json!({"grant": "read", "expires": "10m"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let minted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(minted["uri"].as_str().unwrap().starts_with("bunker://"));
    assert!(minted["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let (status, _) = s
        .post_json(
            "/api/tokens",
            serde_json::json!({"grant": "everything"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Edit and revoke the session.
    let client = s.app_client.public_key().to_hex();
    let rules = format!("/api/sessions/{}/{client}/rules", s.key_id.0);
    let (status, body) = s
        .post_json(
            &rules,
            serde_json::json!({"permission": "sign_event:7", "effect": "allow", "for": "1day"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = s
        .post_json(
            &rules,
            serde_json::json!({"permission": "sign_event:0", "effect": "deny"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sessions = get("/api/sessions").await;
    assert!(
        sessions[0]["allowed"]
            .as_str()
            .unwrap()
            .contains("sign_event:7"),
        "{sessions}"
    );
    assert_eq!(sessions[0]["denied"], serde_json::json!(["sign_event:0"]));
    let (status, _) = s
        .post_json(
            &rules,
            serde_json::json!({"permission": "sign_event:7", "effect": "remove"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .post_json(
            &rules,
            serde_json::json!({"permission": "teleport", "effect": "allow"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let revoke = format!("/api/sessions/{}/{client}/revoke", s.key_id.0);
    let (status, _) = s.post_json(&revoke, serde_json::json!({}), auth()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get("/api/sessions").await, serde_json::json!([]));
    assert_eq!(get("/api/sessions?all=true").await[0]["active"], false);

    // Accept a nostrconnect:// link.
    let app = Keys::generate();
    let uri = format!(
        "nostrconnect://{}?relay=ws%3A%2F%2F127.0.0.1%3A7447&secret=s3cret&perms=sign_event%3A1&name=Web+App",
        app.public_key().to_hex()
    );
    let (status, body) = s
        .post_json(
            "/api/nostrconnect",
            serde_json::json!({"uri": uri, "grant": "requested"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (view["name"].as_str(), view["allowed"].as_str()),
        (Some("Web App"), Some("sign_event:1"))
    );
    let (status, _) = s
        .post_json(
            "/api/nostrconnect",
            serde_json::json!({"uri": "nostrconnect://nope"}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The audit log answers (empty here: no engine wrote to it) and checks its filters.
    assert_eq!(
        get("/api/audit?since=1h&decision=approved").await,
        serde_json::json!([])
    );
    let r = s
        .client
        .get(s.url("/api/audit?decision=maybe"))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The kill switch: by the API, and by the page's form.
    let keys = get("/api/keys").await;
    assert_eq!(keys[0]["locked_at"], serde_json::Value::Null);
    assert_eq!(
        keys[0]["sensitive_kinds"],
        serde_json::json!([0, 3, 5, 10002])
    );
    assert_eq!(keys[0]["sensitive_own"], false);
    let (status, body) = s
        .post_json(
            "/api/keys/lock",
            serde_json::json!({"key": "alice", "locked": true}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(get("/api/keys").await[0]["locked_at"].is_u64());
    let (status, _) = s
        .post_json(
            "/api/keys/lock",
            serde_json::json!({"key": "nobody", "locked": true}),
            auth(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page = s
        .client
        .get(s.url("/keys"))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Unlock</button>"),
        "a locked key offers Unlock"
    );
    assert!(
        page.contains("the default"),
        "its sensitive kinds are shown"
    );
    let (status, _) = s
        .post_form(
            "/keys/lock",
            &format!("csrf={}&key=alice&locked=false", login.csrf),
            headers(&[("cookie", &login.cookie)]),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        get("/api/keys").await[0]["locked_at"],
        serde_json::Value::Null
    );

    // Pages render.
    for path in [
        "/",
        "/connections",
        "/keys",
        "/pair",
        "/audit?since=7days",
        &format!("/connections/{}/{client}", s.key_id.0),
    ] {
        let r = s
            .client
            .get(s.url(path))
            .header("cookie", &login.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }

    // The announcement's nostrconnect_url: the pairing page with the link
    // filled in, whether the client percent-encoded it or not.
    let app = Keys::generate().public_key().to_hex();
    let link = format!("nostrconnect://{app}?relay=wss%3A%2F%2Fr.example&secret=s1&name=Prefilled");
    let encoded: String = url::form_urlencoded::byte_serialize(link.as_bytes()).collect();
    for query in [link.clone(), encoded] {
        let r = s
            .client
            .get(s.url(&format!("/pair?uri={query}")))
            .header("cookie", &login.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page = r.text().await.unwrap();
        let shown = format!(
            "nostrconnect://{app}?relay=wss%3A%2F%2Fr.example&amp;secret=s1&amp;name=Prefilled</textarea>"
        );
        assert!(page.contains(&shown), "{query}");
    }

    // Log out: the cookie stops working.
    let (status, _) = s
        .post_form(
            "/logout",
            &format!("csrf={}", login.csrf),
            headers(&[("cookie", &login.cookie)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = s
        .client
        .get(s.url("/api/pending"))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_login_link_minted_into_the_store_works_once_on_any_dashboard_of_it() {
    let s = start().await;
    // A second dashboard on the same database (another replica's, say): a
    // link minted into the store by a third process works on it, once, and
    // then on neither.
    let path = s._dir.path().join("rampart.sqlite");
    let (admin, _rx) = mpsc::channel(1);
    let other = Dashboard::new(
        DashboardConfig::default(),
        Box::new(SqliteStore::open(&path).unwrap()),
        admin,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(dashboard::serve(listener, other, std::future::pending()));
    let mut store = SqliteStore::open(&path).unwrap();
    let token = dashboard::auth::issue_login(
        &mut store,
        Duration::from_secs(600),
        store::DashboardUser::Owner,
    )
    .unwrap();
    let on_other = format!("{other_base}/login?token={}", token.expose());
    let response = s.client.get(&on_other).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.client.get(&on_other).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.client
            .get(s.url(&format!("/login?token={}", token.expose())))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "used on one dashboard, spent on every one"
    );
    // The session opened on the other dashboard is honoured by the first
    // (the cookie's name is per port; behind one address it would be one).
    let value = cookie.split_once('=').unwrap().1;
    let port = s.base.rsplit(':').next().unwrap();
    let renamed = format!("rampart_session_{port}={value}");
    let pending = s
        .client
        .get(s.url("/api/pending"))
        .header("cookie", &renamed)
        .send()
        .await
        .unwrap();
    assert_eq!(pending.status(), StatusCode::OK);
}

#[tokio::test]
async fn nostr_json_is_public_cross_origin_and_names_the_announcer() {
    let s = start().await;
    // This server publishes no announcement: not found, still without login.
    let r = s
        .client
        .get(s.url("/.well-known/nostr.json?name=_"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let announcer = Keys::generate().public_key();
    let document = nip46::discovery::Nip05Document {
        announcer,
        relays: vec![RelayUrl::parse("ws://127.0.0.1:7447").unwrap()],
        nostrconnect_url: None,
        names: Default::default(),
    };
    let s = start_with(DashboardConfig {
        discovery: Some(document),
        ..DashboardConfig::default()
    })
    .await;
    let r = s
        .client
        .get(s.url("/.well-known/nostr.json?name=_"))
        .header("origin", "https://some-web-client.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "no login, no redirect");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["cross-origin-resource-policy"], "cross-origin");
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["names"]["_"], announcer.to_hex());
    assert_eq!(body["nip46"]["relays"][0], "ws://127.0.0.1:7447");
    // Every other page keeps its same-origin policy.
    let r = s.client.get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.headers()["cross-origin-resource-policy"], "same-origin");
}

/// A user sent to `/pair?uri=…` (the announcement's `nostrconnect_url`)
/// before logging in comes back to the same link after logging in.
#[tokio::test]
async fn the_pairing_link_survives_the_login() {
    let s = start().await;
    let link = "nostrconnect://abc?relay=wss%3A%2F%2Fr.example&secret=s1";
    let r = s
        .client
        .get(s.url(&format!("/pair?uri={link}&retry=1")))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = r.text().await.unwrap();
    let next = format!(
        "name=\"next\" value=\"/pair?uri={}\"",
        link.replace('&', "&amp;")
    );
    assert!(page.contains(&next), "{page}");
}
