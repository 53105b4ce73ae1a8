//! Why a dashboard request failed, and how that is shown: an HTML page for
//! the browser ([`PageError`]), `{"error": …}` for the API ([`ApiError`]).
//!
//! Messages are for the user and carry no secrets: tokens, cookies and CSRF
//! values never appear in them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bunker::admin::AdminError;
use bunker::engine::DecideError;

use crate::html;

/// A failed dashboard request.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No valid session.
    #[error("log in first")]
    NotLoggedIn,
    /// A request the guard refuses (cross-site, bad CSRF token, unknown host).
    #[error("refused: {0}")]
    Forbidden(&'static str),
    /// Input that cannot be used.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// An admin operation failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The engine had no such held request.
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The bunker's engine is gone (shutting down).
    #[error("the bunker is not running")]
    BunkerStopped,
    /// Something broke on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<store::StoreError> for DashboardError {
    fn from(e: store::StoreError) -> Self {
        DashboardError::Admin(AdminError::Store(e))
    }
}

impl DashboardError {
    /// The HTTP status that goes with it.
    pub fn status(&self) -> StatusCode {
        match self {
            DashboardError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            DashboardError::Forbidden(_) => StatusCode::FORBIDDEN,
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::NotFound(_) => StatusCode::NOT_FOUND,
            DashboardError::Admin(AdminError::NotFound(_)) => StatusCode::NOT_FOUND,
            DashboardError::Admin(AdminError::Invalid(_) | AdminError::Ambiguous(_)) => {
                StatusCode::BAD_REQUEST
            }
            DashboardError::Decide(_) => StatusCode::CONFLICT,
            DashboardError::BunkerStopped => StatusCode::SERVICE_UNAVAILABLE,
            DashboardError::Admin(AdminError::Store(_)) | DashboardError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "dashboard request failed");
        }
    }
}

/// A failure shown as an HTML page.
#[derive(Debug)]
pub struct PageError(pub DashboardError);

impl<E: Into<DashboardError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        let body = format!(
            "<section class=\"card\"><h1>Something went wrong</h1><p>{}</p>\
             <p><a href=\"/\">Back to pending requests</a></p></section>",
            html::esc(&self.0.to_string())
        );
        (self.0.status(), html::bare_page("Error", &body)).into_response()
    }
}

/// A failure shown as JSON.
#[derive(Debug)]
pub struct ApiError(pub DashboardError);

impl<E: Into<DashboardError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let body = serde_json::json!({ "error": self.0.to_string() });
        (self.0.status(), Json(body)).into_response()
    }
}

/// What page handlers return.
pub type PageResult<T> = Result<T, PageError>;

/// What API handlers return.
pub type ApiResult<T> = Result<Json<T>, ApiError>;
