#!/usr/bin/env bash
# t/fuzz/run.sh - build the libFuzzer harnesses and run them.
#
#   t/fuzz/run.sh [-t SECONDS] [-j JOBS] [NAME...]
#
# NAME is amount, time, ledger, body, auth or redis (default: all six).
# Each harness first runs every input of its seed corpus t/fuzz/corpus/NAME
# (the regression inputs of past findings among them), then fuzzes for
# SECONDS (default 5) with build/fuzz/corpus/NAME as its working corpus
# (seeded from t/fuzz/corpus/NAME; kept between runs).  JOBS harnesses run at
# once (default 1).  A crash, a sanitizer report or a failed check stops
# that harness: its input is written to build/fuzz/artifacts/ and the run
# fails.  The summary gives, per harness, the executions and libFuzzer's
# final coverage (cov: edges, ft: features); the logs are in
# build/fuzz/logs/NAME.log.
#
# The harnesses that run on nginx (body, auth, redis) link the static
# nginx tree of docker/build-static.sh (build/static/nginx-src): it is
# built first when missing (docker/build-static.sh all).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

SECONDS_EACH=5
JOBS=1
while getopts 't:j:' opt; do
    case $opt in
        t) SECONDS_EACH=$OPTARG ;;
        j) JOBS=$OPTARG ;;
        *) echo "usage: $0 [-t SECONDS] [-j JOBS] [NAME...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))

ALL=(amount time ledger body auth redis)
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=("${ALL[@]}")

OUT="$ROOT/build/fuzz"
NGX="${RBCS_FUZZ_NGX:-$ROOT/build/static/nginx-src}"

need_ngx=0
for n in "${NAMES[@]}"; do
    case $n in
        amount|time|ledger) ;;
        body|auth|redis) need_ngx=1 ;;
        *) echo "t/fuzz/run.sh: unknown harness $n (${ALL[*]})" >&2; exit 2 ;;
    esac
done

if [ $need_ngx -eq 1 ] && [ ! -f "$NGX/objs/ngx_modules.o" ]; then
    echo "==> building the static nginx tree the harnesses link (docker/build-static.sh)"
    "$ROOT/docker/build-static.sh" all >/dev/null
fi

targets=()
for n in "${NAMES[@]}"; do targets+=("fuzz_$n"); done
echo "==> building ${targets[*]} (make -f t/fuzz/Makefile)"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -j2 -f t/fuzz/Makefile NGX="$NGX" "${targets[@]}"

mkdir -p "$OUT/logs" "$OUT/artifacts"

run_one() {   # name
    local n=$1 bin="$OUT/fuzz_$1" log="$OUT/logs/$1.log" work="$OUT/corpus/$1"
    local seeds="$ROOT/t/fuzz/corpus/$n" rc=0
    mkdir -p "$work"
    : > "$log"
    # the seeds and regression inputs, each once
    "$bin" -runs=0 -timeout=10 -artifact_prefix="$OUT/artifacts/$n-" \
        "$seeds" >>"$log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$n-" \
            "$work" "$seeds" >>"$log" 2>&1 || rc=$?
    fi
    echo "$rc" > "$log.rc"
}

summary() {   # name
    local n=$1 log="$OUT/logs/$1.log" rc execs stats
    rc=$(cat "$log.rc" 2>/dev/null || echo '?')
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    stats=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1)
    if [ "$rc" = 0 ]; then
        printf '%-7s ok    %ss  execs %s  %s\n' "$n" "$SECONDS_EACH" "${execs:-?}" "${stats:-}"
    else
        printf '%-7s FAIL  (exit %s) see %s\n' "$n" "$rc" "${log#"$ROOT"/}"
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -n 5 | sed 's/^/        /'
    fi
}

pids=()
for n in "${NAMES[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
    echo "==> fuzz_$n: seeds, then ${SECONDS_EACH}s"
    run_one "$n" &
    pids+=($!)
done
wait

fail=0
echo "==> results"
for n in "${NAMES[@]}"; do
    summary "$n"
    [ "$(cat "$OUT/logs/$n.log.rc" 2>/dev/null)" = 0 ] || fail=1
done
exit $fail
