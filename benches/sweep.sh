#!/usr/bin/env bash
# Latency against offered load, for Rampart and the peer signer
# (crates/peer-signer), on one embedded relay: open-loop runs of
# `rampart bench --rate N` for each rate, then a plot.
#
#   bash benches/sweep.sh                       # writes docs/latency-vs-load.svg
#   RATES="250 500 1000" SECONDS_PER_RATE=5 bash benches/sweep.sh
#
# Each point is C=10 clients, K=10 in flight each, sign_event, for
# SECONDS_PER_RATE seconds. The JSON reports go to $RESULTS (default
# target/bench-results/, one per line in sweep.jsonl);
# benches/plot_latency.py draws the SVG from them.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"250 500 1000 1500 2000 2500"}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
C=${C:-10}
K=${K:-10}
TARGET=${CARGO_TARGET_DIR:-target}
RESULTS=${RESULTS:-$TARGET/bench-results}
PLOT=${PLOT:-docs/latency-vs-load.svg}

. benches/lib.sh
build_binaries
mkdir -p "$RESULTS"
: >"$RESULTS/sweep.jsonl"
trap stop_children EXIT
start_relay "$RESULTS"
start_peer "$RESULTS"

for RATE in $RATES; do
    R=$(( RATE * SECONDS_PER_RATE / C ))
    LOAD=(-c "$C" -r "$R" -k "$K" --rate "$RATE" --relay-pid "$RELAY_PID" --json)
    echo "::: $RATE req/s: rampart" >&2
    "$BIN/rampart" bench --spawn --relay "$RELAY" "${LOAD[@]}" --label rampart \
        | tr -d '\n' >>"$RESULTS/sweep.jsonl"
    echo >>"$RESULTS/sweep.jsonl"
    echo "::: $RATE req/s: peer" >&2
    "$BIN/rampart" bench --uri "$PEER_URI" --bunker-pid "$PEER_PID" "${LOAD[@]}" --label peer \
        | tr -d '\n' >>"$RESULTS/sweep.jsonl"
    echo >>"$RESULTS/sweep.jsonl"
done

python3 benches/plot_latency.py "$RESULTS/sweep.jsonl" "$PLOT"
echo "::: wrote $PLOT" >&2
