//! Publish→receive round trip through the embedded relay on loopback: one
//! pool publishes a kind-24133 event, another pool subscribed to that kind
//! receives it. This is the transport's share of every NIP-46 request; the
//! target is under 1 ms at the median.
//!
//! Signing happens outside the timed section; verification of the event (by
//! the relay and by the receiving pool) is inside it, as in production.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nostr::prelude::{EventBuilder, Filter, FinalizeEvent, Keys, Kind};
use relay::server::{self, ServerConfig};
use relay::{PoolConfig, PoolEvent, RelayPool};

fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let keys = Keys::generate();
    let (relay, publisher, subscriber, mut events) = runtime.block_on(async {
        let relay = server::spawn(ServerConfig::default()).await.expect("relay");
        let (subscriber, mut events) = RelayPool::new(PoolConfig::default());
        subscriber.add_relay(&relay.url()).expect("add relay");
        subscriber
            .subscribe(
                Filter::new()
                    .kind(Kind::NostrConnect)
                    .author(keys.public_key()),
            )
            .expect("subscribe");
        loop {
            match events.recv().await {
                Some(PoolEvent::EndOfStoredEvents { .. }) => break,
                Some(_) => continue,
                None => panic!("pool closed"),
            }
        }
        let (publisher, _) = RelayPool::new(PoolConfig::default());
        publisher.add_relay(&relay.url()).expect("add relay");
        (relay, publisher, subscriber, events)
    });

    let mut counter: u64 = 0;
    c.bench_function("publish_receive_kind_24133_loopback", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    counter += 1;
                    let event = EventBuilder::new(Kind::NostrConnect, counter.to_string())
                        .finalize(&keys)
                        .expect("sign");
                    let start = Instant::now();
                    publisher.publish(&event).expect("publish");
                    loop {
                        match events.recv().await {
                            Some(PoolEvent::Event { event: got, .. }) if got.id == event.id => {
                                break;
                            }
                            Some(_) => continue,
                            None => panic!("pool closed"),
                        }
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });

    runtime.block_on(async {
        publisher.shutdown().await;
        subscriber.shutdown().await;
        relay.shutdown().await;
    });
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
