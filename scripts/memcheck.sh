#!/usr/bin/env bash
# Runs test binaries under valgrind memcheck: any invalid read or write, and
# any definite leak not covered by valgrind/edgeguard.supp, fails the run.
# Usage: scripts/memcheck.sh [test-target[:filter,filter...]...]   (default: the targets below)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    # Every element through real pipelines; the soak for 10 cycles. The
    # examples and multi-process tests spawn children, which run natively.
    # Of the failover tests, the non-live ones: a live stream that valgrind
    # slows tenfold would only test valgrind. Of the taps and short pools,
    # the ones whose threads start, stop, fail and release without timing.
    targets=(delaybuffer faults leakcheck vpuguardenc vpuguarddec soak
        vpuguardenc_failover:draining,failover_properties
        delaybuffer_taps:leaky,downstream_fails,unlinked_tap_or_src,inactive_tap,named,requested_while
        delaybuffer_short_pool:cannot_copy,leaves_pools)
fi

command -v valgrind >/dev/null || { echo "memcheck: valgrind missing (make deps installs it)"; exit 1; }

# The tests load the debug cdylib (tracer mode, Python) as applications do.
cargo build --locked --lib
log_dir=target/memcheck
mkdir -p "$log_dir"
failed=()
for entry in "${targets[@]}"; do
    target=${entry%%:*}
    filters=()
    [ "$entry" = "$target" ] || IFS=, read -r -a filters <<<"${entry#*:}"
    # The test's own executable: building a test also builds the crate's
    # commands (edgeguard-vpu), whose artifacts are listed beside it.
    binary=$(cargo test --locked --no-run --test "$target" --message-format=json 2>/dev/null |
        grep '"kind":\["test"\]' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -n "$binary" ] || { echo "memcheck: no test binary for $target"; exit 1; }
    log="$log_dir/$target.log"
    start=$(date +%s)
    # G_SLICE=always-malloc lets valgrind see GLib's allocations one by one.
    if G_SLICE=always-malloc G_DEBUG=gc-friendly EDGEGUARD_SOAK_CYCLES=10 \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite --error-exitcode=99 \
            --suppressions=valgrind/edgeguard.supp --gen-suppressions=all \
            --num-callers=40 --log-file="$log" \
            "$binary" --test-threads=1 "${filters[@]}" >"$log_dir/$target.out" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    summary=$(grep -h "ERROR SUMMARY" "$log" | tail -n 1 | sed 's/==[0-9]*== //')
    lost=$(grep -h "definitely lost:" "$log" | tail -n 1 | sed 's/==[0-9]*== *//')
    tests=$(grep -h "^test result" "$log_dir/$target.out" | tail -n 1)
    echo "memcheck $target: $status in $(($(date +%s) - start)) s; $tests; ${lost:-definitely lost: 0}; $summary"
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "memcheck: failed: ${failed[*]} (see $log_dir/<target>.log; suppressions are generated there)"
    exit 1
fi
