#!/usr/bin/env bash
# Runs the benchmark set of docs/benchmarks.md (docs/benchmarks.md#how-to-run) against a fresh
# `gopush standalone` per scenario (release builds), writing one JSON report per scenario into OUT
# and a summary line each to stdout.
# Usage: [SCENARIOS="name .."] bench/scripts/standalone.sh [OUT_DIR]   (env: GOPUSH, BENCH = the two binaries)
# Needs the default ports 8090 8091 6968 6969 6970 6972 free. Waits (bounded) for other
# compilers on the box to finish before each scenario, since client and server share 2 cores.
set -euo pipefail
OUT=${1:-bench-results}
TARGET=${CARGO_TARGET_DIR:-target}
GOPUSH=${GOPUSH:-$TARGET/release/gopush}
BENCH=${BENCH:-$TARGET/release/gopush-bench}
mkdir -p "$OUT"
PID=""

stop_server() {
    [[ -n $PID ]] || return 0
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    PID=""
}
trap stop_server EXIT

start_server() {
    stop_server
    RUST_LOG=warn "$GOPUSH" standalone > "$OUT/gopush.log" 2>&1 &
    PID=$!
    for _ in $(seq 50); do grep -q serving "$OUT/gopush.log" && return 0; sleep 0.1; done
    echo "gopush standalone did not start:" >&2; cat "$OUT/gopush.log" >&2; exit 1
}

wait_idle() {
    for _ in $(seq 120); do pgrep -x rustc > /dev/null || return 0; sleep 1; done
    echo "(box still busy compiling, measuring anyway)" >&2
}

run() {
    local name=$1; shift
    # SCENARIOS="a b" runs only those (memory figures need fresh servers: run conns ones alone).
    if [[ -n ${SCENARIOS:-} && " $SCENARIOS " != *" $name "* ]]; then return 0; fi
    wait_idle
    start_server
    if [[ $1 == conns ]]; then set -- "$@" --pid "$PID"; fi
    "$BENCH" "$@" --quiet --json > "$OUT/$name.json"
    echo "$name: $(cat "$OUT/$name.json")"
}

run conns-tcp-15k  conns --proto tcp --conns 15000 --duration 40 --settle 3
run conns-ws-15k   conns --proto ws  --conns 15000 --duration 40 --settle 3
run conns-tcp-direct conns --proto tcp --comet 127.0.0.1:6969 --conns 15000 --duration 5 --settle 1
run push-peak      push --keys 1000 --concurrency 8 --duration 10
run push-half-tcp  push --keys 1000 --rate 21000 --concurrency 32 --duration 20
run push-half-ws   push --keys 1000 --rate 21000 --concurrency 32 --duration 20 --proto ws --ver 1.0.5
run mpush-100      mpush --keys 1000 --batch 100 --concurrency 8 --duration 10
run mpush-1000     mpush --keys 10000 --batch 1000 --concurrency 4 --duration 10
run mpush-1000-ws  mpush --keys 10000 --batch 1000 --concurrency 4 --duration 10 --proto ws --ver 1.0.5
run room-15k       room --members 15000 --messages 100 --rate 10 --drain 10
run broadcast-15k  room --members 15000 --messages 10 --rate 1 --broadcast --drain 10
