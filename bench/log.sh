#!/usr/bin/env bash
# herald-log benchmarks, each next to its baseline measured in the same run.
#
# For every append configuration (sync policy x record size x records per batch) this runs
# `physbench logappend` (../shared/bench/physbench.c: the disk's limit at the same batch
# bytes and sync setting), then the criterion bench of that configuration, then physbench
# again, and compares herald-log with the mean of the two baseline runs around it, so the
# drift of this shared machine's disk hits both sides alike. `interval` rows also get the
# disk's durable bandwidth at the same fsync cadence (4 MiB). Then the read bench (the log
# against a raw pread loop over the same files, in one process) and the 1 GiB recovery
# bench. Everything repeats ROUNDS times; the tables show medians.
#
# Output: bench/out/log-results.md (markdown) and the raw lines in bench/out/*.txt.
# Data goes to bench/out/data, on the repository's file system.
#
# Usage: bench/log.sh [rounds, default 3] [physbench seconds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
secs="${2:-3}"
out=bench/out
data="$(pwd)/$out/data"
mkdir -p "$data"
physbench_src="${PHYSBENCH_SRC:-../shared/bench/physbench.c}"
cc -O2 -o "$out/physbench" "$physbench_src"
cargo bench -p herald-log --no-run >/dev/null 2>&1

# Batch size of herald_log::testing::batch_bytes(records, value_bytes), computed the same way.
batch_size() {
  python3 - "$1" "$2" <<'PY'
import sys
n, v = int(sys.argv[1]), int(sys.argv[2])
def vlen(x):
    z = ((x << 1) ^ (x >> 63)) & ((1 << 64) - 1)
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

# physbench logappend; prints batches (writes) per second.
physbench_ops() {
  "$out/physbench" logappend "$data/physbench.seg" "$1" "$2" "$3" "$secs" | grep 'per-batch' | sed -E 's/.*ops\/s=([0-9.]+).*/\1/'
}

# physbench logappend; prints MB/s.
physbench_mbps() {
  "$out/physbench" logappend "$data/physbench.seg" "$1" "$2" "$3" "$secs" | grep '^logappend' | sed -E 's/.*MB\/s=([0-9.]+).*/\1/'
}

# Runs one criterion benchmark by exact id; prints its median time per iteration in ns.
criterion_ns() {
  local id=$1
  HERALD_BENCH_DIR="$data" cargo bench -q -p herald-log --bench log -- "^${id}\$" >/dev/null 2>&1
  python3 - "$id" <<'PY'
import json, os, sys
want = sys.argv[1]
for root, _, files in os.walk("target/criterion"):
    if root.endswith("/new") and "benchmark.json" in files:
        meta = json.load(open(f"{root}/benchmark.json"))
        if meta["full_id"] == want:
            print(json.load(open(f"{root}/estimates.json"))["median"]["point_estimate"])
            break
PY
}

: >"$out/append.txt"
: >"$out/read.txt"
: >"$out/recovery.txt"
"$out/physbench" fsync "$data/fsync.tmp" append 4096 "$secs" | tee "$out/fsync.txt" >&2
for round in $(seq 1 "$rounds"); do
  for policy in never interval always; do
    sync=0
    [ "$policy" = always ] && sync=1
    for v in 100 1024; do
      for n in 1 100 1000; do
        b=$(batch_size "$n" "$v")
        before=$(physbench_ops "$v" "$b" "$sync")
        ns=$(criterion_ns "append/$policy/${v}B-x${n}-${b}B")
        after=$(physbench_ops "$v" "$b" "$sync")
        cadence=-
        [ "$policy" = interval ] && cadence=$(physbench_mbps "$v" 4194304 1)
        echo "$round $policy $v $n $b $ns $before $after $cadence" | tee -a "$out/append.txt" >&2
      done
    done
  done
  echo "$round $(criterion_ns read/log-1MiB-reads) $(criterion_ns read/raw-pread-1MiB)" | tee -a "$out/read.txt" >&2
  HERALD_BENCH_DIR="$data" cargo bench -q -p herald-log --bench recovery 2>/dev/null | grep '^recovery' | tee -a "$out/recovery.txt" >&2
done

python3 - "$out" <<'PY' | tee "$out/log-results.md"
import collections, re, statistics, sys
out = sys.argv[1]
med = statistics.median
rows = collections.defaultdict(list)
for line in open(f"{out}/append.txt"):
    _, policy, v, n, b, ns, before, after, cadence = line.split()
    rows[(policy, int(v), int(n), int(b))].append((float(ns), float(before), float(after), cadence))
order = {"never": 0, "interval": 1, "always": 2}
print("| policy | record | records/batch | batch bytes | herald-log batches/s | MB/s | records/s | baseline (same batch bytes) | baseline batches/s | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
interval = []
for (policy, v, n, b), runs in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])):
    per_s = [1e9 / ns for ns, _, _, _ in runs]
    base = [(x + y) / 2 for _, x, y, _ in runs]
    ratio = med([p / q for p, q in zip(per_s, base)])
    sync = 1 if policy == "always" else 0
    ours = med(per_s)
    print(f"| {policy} | {v} B | {n} | {b} | {ours:,.0f} | {ours*b/1e6:,.1f} | {ours*n:,.0f} | physbench logappend {v} {b} {sync} | {med(base):,.0f} | {ratio:.2f} |")
    if policy == "interval":
        disk = [float(c) for _, _, _, c in runs]
        r = med([p * b / 1e6 / d for p, d in zip(per_s, disk)])
        interval.append(f"| interval | {v} B | {n} | {b} | {ours*b/1e6:,.1f} | physbench logappend {v} 4194304 1 | {med(disk):,.1f} | {r:.2f} |")
print()
print("`interval` against the disk's durable bandwidth at the same fsync cadence (4 MiB):")
print()
print("| policy | record | records/batch | batch bytes | herald-log MB/s | baseline | baseline MB/s | ratio |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(interval))
reads = [line.split() for line in open(f"{out}/read.txt")]
if reads:
    batch = 1034933  # the read bench fills 256 MiB with 1,000 x 1 KiB batches
    size = -(-268435456 // batch) * batch
    log_mbps = [size / float(l) * 1e3 for _, l, _ in reads]
    raw_mbps = [size / float(r) * 1e3 for _, _, r in reads]
    ratio = med([float(r) / float(l) for _, l, r in reads])
    print()
    print(f"Read: herald-log sequential 1 MiB reads {med(log_mbps):,.0f} MB/s; raw pread of the same files {med(raw_mbps):,.0f} MB/s; ratio {ratio:.2f}")
cases = collections.defaultdict(list)
for line in open(f"{out}/recovery.txt"):
    m = re.search(r"case=(\S+) .*median_ms=([0-9.]+)", line)
    cases[m.group(1)].append(float(m.group(2)))
print()
for case, ms in cases.items():
    print(f"Recovery of a 1 GiB log, {case}: {med(ms):.1f} ms (median of {len(ms)} rounds x 3 runs)")
PY
