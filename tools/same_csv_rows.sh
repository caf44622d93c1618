#!/bin/bash
# Behaviour check for a refactor (issue 28): a tiny real search, a resumed one (SIGINT during fit,
# then the same command) and a 2-worker one, their metrics_log.csv files left in OUTDIR.
#   tools/same_csv_rows.sh GRID.xlsx PRESET.toml DATA_DIR OUTDIR      # once before, once after
#   python tools/same_csv_rows.py BEFORE_DIR AFTER_DIR                 # same rows, timings aside
set -u
GRID=$(realpath "$1"); PRESET=$(realpath "$2"); DATA=$(realpath "$3"); OUT=$4
rm -rf "$OUT"; mkdir -p "$OUT/pauses"; cd "$OUT" || exit 2
export BCPARETO_CACHE=$PWD/cache TF_CPP_MIN_LOG_LEVEL=3
run() { bcpareto search "$GRID" --config "$PRESET" --data-dir "$DATA" "$@"; }
run --run-dir single --workers 1 > single.log 2>&1; echo "single rc=$?"
BCPARETO_PAUSE_AT=fit BCPARETO_PAUSE_DIR=pauses BCPARETO_PAUSE_SECONDS=600 \
    run --run-dir resumed --workers 1 > resumed1.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do ls pauses | grep -q fit && break; sleep 0.5; done
sleep 1; kill -INT $pid; wait $pid; echo "interrupted rc=$?"
run --run-dir resumed --workers 1 > resumed2.log 2>&1; echo "resumed rc=$?"
run --run-dir two --workers 2 > two.log 2>&1; echo "two workers rc=$?"
