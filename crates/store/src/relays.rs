//! The relays the bunker serves on, recorded when it starts, so a token
//! minted by another process (`rampart uri`, the dashboard of another
//! replica, `rampart bench --mint`) names relays the bunker is really on
//! instead of a default it may not be running.

use nip46::nostr::prelude::{RelayUrl, Timestamp};

/// Where the bunker last said it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRelays {
    /// The relays, in the order the bunker was given them.
    pub relays: Vec<RelayUrl>,
    /// When the bunker recorded them (its start).
    pub recorded_at: Timestamp,
}
