#!/usr/bin/env bash
# bench/broker.sh [rounds]: the Herald broker against physical limits and peers, all
# measured in the same run on this machine, interleaved round by round so drift in the
# host's fsync latency hits every side alike. Prints a markdown summary (medians and
# min-max over rounds, ratios) and keeps raw output in bench/out/broker-<time>/.
#
# Sides and their durability:
#   physbench logappend   pwrite + fdatasync per 64 KiB group into a preallocated file (durable ceiling)
#   herald fsync          acks=all, acknowledged after an fdatasync covers the batch (group commit)
#   redis always          Redis Streams XADD, AOF appendfsync always (fsync before reply), pipelined
#   herald interval       acks=all, acknowledged from the page cache, fsync every 1000 ms
#   nats jetstream        file storage, R1, no fsync before ack (Debian's 2.9.10 has no sync option)
#   iperf3 loopback       one TCP stream on 127.0.0.1 (ceiling for fetch)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
root=$(pwd)
out="$root/bench/out/broker-$(date +%Y%m%dT%H%M%S)"
mkdir -p "$out"
results="$out/results.jsonl"

missing=()
for tool in redis-server:redis-server redis-benchmark:redis-tools nats-server:nats-server iperf3:iperf3 cc:gcc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
systemctl stop redis-server >/dev/null 2>&1 || true

physbench_src="$root/../shared/bench/physbench.c"
[[ -f $physbench_src ]] || { echo "missing $physbench_src" >&2; exit 1; }
cc -O2 -o "$out/physbench" "$physbench_src"
cargo build --release -p herald-cli 2>&1 | tail -1
cargo build --release --manifest-path bench/nats-pub/Cargo.toml 2>&1 | tail -1
herald="$root/target/release/herald"
natspub="$root/bench/nats-pub/target/release/nats-pub"

scratch=$(mktemp -d -p /var/tmp herald-bench.XXXXXX) # on the disk, not tmpfs
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT

record() { # record <round> <side> <metric> <value>
  printf '{"round":%s,"side":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" "$4" >>"$results"
}
json_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(eval('d' + sys.argv[1]))" "$1"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

N100=1000000
N1K=300000
v100=$(head -c 100 /dev/zero | tr '\0' x)
v1k=$(head -c 1024 /dev/zero | tr '\0' x)

for round in $(seq "$rounds"); do
  echo "== round $round/$rounds"

  for size in 100 1024; do
    line=$("$out/physbench" logappend "$scratch/physbench.log" "$size" 65536 1 5 | head -1 | tee -a "$out/physbench.txt")
    record "$round" physbench "durable_${size}_msgs" "$(sed -E 's/.*recs\/s=([0-9.]+).*/\1/' <<<"$line")"
    rm -f "$scratch/physbench.log"
  done

  for durability in fsync interval:1000; do
    side="herald_${durability%%:*}"
    data="$scratch/herald-$side"
    "$herald" serve --listen 127.0.0.1:19092 --data-dir "$data" --durability "$durability" --log warn \
      2>>"$out/herald.log" &
    pid=$!; pids+=("$pid")
    wait_port 19092
    for size in 100 1024; do
      n=$([[ $size == 100 ]] && echo $N100 || echo $N1K)
      json=$("$herald" bench produce --brokers 127.0.0.1:19092 --topic "p$size" --size "$size" --messages "$n" --json | tee -a "$out/herald-bench.jsonl")
      record "$round" "$side" "produce_${size}_msgs" "$(json_field '["msgs_per_sec"]' <<<"$json")"
      record "$round" "$side" "produce_${size}_p99_us" "$(json_field '["latency_us"]["p99"]' <<<"$json")"
      if [[ $side == herald_fsync ]]; then
        json=$("$herald" bench consume --brokers 127.0.0.1:19092 --topic "p$size" --messages "$n" --json | tee -a "$out/herald-bench.jsonl")
        record "$round" "$side" "consume_${size}_msgs" "$(json_field '["msgs_per_sec"]' <<<"$json")"
        record "$round" "$side" "consume_${size}_mbps" "$(json_field '["mb_per_sec"]' <<<"$json")"
      fi
    done
    if [[ $side == herald_fsync ]]; then
      # Bandwidth: 16 KiB values, fetched 1 MiB per partition at a time.
      "$herald" bench produce --brokers 127.0.0.1:19092 --topic p16k --size 16384 --messages 30000 --json >>"$out/herald-bench.jsonl"
      json=$("$herald" bench consume --brokers 127.0.0.1:19092 --topic p16k --messages 30000 --json | tee -a "$out/herald-bench.jsonl")
      record "$round" "$side" "consume_16384_mbps" "$(json_field '["mb_per_sec"]' <<<"$json")"
    fi
    # One producer at a modest rate: latency without queueing.
    json=$("$herald" bench produce --brokers 127.0.0.1:19092 --topic lat --size 100 --messages 20000 --rate 5000 --linger-ms 0 --json | tee -a "$out/herald-bench.jsonl")
    record "$round" "$side" "latency_5k_p50_us" "$(json_field '["latency_us"]["p50"]' <<<"$json")"
    record "$round" "$side" "latency_5k_p99_us" "$(json_field '["latency_us"]["p99"]' <<<"$json")"
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$data"
  done

  mkdir -p "$scratch/redis"
  redis-server --port 16379 --bind 127.0.0.1 --dir "$scratch/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize no >"$out/redis.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_port 16379
  for size in 100 1024; do
    n=$([[ $size == 100 ]] && echo $N100 || echo $N1K)
    value=$([[ $size == 100 ]] && echo "$v100" || echo "$v1k")
    csv=$(redis-benchmark -p 16379 -P 64 -c 50 -n "$n" --csv XADD bench '*' f "$value" | tail -1)
    record "$round" redis_always "xadd_${size}_msgs" "$(cut -d, -f2 <<<"$csv" | tr -d '"')"
    redis-cli -p 16379 DEL bench >/dev/null
  done
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$scratch/redis"

  nats-server -js -sd "$scratch/nats" -a 127.0.0.1 -p 14222 >"$out/nats.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_port 14222
  for size in 100 1024; do
    n=$([[ $size == 100 ]] && echo $N100 || echo $N1K)
    json=$("$natspub" nats://127.0.0.1:14222 "$n" "$size" 4096 | tee -a "$out/nats.jsonl")
    record "$round" nats_jetstream "publish_${size}_msgs" "$(json_field '["msgs_per_sec"]' <<<"$json")"
  done
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$scratch/nats"

  iperf3 -s -p 15201 -1 >/dev/null 2>&1 &
  pid=$!; pids+=("$pid")
  sleep 0.5
  json=$(iperf3 -c 127.0.0.1 -p 15201 -t 5 -J)
  record "$round" loopback tcp_mbps "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e6)' <<<"$json")"
  wait "$pid" || true
done

python3 - "$results" <<'PY' | tee "$out/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["side"], r["metric"]), []).append(r["value"])
def med(side, metric):
    v = by.get((side, metric)); return statistics.median(v) if v else float("nan")
def cell(side, metric, unit=""):
    v = by.get((side, metric))
    if not v: return "n/a"
    return f"{statistics.median(v):,.0f}{unit} [{min(v):,.0f}–{max(v):,.0f}]"
print(f"rounds: {max(r['round'] for r in rows)}; medians with [min–max]\n")
print("| measurement | 100 B | 1 KiB |")
print("|---|---|---|")
for label, side, metric in [
    ("physbench logappend, fdatasync per 64 KiB (msgs/s)", "physbench", "durable_{}_msgs"),
    ("herald produce, durability=fsync, acks=all (msgs/s)", "herald_fsync", "produce_{}_msgs"),
    ("Redis XADD, appendfsync always, -P 64 -c 50 (msgs/s)", "redis_always", "xadd_{}_msgs"),
    ("herald produce, durability=interval:1000, acks=all (msgs/s)", "herald_interval", "produce_{}_msgs"),
    ("NATS JetStream file publish, 4096 in flight (msgs/s)", "nats_jetstream", "publish_{}_msgs"),
    ("herald consume from page cache (msgs/s)", "herald_fsync", "consume_{}_msgs"),
    ("herald consume from page cache (MB/s of values)", "herald_fsync", "consume_{}_mbps"),
]:
    print(f"| {label} | {cell(side, metric.format(100))} | {cell(side, metric.format(1024))} |")
print(f"| herald consume from page cache, 16 KiB values (MB/s) | {cell('herald_fsync', 'consume_16384_mbps')} | |")
print(f"| loopback TCP, iperf3 1 stream (MB/s) | {cell('loopback', 'tcp_mbps')} | |")
for side in ["herald_fsync", "herald_interval"]:
    print(f"| {side} ack latency at 5k msg/s, 100 B: p50 / p99 (µs) | {med(side, 'latency_5k_p50_us'):,.0f} / {med(side, 'latency_5k_p99_us'):,.0f} | |")
print("\nratios (medians):\n")
for size in (100, 1024):
    f = med("herald_fsync", f"produce_{size}_msgs")
    print(f"- {size} B: durable produce / physbench 64 KiB = {f / med('physbench', f'durable_{size}_msgs'):.2f} (target ≥ 0.5); "
          f"/ Redis always = {f / med('redis_always', f'xadd_{size}_msgs'):.2f} (target ≥ 1.0); "
          f"page-cache produce / NATS JetStream = {med('herald_interval', f'produce_{size}_msgs') / med('nats_jetstream', f'publish_{size}_msgs'):.2f} (target ≥ 3); "
          f"fetch MB/s / loopback = {med('herald_fsync', f'consume_{size}_mbps') / med('loopback', 'tcp_mbps'):.3f} (target ≥ 0.25)")
print(f"- 16 KiB: fetch MB/s / loopback = {med('herald_fsync', 'consume_16384_mbps') / med('loopback', 'tcp_mbps'):.3f} (target ≥ 0.25)")
PY
echo "raw results: $out"
