#!/usr/bin/env bash
# Seed each fuzz target from the test vectors and run it for SECONDS
# (default 20): `bash fuzz/run.sh [SECONDS] [TARGET…]`. A crash fails the
# script. Long runs for docs/security.md: `bash fuzz/run.sh 0 TARGET` with
# `-runs=N` in FUZZ_ARGS, e.g. FUZZ_ARGS=-runs=10000000.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
python3 seed.py corpus
for target in "${targets[@]}"; do
  echo "::: fuzz $target (${seconds}s)"
  args=(-max_len=65536)
  if [ "$seconds" -gt 0 ]; then args+=(-max_total_time="$seconds"); fi
  # shellcheck disable=SC2206
  extra=(${FUZZ_ARGS:-})
  log="$(mktemp)"
  status=0
  cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
    "${args[@]}" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs|ERROR|panicked|SUMMARY|^error" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed (exit $status): see fuzz/artifacts/$target" >&2
    exit 1
  fi
  rm -f "$log"
done
