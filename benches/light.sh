#!/usr/bin/env bash
# Light load and the idle bunker (issue 16): `rampart bench --spawn`, open
# loop at each rate (C=10 clients, K=10 in flight), closed loop, then idle
# seconds with the clients connected; on SQLite and on PostgreSQL (one
# replica; a throwaway cluster of Debian's postgresql, run as root). Prints
# floors, CPU per request, wake-ups per request, bunker-added p99 and the
# idle figures per run; raw reports in $KEEP (default: a temp dir, removed).
#
#   bash benches/light.sh                       # every rate once, both stores
#   RUNS=3 RATES="100 500 2000" STORES=sqlite bash benches/light.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
RATES=${RATES:-"1 10 100 500 2000 closed"}
STORES=${STORES:-"sqlite postgres"}
IDLE=${IDLE:-5}
TARGET=${CARGO_TARGET_DIR:-target}
echo "::: building release binaries" >&2
cargo build --release --quiet -p rampart
BIN="$TARGET/release"
OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"

# About 20 s of load per run, at least 30 requests (CPU is read in 10 ms ticks).
requests_per_client() {
    case $1 in
        closed) echo 1000 ;;
        *) python3 -c "print(max(3, min(2000, int($1) * 20 // 10)))" ;;
    esac
}

PGDIR=""
if [[ " $STORES " == *" postgres "* ]]; then
    PG_BIN=${RAMPART_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
    [ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL binaries (apt install postgresql)" >&2; exit 1; }
    PGDIR=$(mktemp -d)
    chown postgres "$PGDIR"
    PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pg() { runuser -u postgres -- "$PG_BIN/$@"; }
    pg initdb -D "$PGDIR/data" -A trust -U postgres --no-sync >/dev/null
    pg pg_ctl -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
        -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
fi
cleanup() {
    if [ -n "$PGDIR" ]; then
        pg pg_ctl -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PGDIR"
    fi
    [ -z "${KEEP:-}" ] && rm -rf "$OUT"
    return 0
}
trap cleanup EXIT

n=0
for run in $(seq 1 "$RUNS"); do
    for store in $STORES; do
        for rate in $RATES; do
            n=$((n + 1))
            args=(--spawn -c 10 -k 10 -r "$(requests_per_client "$rate")" --idle-secs "$IDLE" --json
                  --label "$store-$rate-$run")
            [ "$rate" != closed ] && args+=(--rate "$rate")
            echo "::: run $run, $store, $rate req/s (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
            if [ "$store" = postgres ]; then
                pg createdb -h 127.0.0.1 -p "$PGPORT" -U postgres "light$n"
                RAMPART_DATABASE="postgres://postgres@127.0.0.1:$PGPORT/light$n" \
                    "$BIN/rampart" bench --replicas 1 "${args[@]}" >"$OUT/$store-$rate-$run.json"
            else
                "$BIN/rampart" bench "${args[@]}" >"$OUT/$store-$rate-$run.json"
            fi
        done
    done
done

python3 - "$OUT" <<'PY'
import glob, json, os, sys
nan = float("nan")
print(f"{'run':<20} {'floors':>7} {'µs/req':>7} {'floor µs':>8} {'wake/req':>8} {'p99 added ms':>12} {'idle wake/s':>11} {'idle ms/s':>9} {'errors':>6}")
def key(path):
    store, rate, run = os.path.basename(path)[:-5].rsplit("-", 2)
    return (store, 10**9 if rate == "closed" else int(rate), int(run))
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")), key=key):
    r = json.load(open(path))
    idle = r.get("idle") or {}
    added = (r.get("bunker_added") or {}).get("p99_us", nan) / 1000
    print(f"{r['label']:<20} {r.get('bunker_cpu_floors') or nan:>7.2f} "
          f"{(r.get('bunker_cpu') or {}).get('us_per_request', nan):>7.0f} "
          f"{(r.get('floor') or {}).get('request_us', nan):>8.1f} "
          f"{r.get('bunker_wakeups_per_request') or nan:>8.2f} {added:>12.2f} "
          f"{idle.get('wakeups_per_second', nan):>11.1f} {idle.get('cpu_ms_per_second', nan):>9.1f} "
          f"{(r.get('errors') or {}).get('count', 0):>6}")
PY
