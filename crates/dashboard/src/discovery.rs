//! `/.well-known/nostr.json`: the NIP-05 document that lets a client check
//! the bunker's `kind:31990` announcement against this domain (NIP-46's
//! appendix). Public by design: no login, no redirect, readable from any
//! origin (`Access-Control-Allow-Origin: *`), and it holds only public keys
//! and relay URLs.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// `GET /.well-known/nostr.json[?name=…]`.
pub async fn nostr_json(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(document) = &app.dashboard.config().discovery else {
        return (
            StatusCode::NOT_FOUND,
            "no signer announcement is published\n",
        )
            .into_response();
    };
    let name = query.get("name").map(|n| n.to_ascii_lowercase());
    let mut response = Json(document.to_json(name.as_deref())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}
