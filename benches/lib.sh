# Shared by benches/compare.sh and benches/sweep.sh: build the binaries and
# start the relay and the peer signer both compare against. Source it after
# setting TARGET and the directory for logs ($1 of each function).

RELAY_PID=""
PEER_PID=""

build_binaries() {
    echo "::: building release binaries" >&2
    cargo build --release --quiet -p rampart -p rampart-peer-signer
    BIN="$TARGET/release"
}

# Stop only the processes started here, by their pids.
stop_children() {
    [ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null || true
    [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
    return 0
}

# One embedded relay for both signers (sets RELAY and RELAY_PID). It answers
# OK to ephemeral events, which the peer waits for after each answer.
start_relay() {
    local logs=$1
    local port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    RELAY="ws://127.0.0.1:$port"
    # Both signers' answers pass unthrottled: neither is `--trust`ed here
    # (the peer cannot authenticate), and the relay's per-connection rate
    # (1,000 a second) would drop what either answers beyond it.
    "$BIN/rampart" relay --listen "127.0.0.1:$port" --events-per-second 1000000 \
        2>"$logs/relay.log" &
    RELAY_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the relay did not start (see $logs/relay.log)" >&2
    return 1
}

# rust-nostr's NostrConnectRemoteSigner on $RELAY (sets PEER_URI and PEER_PID).
start_peer() {
    local logs=$1
    "$BIN/peer-signer" --relay "$RELAY" >"$logs/peer.uri" 2>"$logs/peer.log" &
    PEER_PID=$!
    for _ in $(seq 1 300); do
        [ -s "$logs/peer.uri" ] && break
        sleep 0.1
    done
    PEER_URI=$(head -n 1 "$logs/peer.uri")
    [ -n "$PEER_URI" ] || { echo "the peer did not start (see $logs/peer.log)" >&2; return 1; }
}
