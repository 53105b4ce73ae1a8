#!/usr/bin/env bash
# Keys at scale (issue 15): how long `rampart key generate --count N` takes
# (default N=1000, at the vault's default scrypt cost), how long `rampart
# run` with N keys takes from its start to a signature by the Nth key (the
# token minted and the client connected once it serves), and how long a
# passphrase change takes. On a fresh SQLite data dir (or the store
# RAMPART_DATABASE names), embedded relay.
#
#   bash benches/keys.sh            # N=1000
#   N=5000 bash benches/keys.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000}
TARGET=${CARGO_TARGET_DIR:-target}
echo "::: building release binaries" >&2
cargo build --release --quiet -p rampart
BIN="$PWD/$TARGET/release/rampart"
DIR=$(mktemp -d)
RUN_PID=""
cleanup() {
    [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
export RAMPART_PASSPHRASE="bench passphrase"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export RAMPART_EMBEDDED_RELAY="127.0.0.1:$PORT"
export RAMPART_DASHBOARD_LISTEN="127.0.0.1:0"
last=$(printf "team-%0$(( ${#N} > 4 ? ${#N} : 4 ))d" "$N")
now() { date +%s.%N; }

t0=$(now)
"$BIN" --data-dir "$DIR" key generate --name team --count "$N" 2>/dev/null
t1=$(now)
keys=$("$BIN" --data-dir "$DIR" key list | wc -l)
[ "$keys" -eq "$N" ] || { echo "expected $N keys, listed $keys" >&2; exit 1; }

t2=$(now)
"$BIN" --data-dir "$DIR" run --no-prompt >/dev/null 2>"$DIR/run.log" &
RUN_PID=$!
until grep -q "bunker serving" "$DIR/run.log"; do
    kill -0 "$RUN_PID" 2>/dev/null || { cat "$DIR/run.log" >&2; exit 1; }
    sleep 0.02
done
t3=$(now)
uri=$("$BIN" --data-dir "$DIR" uri --key "$last" --grant read,sign_event:1)
echo "$uri" | "$BIN" --data-dir "$DIR" client --session "$DIR/session.json" connect - >/dev/null
"$BIN" --data-dir "$DIR" client --session "$DIR/session.json" sign --kind 1 --content "from $last" >/dev/null
t4=$(now)
kill "$RUN_PID"; wait "$RUN_PID" 2>/dev/null || true; RUN_PID=""

t5=$(now)
RAMPART_NEW_PASSPHRASE="new bench passphrase" "$BIN" --data-dir "$DIR" vault passphrase 2>/dev/null
t6=$(now)

python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$t6" <<'PY'
import sys
n = int(sys.argv[1]); t = [float(x) for x in sys.argv[2:]]
print(f"keys:                                   {n}")
print(f"key generate --count {n}:               {t[1] - t[0]:.2f} s   (bar: < 60 s)")
print(f"run: start → serving:                    {t[3] - t[2]:.2f} s")
print(f"run: start → signature by the last key:  {t[4] - t[2]:.2f} s   (bar: < 10 s)")
print(f"vault passphrase (reseal {n} keys):      {t[6] - t[5]:.2f} s")
PY
