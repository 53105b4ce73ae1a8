//! The websocket settings both ends of the wire use (pool and embedded relay).
//!
//! Frames up to a quarter over the configured message size (and at least
//! 64 KiB over) are accepted by the websocket layer, so that an oversized
//! message can be refused with a reason instead of losing the connection;
//! the slack stays small because every connection may buffer one frame.
//!
//! The read buffer is small on purpose: tungstenite zero-fills the free part
//! of its read buffer (up to `read_buffer_size`) before every `read` call,
//! including the ones that find the socket empty. With its 128 KiB default,
//! that `memset` was 13 % of the embedded relay's CPU and 1–2 % of the
//! bunker's under load, for NIP-46 messages of one or two kilobytes. Larger
//! messages still arrive whole, over more reads.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes read from the socket at most per `read` call.
const READ_BUFFER_SIZE: usize = 8 * 1024;

/// The configuration for a connection whose messages may be up to
/// `max_message_size` bytes (see the module comment for the slack).
pub(crate) fn config(max_message_size: usize) -> WebSocketConfig {
    let slack = (max_message_size / 4).max(64 * 1024);
    let hard_limit = max_message_size.saturating_add(slack);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}
