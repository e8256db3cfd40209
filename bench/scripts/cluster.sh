#!/usr/bin/env bash
# Runs the benchmark set against a local cluster: ZooKeeper, two Redis shards, one message node,
# two comets (conf/comet.toml node1, conf/comet-2.toml node2), one web node, all on the ports of
# conf/*.toml. Every server runs in a throwaway directory and is stopped on exit.
# Usage: [SCENARIOS="name .."] bench/scripts/cluster.sh [OUT_DIR]   (env: GOPUSH, BENCH = the two binaries)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=$(realpath -m "${1:-bench-results-cluster}")
TARGET=${CARGO_TARGET_DIR:-target}
GOPUSH=$(realpath "${GOPUSH:-$TARGET/release/gopush}")
BENCH=$(realpath "${BENCH:-$TARGET/release/gopush-bench}")
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for port in 2181 6379 6380 8070 6969 7069 8090 8091; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is busy" >&2; exit 1; fi
done

mkdir -p "$WORK/zk/data"
cat > "$WORK/zk/zoo.cfg" <<CFG
tickTime=500
minSessionTimeout=1000
maxSessionTimeout=30000
dataDir=$WORK/zk/data
clientPort=2181
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
forceSync=no
CFG
java -Xmx192m -XX:+UseSerialGC \
  -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
  -Dzookeeper.root.logger=INFO,CONSOLE \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zk/zoo.cfg" > "$WORK/zk.log" 2>&1 &
PIDS+=($!)
for port in 6379 6380; do
    redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis-$port.log" &
    PIDS+=($!)
done
for _ in $(seq 600); do
    (exec 3<>/dev/tcp/127.0.0.1/2181; printf srvr >&3; timeout 2 cat <&3) 2>/dev/null | grep -q '^Mode:' && break
    sleep 0.1
done

start() { # name, args...
    local name=$1; shift
    RUST_LOG=warn "$GOPUSH" "$@" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
}
start message message -c conf/message.toml
start comet1 comet -c conf/comet.toml
start comet2 comet -c conf/comet-2.toml
start web web -c conf/web.toml
# Ready when web routes both protocols (the comets register, web sees them in ZooKeeper).
for _ in $(seq 300); do
    body=$(curl -s 'http://127.0.0.1:8090/1/server/get?k=probe&p=2' || true)
    [[ $body == *'"ret":0'* ]] && break
    sleep 0.2
done
echo "cluster up: $body"

run() {
    local name=$1; shift
    # SCENARIOS="a b" runs only those (memory figures need fresh servers: run conns ones alone).
    if [[ -n ${SCENARIOS:-} && " $SCENARIOS " != *" $name "* ]]; then return 0; fi
    "$BENCH" "$@" --quiet --json > "$OUT/$name.json"
    echo "$name: $(cat "$OUT/$name.json")"
}
run conns-tcp-30k conns --proto tcp --conns 30000 --duration 40 --settle 3 --pid "$PID_comet1,$PID_comet2"
run conns-ws-30k  conns --proto ws --conns 30000 --duration 40 --settle 3 --pid "$PID_comet1,$PID_comet2"
run push-peak     push --keys 1000 --concurrency 8 --duration 10
run push-half     push --keys 1000 --rate "${HALF_RATE:-11500}" --concurrency 32 --duration 20
run push-stored   push --keys 1000 --rate "${HALF_RATE:-11500}" --concurrency 32 --duration 10 --expire 60
run mpush-1000    mpush --keys 10000 --batch 1000 --concurrency 4 --duration 10
