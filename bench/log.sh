#!/usr/bin/env bash
# herald-log benchmarks with same-run baselines.
#
# Runs, in one go on this machine: physbench (../shared/bench/physbench.c, the disk's
# limit: logappend at the same batch bytes and sync setting, fsync latency), the
# criterion append/read benches of crates/herald-log, physbench again, and the 1 GiB
# recovery bench. Prints a markdown table of ratios (ours / baseline) and writes it to
# bench/out/log-results.md. Data goes to bench/out/data (same file system as the repo).
#
# Usage: bench/log.sh [physbench seconds per run, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"
out=bench/out
data="$(pwd)/$out/data"
mkdir -p "$data"
physbench_src="${PHYSBENCH_SRC:-../shared/bench/physbench.c}"
cc -O2 -o "$out/physbench" "$physbench_src"

# Batch sizes of herald_log::testing::batch_bytes(records, value_bytes), computed the same way.
batch_size() {
  python3 - "$1" "$2" <<'PY'
import sys
n, v = int(sys.argv[1]), int(sys.argv[2])
def vlen(x):
    z = (x << 1) ^ (x >> 63)
    z &= (1 << 64) - 1
    l = 1
    while z >= 0x80:
        z >>= 7; l += 1
    return l
total = 61
for i in range(n):
    body = 1 + vlen(i) + vlen(i) + vlen(-1) + vlen(v) + v + 1
    total += vlen(body) + body
print(total)
PY
}

physbench_round() {
  local label=$1
  for v in 100 1024; do
    for n in 1 100 1000; do
      local b; b=$(batch_size "$n" "$v")
      for sync in 0 1; do
        local line
        line=$("$out/physbench" logappend "$data/physbench.seg" "$v" "$b" "$sync" "$secs" | grep 'per-batch')
        local ops; ops=$(sed -E 's/.*ops\/s=([0-9.]+).*/\1/' <<<"$line")
        echo "$label $v $n $b $sync $ops"
      done
    done
    # The interval policy fsyncs every 4 MiB: the disk's durable rate at that cadence.
    local line ops
    line=$("$out/physbench" logappend "$data/physbench.seg" "$v" 4194304 1 "$secs" | grep '^logappend')
    ops=$(sed -E 's/.*MB\/s=([0-9.]+).*/\1/' <<<"$line")
    echo "$label $v 4MiB 4194304 1 $ops"
  done
}

echo "== physbench (before)" >&2
physbench_round before | tee "$out/physbench.txt"
"$out/physbench" fsync "$data/fsync.tmp" append 4096 "$secs" | tee "$out/fsync.txt"

echo "== cargo bench (criterion)" >&2
rm -rf target/criterion
HERALD_BENCH_DIR="$data" cargo bench -p herald-log --bench log 2>&1 | grep -E '^(append|read)|time:|thrpt:' | tee "$out/criterion.txt" >&2

echo "== physbench (after)" >&2
physbench_round after | tee -a "$out/physbench.txt"

echo "== recovery" >&2
HERALD_BENCH_DIR="$data" cargo bench -p herald-log --bench recovery 2>/dev/null | grep '^recovery' | tee "$out/recovery.txt"

python3 - "$out" <<'PY' | tee "$out/log-results.md"
import json, os, re, statistics, sys
out = sys.argv[1]
phys = {}
interval_mbps = {}
for line in open(f"{out}/physbench.txt"):
    label, v, n, b, sync, ops = line.split()
    if n == "4MiB":
        interval_mbps.setdefault(int(v), []).append(float(ops))
        continue
    phys.setdefault((int(v), int(n), int(sync)), []).append(float(ops))
ours, tp = {}, {}
for root, dirs, files in os.walk("target/criterion"):
    if root.endswith("/new") and "benchmark.json" in files:
        meta = json.load(open(f"{root}/benchmark.json"))
        est = json.load(open(f"{root}/estimates.json"))
        key = (meta["group_id"], meta.get("value_str") or meta["function_id"])
        ours[key] = est["median"]["point_estimate"]
        tp[key] = (meta.get("throughput") or {}).get("Bytes")
interval_rows = []
print("| policy | record | records/batch | batch bytes | herald-log batches/s | MB/s | records/s | baseline | baseline batches/s | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
for policy in ["never", "interval", "always"]:
    for (group, ident), ns in sorted(ours.items()):
        if group != f"append/{policy}":
            continue
        m = re.match(r"(\d+)B-x(\d+)-(\d+)B", ident)
        v, n, b = map(int, m.groups())
        per_s = 1e9 / ns
        sync = 1 if policy == "always" else 0
        base = statistics.median(phys[(v, n, sync)])
        name = f"physbench logappend {v} {b} {sync}"
        print(f"| {policy} | {v} B | {n} | {b} | {per_s:,.0f} | {per_s*b/1e6:,.1f} | {per_s*n:,.0f} | {name} | {base:,.0f} | {per_s/base:.2f} |")
        if policy == "interval":
            disk = statistics.median(interval_mbps[v])
            interval_rows.append(f"| interval | {v} B | {n} | {b} | {per_s*b/1e6:,.1f} | physbench logappend {v} 4194304 1 | {disk:,.1f} | {per_s*b/1e6/disk:.2f} |")
print()
print("Interval against the disk's durable bandwidth at the same fsync cadence (4 MiB):")
print()
print("| policy | record | records/batch | batch bytes | herald-log MB/s | baseline | baseline MB/s | ratio |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(interval_rows))
log_ns = ours.get(("read", "log-1MiB-reads"))
raw_ns = ours.get(("read", "raw-pread-1MiB"))
if log_ns and raw_ns:
    print()
    total = tp[("read", "log-1MiB-reads")]
    print(f"read: herald-log sequential 1 MiB reads over {total/2**20:.0f} MiB: {total/log_ns*1e3:,.0f} MB/s; raw pread of the same files: {total/raw_ns*1e3:,.0f} MB/s; ratio {raw_ns/log_ns:.2f}")
PY
