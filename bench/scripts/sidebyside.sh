#!/usr/bin/env bash
# Runs the throughput scenarios against two gopush-compatible deployments in alternation (A, B, A,
# B, ...) and prints every figure and the ratio B/A of the medians. The deployments are given by URL
# only, so either may be any gopush-compatible cluster already running on loopback (this repository's
# or another implementation's): this script starts nothing.
#
# Usage: bench/scripts/sidebyside.sh WEB_A ADMIN_A WEB_B ADMIN_B
#   e.g. bench/scripts/sidebyside.sh http://127.0.0.1:8090 http://127.0.0.1:8091 \
#                                    http://127.0.0.1:9090 http://127.0.0.1:9091
# Environment:
#   ROUNDS=2            rounds per scenario and deployment (the median of them is reported)
#   SCENARIOS="a b"     run only these (names below)
#   DURATION=10         seconds of publishing per run
#   BENCH_CPU=1         pin gopush-bench to this CPU list (taskset); empty = no pinning
#   PIDS_A, PIDS_B      comma-separated server PIDs whose RSS the conns scenarios read (optional;
#                       without them the memory rows are skipped). Memory rows run one round:
#                       run each alone (SCENARIOS=) against freshly started servers. Pin the servers yourself, e.g.
#                       `taskset -c 0 gopush comet ...`, to compare on one core.
#   SERVER_CPU=0        also print the CPU time of that CPU (where both deployments' servers are
#                       pinned) per delivered message, split into user and kernel (sys + irq +
#                       softirq) microseconds. Read from /proc/stat over the whole bench run, so keep
#                       that CPU otherwise idle. On loopback the receive path of what a server sends
#                       runs in softirq on the server's CPU, and no process is charged for it.
#   OUT=dir             where the JSON of every run goes (default: a fresh bench-sidebyside-* dir)
#   BENCH=path          the gopush-bench binary (default target/release/gopush-bench)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if (($# != 4)); then
    sed -n '7,9p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
    exit 2
fi
WEB_A=$1 ADMIN_A=$2 WEB_B=$3 ADMIN_B=$4
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/gopush-bench}
OUT=${OUT:-$(mktemp -d "bench-sidebyside-XXXXXX")}
mkdir -p "$OUT"
[[ -x $BENCH ]] || { echo "no $BENCH: cargo build --release -p gopush-bench" >&2; exit 1; }
PIN=()
if [[ -n ${BENCH_CPU-1} ]]; then PIN=(taskset -c "${BENCH_CPU:-1}"); fi
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON reports" >&2; exit 1; }

# name | what to read from the JSON | bench arguments
SCENARIO_LIST=(
    "push-8|deliveries_per_sec|push --keys 1000 --concurrency 8"
    "push-32|deliveries_per_sec|push --keys 1000 --concurrency 32"
    "push-ws-8|deliveries_per_sec|push --proto ws --keys 1000 --concurrency 8"
    "push-stored-16|deliveries_per_sec|push --keys 1000 --concurrency 16 --expire 600"
    "mprivate-100|deliveries_per_sec|mpush --keys 2000 --batch 100 --concurrency 4"
    "p99-at-3k|latency.p99_ms|push --keys 1000 --rate 3000 --concurrency 32"
    "conns-tcp-5k|rss_per_conn_kib|conns --proto tcp --conns 5000 --settle 3"
    "conns-ws-5k|rss_per_conn_kib|conns --proto ws --conns 5000 --settle 3"
)

# Prints the figure `field` of the JSON report in file $1 (rss_per_conn_kib: summed over PIDs).
figure() {
    python3 - "$1" "$2" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
field = sys.argv[2]
if field == "rss_per_conn_kib":
    rss = report.get("rss") or []
    before = sum(r["before_kib"] for r in rss)
    after = sum(r["after_kib"] for r in rss)
    conns = report.get("alive_at_end") or 0
    print(f"{(after - before) / conns:.2f}" if conns else "nan")
else:
    value = report
    for part in field.split("."):
        value = value[part]
    print(f"{value:.2f}")
PY
}

# Prints the jiffies of CPU $1 as "user kernel": user includes nice, kernel is sys + irq + softirq.
cpu_jiffies() {
    awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3, $4 + $7 + $8 }' /proc/stat
}

# Prints "user+kernel" microseconds per delivery for the JSON report $1 and jiffies $2 (before), $3 (after).
cpu_per_delivery() {
    python3 - "$1" "$2" "$3" "$(getconf CLK_TCK)" <<'PY'
import json, sys
delivered = json.load(open(sys.argv[1]))["tally"]["delivered"]
before, after = (list(map(int, s.split())) for s in sys.argv[2:4])
us = 1e6 / int(sys.argv[4])
user, kernel = ((a - b) * us / delivered if delivered else float("nan") for a, b in zip(after, before))
print(f"{user:.1f}+{kernel:.1f}")
PY
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-16s %14s %14s %8s\n' scenario A B B/A
echo "(pushes: deliveries/s, higher is better; p99: ms and conns: KiB per connection, lower is better)"
for entry in "${SCENARIO_LIST[@]}"; do
    IFS='|' read -r name field args <<<"$entry"
    if [[ -n ${SCENARIOS:-} && " $SCENARIOS " != *" $name "* ]]; then continue; fi
    declare -a got_a=() got_b=() cost_a=() cost_b=()
    rounds=$ROUNDS
    # A server that already held connections reuses their freed memory, so only a first round on a
    # freshly started deployment measures it: one round, and start the servers anew for each row.
    if [[ $args == conns* ]]; then rounds=1; fi
    for ((round = 1; round <= rounds; round++)); do
        for side in A B; do
            if [[ $side == A ]]; then web=$WEB_A admin=$ADMIN_A pids=${PIDS_A:-}; else web=$WEB_B admin=$ADMIN_B pids=${PIDS_B:-}; fi
            extra=()
            if [[ $args == conns* ]]; then
                [[ -n $pids ]] || continue
                extra=(--pid "$pids" --duration 5)
            else
                extra=(--duration "$DURATION")
            fi
            file="$OUT/$name-$side-$round.json"
            [[ -n ${SERVER_CPU:-} ]] && before=$(cpu_jiffies "$SERVER_CPU")
            # shellcheck disable=SC2086 # the scenario's arguments are words
            "${PIN[@]}" "$BENCH" $args "${extra[@]}" --web "$web" --admin "$admin" --quiet --json >"$file"
            value=$(figure "$file" "$field")
            if [[ -n ${SERVER_CPU:-} && $args != conns* ]]; then
                cost=$(cpu_per_delivery "$file" "$before" "$(cpu_jiffies "$SERVER_CPU")")
                if [[ $side == A ]]; then cost_a+=("$cost"); else cost_b+=("$cost"); fi
            fi
            if [[ $side == A ]]; then got_a+=("$value"); else got_b+=("$value"); fi
        done
    done
    if ((${#got_a[@]} == 0 || ${#got_b[@]} == 0)); then
        printf '%-16s %14s\n' "$name" "skipped (set PIDS_A and PIDS_B)"
        continue
    fi
    a=$(median "${got_a[@]}") b=$(median "${got_b[@]}")
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')
    printf '%-16s %14s %14s %8s   (A: %s; B: %s)\n' "$name" "$a" "$b" "$ratio" "${got_a[*]}" "${got_b[*]}"
    if ((${#cost_a[@]} > 0)); then
        printf '%-16s %14s   (user+kernel us per delivery on CPU %s, A: %s; B: %s)\n' \
            "" "" "$SERVER_CPU" "${cost_a[*]}" "${cost_b[*]}"
    fi
done
echo "JSON reports in $OUT"
