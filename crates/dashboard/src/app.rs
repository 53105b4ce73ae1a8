//! The state every handler sees (axum's `State`): the dashboard and the site
//! it is served on.

use std::sync::Arc;

use crate::site::Site;
use crate::state::Dashboard;

/// The state every handler sees: the dashboard and where it is served.
#[derive(Clone)]
pub struct App {
    /// The dashboard.
    pub dashboard: Dashboard,
    /// The hosts and origins it answers to.
    pub site: Arc<Site>,
}
