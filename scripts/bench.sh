#!/usr/bin/env bash
# Runs every element's side-by-side benchmark (each prints its own details),
# then prints one table of the ratios they report.
set -euo pipefail
mkdir -p target
log=target/bench.log
: > "$log"
for bench in vpuguardenc vpu_sources delaybuffer leakcheck metrics; do
    cargo bench --locked --bench "$bench" 2>&1 | tee -a "$log" | grep -v '^RATIO|'
done
echo
echo "edgeguard benchmarks: ratios (this run, this machine)"
printf '%-12s %-52s %10s  %s\n' element measure ratio target
grep '^RATIO|' "$log" | while IFS='|' read -r _ element measure ratio target; do
    printf '%-12s %-52s %10s  %s\n' "$element" "$measure" "$ratio" "$target"
done
