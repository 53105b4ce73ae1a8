//! A logged-in dashboard user over HTTP, as a browser would be (the session
//! cookie, the CSRF token), for tests that act as several operators.

use std::time::{Duration, Instant};

/// A session on one dashboard, opened with a one-time login link.
pub struct DashboardClient {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    cookie: String,
    csrf: String,
}

impl DashboardClient {
    /// Redeem `link` (`http://…/login?token=…`) for a session.
    pub async fn login(link: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = link
            .split("/login")
            .next()
            .expect("a login link")
            .to_owned();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let r = http.get(link).send().await.expect("the login request");
        assert_eq!(
            r.status(),
            reqwest::StatusCode::SEE_OTHER,
            "the login link did not work"
        );
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .expect("a cookie")
            .split(';')
            .next()
            .expect("a cookie")
            .to_owned();
        let mut client = DashboardClient {
            http,
            base,
            cookie,
            csrf: String::new(),
        };
        let (status, body) = client.get_json("/api/csrf").await;
        assert_eq!(status, 200, "{body}");
        client.csrf = body["csrf_token"]
            .as_str()
            .expect("a CSRF token")
            .to_owned();
        client
    }

    /// The login link an operator command printed (`rampart operator add`
    /// prints the configured listen address; `dashboard_login_url` is the
    /// one the dashboard really serves on).
    pub fn link_on(dashboard_login_url: &str, printed: &str) -> String {
        let token = printed.trim().split("token=").nth(1).expect("a login link");
        let base = dashboard_login_url
            .split("/login")
            .next()
            .expect("a login link");
        format!("{base}/login?token={token}")
    }

    /// `GET path`: the status and the body as JSON (`null` when it is not).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("a GET");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `POST path` with a JSON body: the status and the body as JSON.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("a POST");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The waiting requests this session sees (`/api/pending`).
    pub async fn pending(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.get_json("/api/pending").await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Wait (≤ 10 s) until the request with NIP-46 id `request_id` is
    /// listed as waiting; its listing.
    pub async fn held(&self, request_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self
                .pending()
                .await
                .into_iter()
                .find(|a| a["request_id"] == request_id)
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{request_id} is not listed as waiting"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answer a held request (`allow_once`, `deny_once`, …): the status and
    /// what the API said.
    pub async fn decide(&self, approval: &str, answer: &str) -> (u16, serde_json::Value) {
        self.post_json(
            &format!("/api/approvals/{approval}"),
            serde_json::json!({ "answer": answer }),
        )
        .await
    }
}
