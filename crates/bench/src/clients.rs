//! The load generator's clients: one `client::Client` per simulated app,
//! each with its own key pair and its own relay connection, as real apps.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use client::{Client, ClientOptions, Error};
use tokio::task::JoinSet;

/// Attempts at connecting with a secret the signer does not know yet.
const ATTEMPTS: u32 = 3;

/// Wait between them: a running bunker notices tokens minted by another
/// process within a fraction of a second, a busy one a little later.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Connect with `uri`; a refusal is retried (the secret may have been
/// minted a moment ago), anything else is final.
async fn connect_one(uri: &str, options: ClientOptions) -> Result<Client, Error> {
    let mut attempt = 1;
    loop {
        match Client::connect(uri, options.clone()).await {
            Err(Error::Denied { .. }) if attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            result => return result,
        }
    }
}

/// Connect `count` clients, the i-th with `uris[i % uris.len()]`: one URI
/// per client for single-use secrets, or one URI shared by all for a signer
/// whose secret may be reused (or that has none). All connect at once.
pub async fn connect(uris: &[String], count: usize, timeout: Duration) -> Result<Vec<Client>> {
    if uris.is_empty() {
        bail!("no bunker:// URI to connect to");
    }
    let options = ClientOptions::new()
        .name("rampart bench")
        .request_timeout(timeout)
        // Not needed for a benchmark, and some signers never answer it.
        .switch_relays_timeout(None);
    let mut connecting = JoinSet::new();
    for index in 0..count {
        let uri = uris[index % uris.len()].clone();
        let options = options.clone();
        connecting.spawn(async move {
            let client = connect_one(&uri, options)
                .await
                .with_context(|| format!("client {index} could not connect"))?;
            Ok::<_, anyhow::Error>((index, client))
        });
    }
    let mut clients: Vec<(usize, Client)> = Vec::with_capacity(count);
    while let Some(joined) = connecting.join_next().await {
        clients.push(joined.context("a connecting task failed")??);
    }
    clients.sort_by_key(|(index, _)| *index);
    Ok(clients.into_iter().map(|(_, client)| client).collect())
}
