#!/usr/bin/env bash
# perf/bench-accounts.sh - transfers spread over 1M accounts against the
# same transfers spread over 10k, side by side in one run.
#
#   perf/bench-accounts.sh                  # 10000 vs 1000000 accounts, 3 rounds of 10 s, 32 connections
#   QUICK=1 perf/bench-accounts.sh          # smoke run: 1 round of 2 s each
#   SMALL=10000 LARGE=1000000 ROUNDS=5 DURATION=20s CONNECTIONS=64 perf/bench-accounts.sh
#
# transfer-uniform over SMALL accounts and over LARGE (perf/README.md, "1M
# accounts vs 10k"), loopback only, every run bounded by a timeout: both
# sets live in the same tables (perf/gen-accounts.sh), so only how far the
# transfers spread differs, and each set keeps its own total exact (the
# money check: accounts 1..N of a prefix hold N x BALANCE; transfers over
# a million of PREFIX's accounts would move money out of the first 10000);
# the twin's zone is sized for LARGE at 256 bytes each, so that neither
# size is measured with evictions; both tables are scanned once and a
# WARMUP run opens the module's connections before the measured rounds,
# whose order is swapped every round (drift of the machine or of the
# growing ledger falls on both).  Prints every run, the medians and
# LARGE / SMALL (target 0.8 or more); writes OUT/bench-accounts.md and
# the wrk outputs under OUT/raw-accounts/.
#
# Environment: SMALL 10000  LARGE 1000000  PREFIX P  LARGE_PREFIX M
#   ROUNDS 3*  DURATION 10s*  CONNECTIONS 32  THREADS 2 (wrk -t)  WARMUP 2s*
#   PERF_PORT 18190  OUT perf/results  (QUICK=1 changes those marked *)
# It uses the same twin (port and var/perf/twin) as perf/run-all.sh: do not
# run both at once.  The twin is stopped at the end; the local stack keeps
# running (make stop).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"

SMALL="${SMALL:-10000}"
LARGE="${LARGE:-1000000}"
SMALL_PREFIX="$PREFIX"
LARGE_PREFIX="${LARGE_PREFIX:-M}"
if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS="${ROUNDS:-1}"
    DURATION="${DURATION:-2s}"
    WARMUP="${WARMUP:-1s}"
else
    ROUNDS="${ROUNDS:-3}"
    DURATION="${DURATION:-10s}"
    WARMUP="${WARMUP:-2s}"
fi
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
OUT="${OUT:-$ROOT/perf/results}"
RAW="$OUT/raw-accounts"

bench_check SMALL LARGE ROUNDS CONNECTIONS THREADS
[ "$SMALL" -ge 2 ] && [ "$LARGE" -gt "$SMALL" ] || pdie "need 2 <= SMALL < LARGE"
[ "$CONNECTIONS" -ge "$THREADS" ] || pdie "CONNECTIONS must be >= THREADS"

DUR_S=$(secs_of "$DURATION")
WARM_S=$(secs_of "$WARMUP")

RUN="a$(date -u +%m%d%H%M%S)"
mkdir -p "$RAW"
rm -f "$RAW"/wrk-*.txt
trap 'twin_stop || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

plog "run $RUN: transfer-uniform over $SMALL vs $LARGE accounts, $ROUNDS rounds of $DURATION, wrk -t$THREADS -c$CONNECTIONS"
plog "starting the local stack: conf/stack.sh run"
conf/stack.sh run > "$RAW/stack.log" 2>&1 || { cat "$RAW/stack.log"; pdie "conf/stack.sh run failed"; }

plog "accounts: perf/gen-accounts.sh $SMALL $SMALL_PREFIX; perf/gen-accounts.sh $LARGE $LARGE_PREFIX"
perf/gen-accounts.sh "$SMALL" "$SMALL_PREFIX"
perf/gen-accounts.sh "$LARGE" "$LARGE_PREFIX"

ZONE_MB=$(( (LARGE * 256 + 1048575) / 1048576 + 8 ))
[ "$ZONE_MB" -lt 16 ] && ZONE_MB=16
plog "twin nginx on 127.0.0.1:$PERF_PORT (prefix var/perf/twin, cache zone ${ZONE_MB}m)"
twin_render "" "${ZONE_MB}m"
twin_start
URL="http://127.0.0.1:$PERF_PORT"

plog "loading accounts and entries into the buffer pool (a full scan of each)"
sql "SELECT COUNT(*), SUM(balance) FROM accounts; SELECT COUNT(*), SUM(amount) FROM entries;
     ANALYZE TABLE accounts, entries, transactions, audit_log" > /dev/null
REDO_MB=$(redo_log_check) || exit 1
plog "  data: $(sql "SELECT GROUP_CONCAT(CONCAT(table_name, ' ', ROUND((data_length + index_length) / 1048576), ' MB') SEPARATOR ', ') FROM information_schema.tables WHERE table_schema = 'rbcs'") (InnoDB's estimate); buffer pool $(sql "SELECT @@innodb_buffer_pool_size DIV 1048576") MB, redo log ${REDO_MB} MB"

timeout --signal=INT $((WARM_S + 30)) \
    env ACCOUNTS="$SMALL" PREFIX="$SMALL_PREFIX" RUN_ID="$RUN-w" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s perf/wrk/transfer-uniform.lua "$URL" \
    > "$RAW/warmup.log" 2>&1 || true

# run_size N ROUND: one measured run over the set of N accounts
run_size() {
    local n=$1 round=$2 raw="$RAW/wrk-$1-r$2.txt" id="$RUN-$2-$1" a b stats
    local total0 total1 neg sumn ok=ok PREFIX=$SMALL_PREFIX ACCOUNTS=$1
    [ "$n" = "$SMALL" ] || PREFIX=$LARGE_PREFIX
    local cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s perf/wrk/transfer-uniform.lua "$URL")
    echo "# ACCOUNTS=$n PREFIX=$PREFIX RUN_ID=$id ${cmd[*]}" > "$raw"
    # balance_totals sums over PREFIX's accounts 1..ACCOUNTS (the locals)
    read -r total0 _ _ <<<"$(balance_totals)"
    a=$(cpu_sample)
    timeout --signal=INT $((DUR_S + 30)) env ACCOUNTS="$n" PREFIX="$PREFIX" RUN_ID="$id" "${cmd[@]}" >> "$raw" 2>&1 || true
    b=$(cpu_sample)
    # money: the total unchanged (exact DECIMAL text), none negative, the
    # set's accounts hold N x BALANCE (compared by the server)
    read -r total1 neg sumn <<<"$(balance_totals)"
    [ "$total0" = "$total1" ] && [ "$neg" = 0 ] &&
        [ "$(sql "SELECT $sumn = $n * $BALANCE")" = 1 ] || ok=FAIL
    stats=$(grep '^RBCS-STATS' "$raw" | head -1 | sed 's/^RBCS-STATS //' || true)
    [ -n "$stats" ] || { tail -5 "$raw"; pdie "no statistics from wrk, see $raw"; }
    perl -e '
        my ($n, $round, $stats, $dbcpu, $ok) = @ARGV;
        my %r = map { /^([^=]+)=(.*)$/ ? ($1, $2) : () } split " ", $stats;
        my $n201 = $r{status_201} // 0;
        my $rec = 0; $rec += $r{$_} for grep { /^status_(201|4\d\d)$/ } keys %r;
        my $err = ($r{non2xx} // 0) + ($r{socket_errors} // 0);
        printf "RUN accounts=%d round=%d tps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d db_cpu_us=%s money=%s\n",
            $n, $round, $n201 / ($r{seconds} || 1), ($r{p50_us} // 0) / 1000, ($r{p99_us} // 0) / 1000, $err,
            $rec ? sprintf("%.0f", 1e6 * $dbcpu / $rec) : "-", $ok;
    ' "$n" "$round" "$stats" "$(db_cpu_s "$a" "$b")" "$ok" | tee -a "$RAW/runs.txt"
}

: > "$RAW/runs.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    if [ $((round % 2)) = 1 ]; then order="$SMALL $LARGE"; else order="$LARGE $SMALL"; fi
    for n in $order; do
        run_size "$n" "$round"
        sleep 1
    done
done

twin_stop

perl - "$RAW/runs.txt" "$SMALL" "$LARGE" "$OUT/bench-accounts.md" \
    "wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s perf/wrk/transfer-uniform.lua, $ROUNDS rounds, twin nginx ${WORKERS:-1} workers with a ${ZONE_MB}m zone, $(nproc) cores shared by wrk, nginx, MariaDB and Redis; run $RUN, $(date -u +%Y-%m-%dT%H:%MZ)" <<'PERL'
use strict;
use warnings;
my ($runs, $small, $large, $outf, $how) = @ARGV;
my (@r, %by);
open my $fh, '<', $runs or die "$runs: $!";
while (<$fh>) {
    next unless s/^RUN //;
    my %x = map { /^([^=]+)=(.*)$/ ? ($1, $2) : () } split ' ';
    push @r, \%x;
    push @{ $by{$x{accounts}} }, \%x;
}
close $fh;
my $median = sub {
    my ($n, $k) = @_;
    my @v = sort { $a <=> $b } map { $_->{$k} } @{ $by{$n} || [] };
    return @v ? $v[int($#v / 2)] : 0;
};
my @md = ("# Transfers over $large accounts vs $small", "",
          "| round | accounts | transfers/s | p50 (ms) | p99 (ms) | errors | mariadbd CPU/transfer (µs) | money check |",
          "|---:|---:|---:|---:|---:|---:|---:|---|");
push @md, sprintf('| %d | %d | %.0f | %.2f | %.2f | %d | %s | %s |', @{$_}{qw(round accounts tps p50_ms p99_ms errors db_cpu_us money)}) for @r;
my ($ms, $ml) = ($median->($small, 'tps'), $median->($large, 'tps'));
push @md, sprintf('| median | %d | %.0f | %.2f | %.2f | | | |', $small, $ms, $median->($small, 'p50_ms'), $median->($small, 'p99_ms'));
push @md, sprintf('| median | %d | %.0f | %.2f | %.2f | | | |', $large, $ml, $median->($large, 'p50_ms'), $median->($large, 'p99_ms'));
push @md, "", sprintf('**%d accounts / %d accounts: %s** (median transfers/s; target 0.8x or more).', $large, $small,
                      $ms > 0 ? sprintf('%.2fx', $ml / $ms) : '-');
my @bad = grep { $_->{money} ne 'ok' } @r;
push @md, "", sprintf('Money checks: %d of %d runs ok%s.', @r - @bad, scalar @r, @bad ? ' (**failed**: ' . join(', ', map { "round $_->{round} $_->{accounts}" } @bad) . ')' : '');
push @md, "", "$how. Both sets of accounts live in the same tables; each run's wrk output, under its command, is in raw-accounts/. Produced by `perf/bench-accounts.sh`.";
open my $o, '>', $outf or die "$outf: $!";
print $o join("\n", @md), "\n";
close $o;
print join("\n", @md), "\n";
PERL
plog "written: $OUT/bench-accounts.md (wrk outputs in $RAW)"
