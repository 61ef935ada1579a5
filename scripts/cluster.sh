#!/usr/bin/env bash
# A three-node replicated agora cluster on this machine: gateways on :8081-:8083,
# node-to-node on :7101-:7103, data in ./cluster-data/n{1,2,3}. Node 1 is the seed (it founds
# the cluster: its --join is its own address) and runs the embedded Kafka broker; nodes 2 and
# 3 join through it and use its broker. Every partition has three replicas (--replicas 3).
# Ctrl-C stops all three.
#
#   scripts/cluster.sh                       # embedded Kafka on node 1
#   KAFKA=broker:9092 scripts/cluster.sh     # an external Kafka for every node
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/agora
data=${DATA:-./cluster-data}
cookie=${AGORA_COOKIE:-change-me}
mkdir -p "$data"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT

node() { # name http-port cluster-port extra-args...
  local name=$1 http=$2 cluster=$3
  shift 3
  "$bin" serve --node "$name" --http "127.0.0.1:$http" --data "$data/$name" \
    --cluster "127.0.0.1:$cluster" --join 127.0.0.1:7101 --cookie "$cookie" \
    --partitions 16 "$@" >"$data/$name.log" 2>&1 &
  pids+=($!)
}

wait_for() { # log-file pattern
  for _ in $(seq 1 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no '$2' in $1" >&2
  exit 1
}

if [ -n "${KAFKA:-}" ]; then
  node n1 8081 7101 --kafka-brokers "$KAFKA"
  kafka=$KAFKA
else
  node n1 8081 7101
  wait_for "$data/n1.log" '^  kafka'
  kafka=$(awk '/^  kafka/ {print $2; exit}' "$data/n1.log")
fi
wait_for "$data/n1.log" 'agora node n1 is up'
node n2 8082 7102 --kafka-brokers "$kafka"
node n3 8083 7103 --kafka-brokers "$kafka"
for n in 2 3; do wait_for "$data/n$n.log" "agora node n$n is up"; done

echo "cluster up: gateways http://127.0.0.1:8081 :8082 :8083, Kafka $kafka, logs in $data/"
echo "try: curl -s localhost:8082/cluster | python3 -m json.tool"
wait
