//! How a `Client` behaves: timeouts, what it tells the
//! signer about itself, and who shows `auth_url` challenges.
//!
//! Every wait the client does is bounded by one of these durations, so a
//! caller can always tell how long a request may take at most.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use nip46::{ClientMetadata, Limits, Method, PermissionSet};
use relay::PoolConfig;
use url::Url;

/// An `auth_url` challenge: the signer wants its user to approve a request
/// on a web page before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    /// The request waiting for approval.
    pub request_id: String,
    /// Its method.
    pub method: Method,
    /// The page to show the user (always `http:` or `https:`; anything else
    /// is refused before it gets here).
    pub url: Url,
}

/// Called with each `auth_url` challenge. The client never opens or follows
/// the URL itself: show it, or open it in a browser, and return quickly (it
/// runs on the client's event loop).
pub type AuthUrlHandler = Arc<dyn Fn(&AuthChallenge) + Send + Sync>;

/// Settings for a `Client`.
#[derive(Clone)]
pub struct ClientOptions {
    /// How long a request waits for its answer.
    pub request_timeout: Duration,
    /// How long a request waits after an `auth_url` challenge (the user has
    /// to open a page and decide).
    pub auth_timeout: Duration,
    /// After connecting, ask the signer which relays to use (`switch_relays`)
    /// and wait this long for the answer; `None` skips it. Kept short because
    /// some signers (nostr-connect ≤ 0.44) never answer methods they do not
    /// know; no answer means "keep the relays".
    pub switch_relays_timeout: Option<Duration>,
    /// How long `Client::logout` waits for the
    /// signer's `"ack"` (the session is closed either way, and some signers
    /// never answer `logout`).
    pub logout_timeout: Duration,
    /// First wait for an answer to the `ping` probe sent after a reconnect;
    /// it doubles for each unanswered probe, up to eight times this.
    pub probe_interval: Duration,
    /// Permissions asked for in `connect` and `nostrconnect://` URIs.
    pub perms: Option<PermissionSet>,
    /// What the client tells the signer about itself (`name`, `url`, `image`).
    pub metadata: ClientMetadata,
    /// Who shows `auth_url` challenges. Without one, a challenged request
    /// still waits (up to [`auth_timeout`](Self::auth_timeout)) for an
    /// approval given by other means.
    pub on_auth_url: Option<AuthUrlHandler>,
    /// Bound on NIP-05 lookups (connect, TLS, response).
    pub http_timeout: Duration,
    /// The relay pool's settings (backoff, limits, NIP-42 keys). Its frame
    /// limit is raised to what [`limits`](Self::limits) needs.
    pub pool: PoolConfig,
    /// How large a request may be (1 MiB of JSON by default) and, derived
    /// from it, the answers accepted.
    pub limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(300),
            switch_relays_timeout: Some(Duration::from_secs(5)),
            logout_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            perms: None,
            metadata: ClientMetadata::default(),
            on_auth_url: None,
            http_timeout: Duration::from_secs(10),
            pool: PoolConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("request_timeout", &self.request_timeout)
            .field("auth_timeout", &self.auth_timeout)
            .field("switch_relays_timeout", &self.switch_relays_timeout)
            .field("logout_timeout", &self.logout_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("perms", &self.perms.as_ref().map(ToString::to_string))
            .field("metadata", &self.metadata)
            .field(
                "on_auth_url",
                &self.on_auth_url.as_ref().map(|_| "<handler>"),
            )
            .field("http_timeout", &self.http_timeout)
            .field("pool", &self.pool)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ClientOptions {
    /// The defaults: 30 s per request, 5 min after an `auth_url`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a request waits for its answer.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long a request waits after an `auth_url` challenge.
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Sets (or, with `None`, skips) the `switch_relays` wait after connecting.
    #[must_use]
    pub fn switch_relays_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.switch_relays_timeout = timeout;
        self
    }

    /// Sets the permissions to ask for.
    #[must_use]
    pub fn perms(mut self, perms: PermissionSet) -> Self {
        self.perms = Some(perms);
        self
    }

    /// Sets the application name shown by the signer.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.metadata.name = Some(name.into());
        self
    }

    /// Sets the application URL shown by the signer.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.metadata.url = Some(url.into());
        self
    }

    /// Sets the application image shown by the signer.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.metadata.image = Some(image.into());
        self
    }

    /// Sets who shows `auth_url` challenges.
    #[must_use]
    pub fn on_auth_url(mut self, handler: impl Fn(&AuthChallenge) + Send + Sync + 'static) -> Self {
        self.on_auth_url = Some(Arc::new(handler));
        self
    }

    /// Sets the size limits (the largest request, and the answers it implies).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the relay pool's settings.
    #[must_use]
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// The metadata to send, if any field is set.
    pub(crate) fn metadata(&self) -> Option<ClientMetadata> {
        (self.metadata != ClientMetadata::default()).then(|| self.metadata.clone())
    }
}
