#!/usr/bin/env bash
# CPU per request of Rampart on SQLite, on PostgreSQL alone, and as two
# replicas on PostgreSQL, under the same load (C clients × R requests, K in
# flight each, sign_event), in one run so the ratios are comparable. Starts a
# throwaway PostgreSQL cluster (Debian's postgresql; run as root, the
# cluster runs as the `postgres` user); each run starts its embedded relay.
#
#   bash benches/replicas.sh                  # C=10 R=1000 K=10
#   C=10 R=2000 K=10 KEEP=out bash benches/replicas.sh
set -euo pipefail
cd "$(dirname "$0")/.."

C=${C:-10}
R=${R:-1000}
K=${K:-10}
TARGET=${CARGO_TARGET_DIR:-target}
PG_BIN=${RAMPART_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL binaries (apt install postgresql)" >&2; exit 1; }

. benches/lib.sh
echo "::: building release binaries" >&2
cargo build --release --quiet -p rampart
BIN="$TARGET/release"

OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"
PGDIR=$(mktemp -d)
chown postgres "$PGDIR"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg() { runuser -u postgres -- "$PG_BIN/$@"; }
cleanup() {
    stop_children
    pg pg_ctl -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
    [ -z "${KEEP:-}" ] && rm -rf "$OUT"
    return 0
}
trap cleanup EXIT
pg initdb -D "$PGDIR/data" -A trust -U postgres --no-sync >/dev/null
pg pg_ctl -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
db() {
    pg createdb -h 127.0.0.1 -p "$PGPORT" -U postgres "$1"
    echo "postgres://postgres@127.0.0.1:$PGPORT/$1"
}

# Each run starts its own embedded relay, trusting the bunker's signer key
# (never rate-limited there), as `--spawn` does.
LOAD=(-c "$C" -r "$R" -k "$K" --json)
echo "::: nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "::: one bunker on SQLite" >&2
"$BIN/rampart" bench --spawn "${LOAD[@]}" --label sqlite >"$OUT/sqlite.json"
echo "::: one replica on PostgreSQL" >&2
RAMPART_DATABASE=$(db one) "$BIN/rampart" bench --spawn --replicas 1 "${LOAD[@]}" \
    --label postgres-1 >"$OUT/postgres-1.json"
echo "::: two replicas on PostgreSQL" >&2
RAMPART_DATABASE=$(db two) "$BIN/rampart" bench --spawn --replicas 2 "${LOAD[@]}" \
    --label postgres-2 >"$OUT/postgres-2.json"

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
runs = {n: json.load(open(os.path.join(out, f"{n}.json"))) for n in ("sqlite", "postgres-1", "postgres-2")}
def us(r): return r["bunker_cpu"]["us_per_request"] if r.get("bunker_cpu") else float("nan")
print(f"{'run':<12} {'bunker µs/req':>14} {'floors':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
nan = float("nan")
for name, r in runs.items():
    lat = r.get("latency") or {}
    print(f"{name:<12} {us(r):>14.1f} {r.get('bunker_cpu_floors') or nan:>7.2f} "
          f"{r.get('throughput', nan):>8.0f} {lat.get('p50_us', nan) / 1000:>7.2f} {lat.get('p99_us', nan) / 1000:>7.2f}")
print(f"postgres-1 / sqlite:     {us(runs['postgres-1']) / us(runs['sqlite']):.2f}")
print(f"postgres-2 / postgres-1: {us(runs['postgres-2']) / us(runs['postgres-1']):.2f}  (bar: <= 1.5)")
PY
