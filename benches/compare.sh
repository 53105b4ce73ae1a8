#!/usr/bin/env bash
# Rampart side by side with a third-party signer (rust-nostr's
# NostrConnectRemoteSigner, crates/peer-signer), on the same embedded relay,
# with the same load: C clients × R requests, K in flight each, sign_event.
#
#   bash benches/compare.sh                 # C=10 R=1000 K=10
#   C=10 R=2000 K=10 KEEP=out bash benches/compare.sh
#
# Prints both reports and the comparison: signer CPU µs per request (as
# measured, and in floors of each run), throughput, latency, and whether the
# bars hold (Rampart ≤ 1/3 of the peer's CPU per request, ≥ 2× its
# throughput). KEEP=DIR keeps the JSON reports and logs in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

C=${C:-10}
R=${R:-1000}
K=${K:-10}
METHOD=${METHOD:-sign_event}
TARGET=${CARGO_TARGET_DIR:-target}

. benches/lib.sh
build_binaries

OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"
cleanup() {
    stop_children
    [ -z "${KEEP:-}" ] && rm -rf "$OUT"
    return 0
}
trap cleanup EXIT
start_relay "$OUT"

LOAD=(-c "$C" -r "$R" -k "$K" --method "$METHOD" --relay-pid "$RELAY_PID")

echo "::: rampart (nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
"$BIN/rampart" bench --spawn --relay "$RELAY" "${LOAD[@]}" --label rampart --json \
    >"$OUT/rampart.json"

echo "::: peer-signer (nostr-connect 0.44)" >&2
start_peer "$OUT"
"$BIN/rampart" bench --uri "$PEER_URI" --bunker-pid "$PEER_PID" "${LOAD[@]}" \
    --label peer --json >"$OUT/peer.json"

"$BIN/rampart" bench --compare "$OUT/rampart.json" "$OUT/peer.json"
