#!/usr/bin/env bash
# Stored pushes (expire 600) through a local cluster (ZooKeeper, message, two comets, web) whose
# message node runs on each kind of Redis storage in turn: two plain shards, a Redis Cluster of
# three masters and three replicas, and that cluster with wait_replicas = 1. Every server runs on
# BASE_PORT.. (default 23000..23199; cluster nodes +10.., their bus ports +120..) in a throwaway directory and is stopped on exit.
# Usage: [BASE_PORT=23000] [PUSH_ARGS=".."] bench/scripts/storage.sh [OUT_DIR]
#   (env: GOPUSH, BENCH = the two binaries; default $CARGO_TARGET_DIR or target, release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=$(realpath -m "${1:-bench-results-storage}")
TARGET=${CARGO_TARGET_DIR:-target}
GOPUSH=$(realpath "${GOPUSH:-$TARGET/release/gopush}")
BENCH=$(realpath "${BENCH:-$TARGET/release/gopush-bench}")
B=${BASE_PORT:-23000}
PUSH_ARGS=${PUSH_ARGS:-"--keys 1000 --concurrency 16 --duration 10 --expire 600"}
ZK=$((B + 181)) R1=$((B + 1)) R2=$((B + 2)) C0=$((B + 10)) MSG=$((B + 70)) MSTAT=$((B + 72))
WEB=$((B + 90)) ADMIN=$((B + 91))
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    # On failure, the logs say why.
    if [[ ${DONE:-0} != 1 ]]; then tail -n 5 "$WORK"/*.log >&2 || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; done
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/zk/data"
printf 'tickTime=500\nminSessionTimeout=1000\nmaxSessionTimeout=30000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\nforceSync=no\n' \
    "$WORK/zk/data" "$ZK" > "$WORK/zk/zoo.cfg"
java -Xmx192m -XX:+UseSerialGC \
  -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
  -Dzookeeper.root.logger=INFO,CONSOLE \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zk/zoo.cfg" > "$WORK/zk.log" 2>&1 &
PIDS+=($!)
redis() { # port, extra args...
    local port=$1; shift
    mkdir -p "$WORK/redis-$port"
    (cd "$WORK/redis-$port" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK/redis-$port" --logfile "$WORK/redis-$port/log" "$@") &
    PIDS+=($!)
}
redis "$R1"; redis "$R2"
NODES=()
for i in 0 1 2 3 4 5; do
    redis $((C0 + i)) --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
        --cluster-port $((B + 120 + i))
    NODES+=("127.0.0.1:$((C0 + i))")
done
for p in "$R1" "$R2" $(seq "$C0" $((C0 + 5))); do
    for _ in $(seq 100); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes > "$WORK/cluster-create.log"
for _ in $(seq 300); do
    redis-cli -p "$C0" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
done
for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ZK"; printf srvr >&3; timeout 2 cat <&3) 2>/dev/null | grep -q '^Mode:' && break
    sleep 0.1
done

zk_section="[zookeeper]
addr = \"127.0.0.1:$ZK\""
start() { # name, role, config text
    printf '%s\n' "$3" > "$WORK/$1.toml"
    RUST_LOG=warn "$GOPUSH" "$2" -c "$WORK/$1.toml" > "$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$1=$!"
}
for n in 1 2; do
    start "comet$n" comet "[base]
tcp_bind = [\"127.0.0.1:$((B + 30 + n))\"]
ws_bind = [\"127.0.0.1:$((B + 40 + n))\"]
rpc_bind = [\"127.0.0.1:$((B + 50 + n))\"]
stat_bind = \"127.0.0.1:$((B + 60 + n))\"
[node]
name = \"node$n\"
$zk_section"
done
start web web "[base]
http_bind = \"127.0.0.1:$WEB\"
admin_bind = \"127.0.0.1:$ADMIN\"
$zk_section"

seeds=$(printf '"%s", ' "${NODES[@]}")
declare -A STORES=(
    [plain]="[redis]
[[redis.source]]
name = \"node1\"
addr = \"127.0.0.1:$R1\"
[[redis.source]]
name = \"node2\"
addr = \"127.0.0.1:$R2\""
    [cluster]="[storage]
kind = \"redis-cluster\"
[redis.cluster]
nodes = [${seeds%, }]"
    [cluster-wait1]="[storage]
kind = \"redis-cluster\"
[redis]
wait_replicas = 1
[redis.cluster]
nodes = [${seeds%, }]"
)
for name in plain cluster cluster-wait1; do
    start message message "[base]
rpc_bind = [\"127.0.0.1:$MSG\"]
stat_bind = \"127.0.0.1:$MSTAT\"
${STORES[$name]}
$zk_section"
    # Ready when a stored push is acknowledged (web routes to the comets, comets to the message node).
    for _ in $(seq 300); do
        body=$(curl -s -X POST "http://127.0.0.1:$ADMIN/1/admin/push/private?key=probe&expire=60" -d '{"p":1}' || true)
        [[ $body == *'"ret":0'* ]] && break
        sleep 0.2
    done
    echo "$name: message node up ($body)"
    # shellcheck disable=SC2086
    "$BENCH" push --web "http://127.0.0.1:$WEB" --admin "http://127.0.0.1:$ADMIN" $PUSH_ARGS --quiet --json \
        > "$OUT/push-stored-$name.json"
    echo "push-stored-$name: $(cat "$OUT/push-stored-$name.json")"
    kill "$PID_message"
    for _ in $(seq 100); do kill -0 "$PID_message" 2>/dev/null || break; sleep 0.1; done
done
DONE=1
