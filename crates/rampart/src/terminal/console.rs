//! One stderr for log lines and the approval prompt.
//!
//! The prompt is the last line of the terminal, without a newline. A log
//! line written while it is shown would land in the middle of it, so every
//! write goes through here: erase the prompt line, write the log line, draw
//! the prompt again. (What the user typed so far stays in the terminal's
//! input buffer; only its echo is lost on a redraw.) With no prompt shown,
//! bytes go to stderr untouched.

use std::io::{self, Write};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// The prompt currently shown, if any. One lock orders all stderr writes.
static PROMPT: Mutex<Option<String>> = Mutex::new(None);

/// Erase the current terminal line.
const ERASE_LINE: &[u8] = b"\r\x1b[2K";

/// The log writer (`tracing_subscriber::fmt().with_writer(Console)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Console;

/// One log record, written out whole when dropped.
pub struct ConsoleWriter {
    record: Vec<u8>,
}

impl Write for ConsoleWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.record.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        if !self.record.is_empty() {
            print_line_bytes(&self.record);
        }
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleWriter;

    fn make_writer(&'a self) -> Self::Writer {
        ConsoleWriter {
            record: Vec::with_capacity(256),
        }
    }
}

fn print_line_bytes(bytes: &[u8]) {
    let prompt = PROMPT.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = io::stderr().lock();
    if prompt.is_some() {
        let _ = err.write_all(ERASE_LINE);
    }
    let _ = err.write_all(bytes);
    if let Some(p) = prompt.as_deref() {
        let _ = err.write_all(p.as_bytes());
    }
    let _ = err.flush();
}

/// Where the approval prompt is shown (the terminal, or a test's recorder).
pub trait PromptSink: Send + Sync {
    /// Show `prompt` as the last line (no newline) until answered.
    fn show(&self, prompt: &str);
    /// The user pressed Enter: the prompt line stays as typed; forget it.
    fn answered(&self);
    /// The prompt is moot: replace its line with `line`.
    fn withdraw(&self, line: &str);
    /// A full line above the prompt.
    fn say(&self, line: &str);
}

/// The real terminal (stderr).
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl PromptSink for Terminal {
    fn show(&self, prompt: &str) {
        let mut shown = PROMPT.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = io::stderr().lock();
        let _ = err.write_all(ERASE_LINE);
        let _ = err.write_all(prompt.as_bytes());
        let _ = err.flush();
        *shown = Some(prompt.to_owned());
    }

    fn answered(&self) {
        *PROMPT.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn withdraw(&self, line: &str) {
        let mut shown = PROMPT.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = io::stderr().lock();
        let _ = err.write_all(ERASE_LINE);
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
        *shown = None;
    }

    fn say(&self, line: &str) {
        print_line_bytes(format!("{line}\n").as_bytes());
    }
}
