//! The approval prompt of an interactive `rampart run`: one line per held
//! request (app, key, method, kind or summary), answered with `y` (allow
//! once), `a` (always allow), `n` (deny) or `d` (always deny).
//!
//! It asks the engine what is waiting over the admin channel and sends the
//! answer back the same way, so a request answered in the dashboard or from
//! another shell meanwhile is withdrawn from the prompt, not answered twice.

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use bunker::admin::{Answer, key_name};
use bunker::describe;
use bunker::engine::VoteOutcome;
use bunker::service::{AdminCommand, AdminSender};
use nip46::nostr::prelude::Timestamp;
use store::{ApprovalId, PendingApproval, StoredKey, Vote};
use tokio::sync::{mpsc, oneshot};

use crate::terminal::console::PromptSink;

/// The help line for an answer that is not one.
const HELP: &str = "  answer y (allow once), a (always allow), n (deny) or d (always deny)";

/// Lines typed on stdin, read on a thread of their own (reading blocks).
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no terminal prompt: could not read stdin");
    }
    rx
}

/// Prompt for held requests until the bunker stops or stdin closes.
/// `poll` is how often the engine is asked what is waiting.
pub async fn run(
    admin: AdminSender,
    keys: Vec<StoredKey>,
    mut answers: mpsc::Receiver<String>,
    sink: Arc<dyn PromptSink>,
    poll: Duration,
) {
    let mut asked: HashSet<ApprovalId> = HashSet::new();
    loop {
        let Some(pending) = fetch_pending(&admin).await else {
            return;
        };
        asked.retain(|id| pending.iter().any(|a| &a.id == id));
        let Some(next) = pending.into_iter().find(|a| !asked.contains(&a.id)) else {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                line = answers.recv() => match line {
                    None => return,
                    Some(l) if !l.trim().is_empty() => sink.say("  nothing is waiting for an answer"),
                    Some(_) => {}
                },
            }
            continue;
        };
        asked.insert(next.id.clone());
        let text = prompt_line(&next, &keys);
        sink.show(&text);
        loop {
            tokio::select! {
                line = answers.recv() => {
                    let Some(line) = line else {
                        sink.withdraw("  (stdin closed: answer in the dashboard or with `rampart approvals`)");
                        return;
                    };
                    sink.answered();
                    match Answer::from_key(&line) {
                        Some(answer) => {
                            decide(&admin, &next, answer, sink.as_ref()).await;
                            break;
                        }
                        None => {
                            sink.say(HELP);
                            sink.show(&text);
                        }
                    }
                }
                () = tokio::time::sleep(poll) => {
                    let Some(now_pending) = fetch_pending(&admin).await else {
                        sink.withdraw("  (the bunker stopped)");
                        return;
                    };
                    if !now_pending.iter().any(|a| a.id == next.id) {
                        sink.withdraw(&format!("  {} was answered elsewhere or expired", short(&next.id)));
                        break;
                    }
                }
            }
        }
    }
}

/// One line: who asks, with which key, for what, and the answers.
pub fn prompt_line(approval: &PendingApproval, keys: &[StoredKey]) -> String {
    let app = describe::app_label(&approval.metadata, &approval.client.to_hex());
    let unverified = if approval.metadata.name.is_some() {
        " (unverified name)"
    } else {
        ""
    };
    let left = approval
        .expires_at
        .as_secs()
        .saturating_sub(Timestamp::now().as_secs());
    // The line is a summary: it says where the complete event is.
    let whole = approval
        .event
        .as_ref()
        .map(|e| {
            format!(
                " · complete event {} bytes: rampart approvals show {}",
                e.as_json().len(),
                short(&approval.id).trim_start_matches("request ")
            )
        })
        .unwrap_or_default();
    format!(
        "? {app}{unverified} · key {key} · {what}{whole} · {left} s · [y] once [a] always [n] deny [d] always deny › ",
        app = describe::terminal_safe(&app),
        key = describe::terminal_safe(&key_name(keys, approval.key_id)),
        what = describe::terminal_safe(&describe::one_line(approval)),
    )
}

async fn fetch_pending(admin: &AdminSender) -> Option<Vec<PendingApproval>> {
    let (reply, answer) = oneshot::channel();
    admin.send(AdminCommand::Pending { reply }).await.ok()?;
    answer.await.ok()
}

async fn decide(
    admin: &AdminSender,
    approval: &PendingApproval,
    answer: Answer,
    sink: &dyn PromptSink,
) {
    let (reply, result) = oneshot::channel();
    let command = AdminCommand::Decide {
        id: approval.id.clone(),
        vote: Vote {
            by: store::OWNER.to_owned(),
            decision: answer.decision(None),
        },
        reply,
    };
    if admin.send(command).await.is_err() {
        sink.say("  the bunker stopped");
        return;
    }
    match result.await {
        Ok(Ok(VoteOutcome::Settled)) => {
            tracing::debug!(approval = %approval.id, answer = answer.as_str(), "decided in the terminal");
            sink.say(&format!("  {} {}", short(&approval.id), answer.done()));
        }
        Ok(Ok(VoteOutcome::Waiting { allowed, needed })) => sink.say(&format!(
            "  {}: your allow is recorded ({allowed} of the {needed} people it needs)",
            short(&approval.id)
        )),
        Ok(Err(e)) => sink.say(&format!("  {e}")),
        Err(_) => sink.say("  the bunker stopped"),
    }
}

fn short(id: &ApprovalId) -> String {
    format!("request {}", &id.0[..id.0.len().min(8)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use nip46::nostr::prelude::Keys;
    use nip46::{ClientMetadata, Method};
    use store::{ApprovalDecision, ApprovalStatus, DecisionScope, KeyId};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl PromptSink for Recorder {
        fn show(&self, prompt: &str) {
            self.0.lock().unwrap().push(format!("show {prompt}"));
        }
        fn answered(&self) {}
        fn withdraw(&self, line: &str) {
            self.0.lock().unwrap().push(format!("withdraw {line}"));
        }
        fn say(&self, line: &str) {
            self.0.lock().unwrap().push(format!("say {line}"));
        }
    }

    fn held(id: &str) -> PendingApproval {
        PendingApproval {
            id: ApprovalId(id.into()),
            key_id: KeyId(1),
            client: Keys::generate().public_key(),
            metadata: ClientMetadata {
                name: Some("Damus".into()),
                url: None,
                image: None,
            },
            request_id: "r".into(),
            method: Method::SignEvent,
            kind: Some(1),
            summary: store::RequestSummary::SignEvent {
                kind: 1,
                content: "gm".into(),
                content_hidden: 0,
                tags: Vec::new(),
                tags_hidden: 0,
                created_at: None,
            },
            event: None,
            created_at: Timestamp::now(),
            expires_at: Timestamp::from_secs(Timestamp::now().as_secs() + 60),
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
        }
    }

    type Decisions = Arc<Mutex<Vec<(ApprovalId, ApprovalDecision)>>>;

    /// The engine's side: `waiting` is held until decided (or removed by the test).
    fn engine(waiting: Arc<Mutex<Vec<PendingApproval>>>, decisions: Decisions) -> AdminSender {
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(command) = rx.recv().await {
                match command {
                    AdminCommand::Pending { reply } => {
                        let _ = reply.send(waiting.lock().unwrap().clone());
                    }
                    AdminCommand::Decide { id, vote, reply } => {
                        waiting.lock().unwrap().retain(|a| a.id != id);
                        decisions.lock().unwrap().push((id, vote.decision));
                        let _ = reply.send(Ok(VoteOutcome::Settled));
                    }
                    _ => {}
                }
            }
        });
        tx
    }

    async fn until<F: Fn() -> bool>(check: F) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn one_line_per_request_and_letters_answer() {
        let waiting = Arc::new(Mutex::new(vec![held("aa01"), held("bb02")]));
        let decisions = Decisions::default();
        let admin = engine(waiting.clone(), decisions.clone());
        let sink = Arc::new(Recorder::default());
        let (typed, lines) = mpsc::channel(8);
        let task = tokio::spawn(run(
            admin,
            vec![],
            lines,
            sink.clone(),
            Duration::from_millis(20),
        ));

        typed.send("maybe".into()).await.unwrap();
        typed.send("a".into()).await.unwrap();
        until(|| decisions.lock().unwrap().len() == 1).await;
        typed.send("n".into()).await.unwrap();
        until(|| decisions.lock().unwrap().len() == 2).await;
        drop(typed);
        task.await.unwrap();

        let d = decisions.lock().unwrap().clone();
        assert_eq!(
            d[0],
            (
                ApprovalId("aa01".into()),
                ApprovalDecision {
                    allow: true,
                    scope: DecisionScope::Always { until: None }
                }
            )
        );
        assert_eq!(
            d[1],
            (
                ApprovalId("bb02".into()),
                ApprovalDecision {
                    allow: false,
                    scope: DecisionScope::Once
                }
            )
        );
        let log = sink.0.lock().unwrap().clone();
        let first = log.iter().find(|l| l.starts_with("show ")).unwrap();
        assert!(
            first.contains("Damus (unverified name)")
                && first.contains("\"gm\" · sign_event kind 1 (Short text note)"),
            "{first}"
        );
        assert!(!first.contains('\n'), "one line");
        assert!(log.iter().any(|l| l == &format!("say {HELP}")), "{log:?}");
        assert!(
            log.iter().any(|l| l.contains("allowed, and remembered")),
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn a_request_answered_elsewhere_is_withdrawn() {
        let waiting = Arc::new(Mutex::new(vec![held("cc03")]));
        let decisions = Decisions::default();
        let admin = engine(waiting.clone(), decisions.clone());
        let sink = Arc::new(Recorder::default());
        let (typed, lines) = mpsc::channel(8);
        let task = tokio::spawn(run(
            admin,
            vec![],
            lines,
            sink.clone(),
            Duration::from_millis(20),
        ));
        until(|| {
            sink.0
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("show "))
        })
        .await;
        waiting.lock().unwrap().clear();
        until(|| {
            sink.0
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("answered elsewhere"))
        })
        .await;
        drop(typed);
        task.await.unwrap();
        assert!(
            decisions.lock().unwrap().is_empty(),
            "nothing was decided here"
        );
    }

    #[test]
    fn the_prompt_line_shows_peer_text_escaped() {
        let mut hostile = held("h");
        hostile.metadata.name = Some("Evil\u{202e}ppA".into());
        hostile.summary = store::RequestSummary::SignEvent {
            kind: 1,
            content: "\u{1b}[2Jgone".into(),
            content_hidden: 0,
            tags: Vec::new(),
            tags_hidden: 0,
            created_at: None,
        };
        let line = prompt_line(&hostile, &[]);
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
    }
}
