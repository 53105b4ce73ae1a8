//! `rampart audit`: read the audit log (the dashboard's Audit log page reads
//! the same rows, in the same JSON shape: [`AuditView`]).

use std::time::Duration;

use anyhow::Result;
use bunker::admin::{self, AuditView};
use bunker::describe::{json_terminal_safe, terminal_safe};
use nip46::nostr::prelude::Timestamp;
use store::{AuditDecision, AuditQuery, ChainPoint};

use crate::config::Config;

/// `rampart audit`
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// `verify` or `head`; without one, print rows.
    #[command(subcommand)]
    action: Option<Action>,
    /// Only rows newer than this (e.g. 10m, 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only this method.
    #[arg(long)]
    method: Option<String>,
    /// Only this decision (allowed, approved, denied, pending, rate_limited, invalid).
    #[arg(long)]
    decision: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON lines (the same as `--format json`).
    #[arg(long)]
    json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How rows are printed.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Tab-separated, for a terminal.
    Text,
    /// One JSON object per line.
    Json,
    /// CSV with a header line (RFC 4180), for spreadsheets.
    Csv,
}

/// What to do with the audit log besides reading it.
#[derive(clap::Subcommand)]
enum Action {
    /// Recompute the hash chain; exit non-zero naming the first row that
    /// does not match, or if the newest rows were removed since the head
    /// recorded in the data dir (or given with --head) was taken.
    Verify {
        /// A head exported earlier (`rampart audit head`), as SEQ:HASH.
        #[arg(long)]
        head: Option<String>,
    },
    /// Print the chain's head (SEQ:HASH) to keep outside the database.
    Head,
}

/// Read, verify, or export the head of the audit log.
pub fn run(args: Args, config: &Config) -> Result<()> {
    match args.action {
        Some(Action::Verify { head }) => verify(config, head.as_deref()),
        Some(Action::Head) => {
            let store = config.database()?.open()?;
            match store.audit_head()? {
                Some(head) => println!("{}", head.to_text()),
                None => eprintln!("the audit log is empty"),
            }
            Ok(())
        }
        None => list(args, config),
    }
}

/// `rampart audit verify`: the chain from its checkpoint, against the head
/// recorded in the data dir (and `--head`); a good result is recorded as
/// the new head.
fn verify(config: &Config, given: Option<&str>) -> Result<()> {
    let given = given
        .map(|text| {
            ChainPoint::parse(text).ok_or_else(|| {
                anyhow::anyhow!("--head must be SEQ:HASH (from `rampart audit head`)")
            })
        })
        .transpose()?;
    let store = config.database()?.open()?;
    let recorded = head_file::read(&config.data_dir)?;
    // A checkpoint says "rows before me were pruned": only believed when
    // retention is on, and not for a recorded head younger than it allows
    // (the file's time is outside the database).
    if let Some(checkpoint) = store.audit_checkpoint()? {
        let Some(days) = config.audit.keep_days else {
            anyhow::bail!(
                "the audit log does not verify: it starts after row {} (a retention checkpoint) \
                 but [audit] keep_days is not set: its older rows were deleted",
                checkpoint.seq
            );
        };
        if let Some(head) = recorded
            && head.seq <= checkpoint.seq
            && let Some(age) = head_file::age(&config.data_dir)
            && age < Duration::from_secs(u64::from(days) * 86_400)
        {
            anyhow::bail!(
                "the audit log does not verify: the head recorded {} ago (row {}) is before \
                 its retention checkpoint, younger than [audit] keep_days = {days}: rows were deleted",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                head.seq
            );
        }
    }
    // Every head given or recorded, checked in one pass over the chain.
    let verified = store::verify_store(&*store, given.into_iter().chain(recorded))
        .map_err(|e| anyhow::anyhow!("the audit log does not verify: {e}"))?;
    // Recorded when it is a row and it moved (rewriting the same head would
    // make it look younger than it is).
    if let Some(head) = verified.head
        && verified.rows > 0
        && Some(head) != recorded
    {
        head_file::write(&config.data_dir, head)?;
    }
    let from = verified
        .checkpoint
        .map(|c| format!(" from the checkpoint at row {}", c.seq))
        .unwrap_or_default();
    match verified.head {
        Some(head) => eprintln!(
            "the audit log verifies: {} rows{from}, head {}",
            verified.rows,
            head.to_text()
        ),
        None => eprintln!("the audit log is empty"),
    }
    Ok(())
}

/// Print matching rows, newest first.
fn list(args: Args, config: &Config) -> Result<()> {
    let format = if args.json { Format::Json } else { args.format };
    let store = config.database()?.open()?;
    let decision = match args.decision.as_deref() {
        None => None,
        Some(d) => {
            Some(AuditDecision::parse(d).ok_or_else(|| anyhow::anyhow!("unknown decision `{d}`"))?)
        }
    };
    let query = AuditQuery {
        since: args
            .since
            .map(|d| Timestamp::from_secs(Timestamp::now().as_secs().saturating_sub(d.as_secs()))),
        method: args.method,
        decision,
        limit: Some(args.limit),
        ..AuditQuery::default()
    };
    let keys = store.keys()?;
    let sessions = store.sessions()?;
    let mut csv = (format == Format::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(w) = &mut csv {
        w.write_record(CSV_HEADER)?;
    }
    for row in store.audit(&query)? {
        let key = keys
            .iter()
            .find(|k| k.id == row.key_id)
            .map_or("?", |k| k.name.as_str());
        if let Some(w) = &mut csv {
            let view = AuditView::new(&row, &keys, &sessions);
            w.write_record(csv_record(&view))?;
        } else if format == Format::Json {
            let json = serde_json::to_string(&AuditView::new(&row, &keys, &sessions))?;
            println!("{}", json_terminal_safe(&json));
        } else {
            let kind = row.kind.map(|k| format!(":{k}")).unwrap_or_default();
            // A row standing for several refused events says how many.
            let events = if row.events == 1 {
                String::new()
            } else {
                format!("\t×{}", row.events)
            };
            let by = row
                .operator
                .as_deref()
                .map(|o| {
                    let names: Vec<String> = o.split(',').map(admin::voter_name).collect();
                    format!("\tby {}", terminal_safe(&names.join(",")))
                })
                .unwrap_or_default();
            println!(
                "{}\t{}\t{}…\t{}{}\t{}\t{}{events}{by}",
                row.at.as_secs(),
                terminal_safe(key),
                row.client
                    .map(|c| c.to_hex()[..12].to_owned())
                    .unwrap_or_else(|| "-".repeat(12)),
                terminal_safe(&row.method),
                kind,
                row.decision.as_str(),
                terminal_safe(&row.outcome)
            );
        }
    }
    if let Some(mut w) = csv {
        w.flush()?;
    }
    Ok(())
}

const CSV_HEADER: [&str; 15] = [
    "seq",
    "at",
    "key",
    "client",
    "app",
    "event_id",
    "request_id",
    "method",
    "kind",
    "decision",
    "outcome",
    "signed_event_id",
    "events",
    "at_utc",
    "operator",
];

fn csv_record(v: &AuditView) -> Vec<String> {
    vec![
        v.seq.to_string(),
        v.at.to_string(),
        cell(&v.key),
        v.client.clone(),
        cell(v.app.as_deref().unwrap_or("")),
        v.event_id.clone(),
        cell(&v.request_id),
        cell(&v.method),
        v.kind.map(|k| k.to_string()).unwrap_or_default(),
        v.decision.to_owned(),
        cell(&v.outcome),
        v.signed_event_id.clone().unwrap_or_default(),
        v.events.to_string(),
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(v.at))
            .to_string(),
        v.operator.clone().unwrap_or_default(),
    ]
}

/// Text from apps, made safe to open in a spreadsheet: a cell starting
/// with `=`, `+`, `-`, `@` (or a tab or carriage return) would be taken as
/// a formula, so it gets a leading `'`.
fn cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// The head of the chain as last verified (or recorded by `rampart run`),
/// kept in the data dir: outside the database, so deleting the newest rows
/// there shows.
pub mod head_file {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result};
    use store::ChainPoint;

    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("audit-head")
    }

    /// The recorded head, if any.
    pub fn read(data_dir: &Path) -> Result<Option<ChainPoint>> {
        let path = path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => ChainPoint::parse(&text)
                .map(Some)
                .with_context(|| format!("{} is not an audit head (SEQ:HASH)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
        }
    }

    /// How long ago the head was recorded (the file's modification time).
    pub fn age(data_dir: &Path) -> Option<std::time::Duration> {
        let modified = std::fs::metadata(path(data_dir)).ok()?.modified().ok()?;
        modified.elapsed().ok()
    }

    /// Record `head`, replacing the file atomically.
    pub fn write(data_dir: &Path, head: ChainPoint) -> Result<()> {
        use std::io::Write;
        let path = path(data_dir);
        // Each writer its own temporary name; synced before the rename.
        let temp = data_dir.join(format!(
            "audit-head.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(format!("{}\n", head.to_text()).as_bytes())?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e).with_context(|| format!("could not write {}", temp.display()));
        }
        std::fs::rename(&temp, &path).with_context(|| format!("could not write {}", path.display()))
    }
}
