#!/usr/bin/env bash
# perf/run-all.sh - the whole benchmark suite, one command.
#
#   perf/run-all.sh                        # 10k accounts, 10 s per run, 8/32/128 connections
#   QUICK=1 perf/run-all.sh                # smoke run (about 2 minutes)
#   ACCOUNTS=100000 DURATION=20s CONNECTIONS="16 64" perf/run-all.sh
#
# What it does (loopback only; every run is bounded by its duration and a
# timeout):
#   1. starts the local stack (conf/stack.sh run: MariaDB, Redis, nginx on
#      8080) and builds build/perf/dbclient (make -C perf dbclient);
#   2. creates ACCOUNTS accounts PREFIX-000001 ... with 1000.00 USD each
#      (perf/gen-accounts.sh), and the same in the write baseline's own
#      database (perf/gen-accounts.sh --baseline: rbcs_baseline,
#      perf/baseline.sql); for the deposit scenario, opens the EXTERNAL
#      account PREFIX-EXT through the API; for hold, capture and card, makes
#      sure the module has holds (a hold and its void);
#   3. starts its own nginx, the "twin" (PERF_PORT, prefix var/perf/twin):
#      the module's configuration (conf/nginx.local.conf.in, access_log off)
#      plus static `return 200`/`return 201` locations under /static/ whose
#      answers have the size of a real balance read / transfer answer;
#   4. measures the shared memory per cached account: the cache zone's
#      resident pages before and after reading every account once;
#   5. the database alone, uniform and hot pair (build/perf/dbclient): the
#      lean procedure, one call per transfer (the baseline, best of
#      DB_LEAN_THREADS), and the module's two round trips with B of
#      DB_BATCHES transfers per transaction (B=1: one per transaction on the
#      project's schema; larger B: the batched design's ceiling) at each of
#      DB_THREADS;
#   6. every wrk scenario (perf/wrk/*.lua) at each of CONNECTIONS, each
#      right after the same requests against the static twin (BASE=/static);
#      read scenarios after a short unmeasured warm-up (the zone is
#      filled again after the runs that changed balances); a pair disturbed by other
#      processes is run again (bounded), the quietest attempt kept; after
#      every scenario that writes (transfers, deposits, holds), checks in
#      SQL that money was conserved and that no STANDARD balance is below
#      its floor, and after hold, capture and card that the held balances
#      are the pending holds;
#   7. transfer-uniform at half of its peak rate (perf/wrk/transfer-rate.lua)
#      for the p99 at half load;
#   8. writes OUT (perf/results): results.md, throughput.png, p99.png and
#      raw/ (every wrk and dbclient output with its command line, runs.txt).
#
# Environment (defaults; QUICK=1 changes those marked *):
#   ACCOUNTS 10000   PREFIX P          number and prefix of the accounts
#   DURATION 10s*    CONNECTIONS "8 32 128"*   THREADS 2 (wrk -t)
#   SCENARIOS "balance-uniform balance-hot transfer-uniform transfer-hot mix
#              hold capture deposit card"
#   HOT_KEYS 1       balance-hot's hot set
#   HOLD_EXPIRES_IN, CARD_AMOUNT, CARD_EXPIRES_IN, CARD_VOID_PCT,
#   CARD_PARTIAL_PCT, AMOUNT: passed to wrk when set (defaults and meaning:
#                    perf/wrk/common.lua)
#   DB_LEAN_THREADS "16 32 64"*   threads of the lean baseline (its best counts)
#   DB_BATCHES "1 16 64"   DB_THREADS "4 16 64"*   the module's SQL: batch sizes, threads
#   DB_DURATION 5*   seconds per dbclient run
#   RATE_CONNS 32    RATE_DURATION 20s (QUICK: DURATION)   the half-peak run
#   WARMUP 2s*       unmeasured run of a read scenario before it is measured
#   ROUNDS 1         each scenario and its static twin this many times, in
#                    alternation; the tables show the median round of each
#   PERF_PORT 18190  OUT perf/results
#   QUIET_MAX 25     before each run, wait while processes that are not part
#   QUIET_WAIT 20    of this benchmark use more than QUIET_MAX % of a core
#   QUIET_BUDGET 240 (at most QUIET_WAIT s per run, QUIET_BUDGET s in all;
#                    QUIET_WAIT=0 disables); their CPU during each run is
#                    reported anyway ("foreign" column)
#   RETRY_NOISY 2    run a scenario and its static twin again (at most this
#   RETRY_BUDGET 6   many times each, this many in all) when other processes
#                    used more than QUIET_MAX % of a core during them
#   STOP_STACK 0     1: `conf/stack.sh stop` at the end (else the local
#                    stack keeps running: make stop)
#
# The twin is stopped at the end; the local stack keeps running unless
# STOP_STACK=1.  Nothing else is started.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"

# the defaults of a full run (perf/check-jmx.pl checks the JMeter plan's)
DEFAULT_DURATION=10s
DEFAULT_CONNECTIONS="8 32 128"

QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
    DURATION="${DURATION:-2s}"
    CONNECTIONS="${CONNECTIONS:-8 32}"
    DB_THREADS="${DB_THREADS:-4 16}"
    DB_LEAN_THREADS="${DB_LEAN_THREADS:-16}"
    DB_DURATION="${DB_DURATION:-1}"
else
    DURATION="${DURATION:-$DEFAULT_DURATION}"
    CONNECTIONS="${CONNECTIONS:-$DEFAULT_CONNECTIONS}"
    DB_THREADS="${DB_THREADS:-4 16 64}"
    DB_LEAN_THREADS="${DB_LEAN_THREADS:-16 32 64}"
    DB_DURATION="${DB_DURATION:-5}"
fi
DB_BATCHES="${DB_BATCHES:-1 16 64}"
THREADS="${THREADS:-2}"
SCENARIOS="${SCENARIOS:-balance-uniform balance-hot transfer-uniform transfer-hot mix hold capture deposit card}"
HOT_KEYS="${HOT_KEYS:-1}"
RATE_CONNS="${RATE_CONNS:-32}"
if [ "$QUICK" = 1 ]; then
    RATE_DURATION="${RATE_DURATION:-$DURATION}"
    WARMUP="${WARMUP:-1s}"
else
    RATE_DURATION="${RATE_DURATION:-20s}"
    WARMUP="${WARMUP:-2s}"
fi
OUT="${OUT:-$ROOT/perf/results}"
RAW="$OUT/raw"
QUIET_MAX="${QUIET_MAX:-25}"
QUIET_WAIT="${QUIET_WAIT:-20}"
QUIET_BUDGET="${QUIET_BUDGET:-240}"
ROUNDS="${ROUNDS:-1}"
RETRY_NOISY="${RETRY_NOISY:-2}"
RETRY_BUDGET="${RETRY_BUDGET:-6}"
RETRIES_USED=0
STOP_STACK="${STOP_STACK:-0}"
DBCLIENT="$ROOT/build/perf/dbclient"

secs_of() {   # 10s, 2m, 500ms, 10 -> whole seconds (at least 1)
    perl -e '$_ = shift; /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/ or die "bad duration $_\n";
             my %m = (ms => 0.001, s => 1, m => 60, h => 3600);
             my $s = $1 * $m{$2 // "s"}; print $s < 1 ? 1 : int($s + 0.999), "\n"' "$1"
}
DUR_S=$(secs_of "$DURATION")
RATE_S=$(secs_of "$RATE_DURATION")
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || pdie "ROUNDS must be a positive number"
[[ "$ACCOUNTS" =~ ^[1-9][0-9]*$ ]] && [ "$ACCOUNTS" -ge 2 ] || pdie "ACCOUNTS must be >= 2"
for c in $CONNECTIONS $RATE_CONNS; do
    [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -ge "$THREADS" ] ||
        pdie "connection counts must be numbers >= THREADS ($THREADS): '$c'"
done
for s in $SCENARIOS; do
    [ -f "perf/wrk/$s.lua" ] || pdie "no scenario perf/wrk/$s.lua"
done
has_scenario() {   # has_scenario NAME...: one of them is in SCENARIOS
    local s n
    for s in $SCENARIOS; do for n in "$@"; do [ "$s" = "$n" ] && return 0; done; done
    return 1
}
# the scenarios' own knobs (perf/wrk/common.lua), passed to wrk when set
WRK_KNOBS=()
for v in AMOUNT HOLD_EXPIRES_IN CARD_AMOUNT CARD_EXPIRES_IN CARD_VOID_PCT CARD_PARTIAL_PCT; do
    [ -n "${!v:-}" ] && WRK_KNOBS+=("$v=${!v}")
done
for t in wrk curl mariadb perl; do
    command -v "$t" >/dev/null || pdie "$t is missing (make run installs it)"
done

RUN="b$(date -u +%m%d%H%M%S)"
mkdir -p "$OUT" "$RAW"
rm -rf "$RAW"
mkdir -p "$RAW/plot"
RUNS="$RAW/runs.txt"
META="$RAW/meta.txt"
: > "$RUNS"
: > "$META"
LOG="$RAW/run-all.log"
exec > >(tee "$LOG") 2>&1

meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }

WRK_PID=""
cleanup() {
    [ -n "$WRK_PID" ] && kill -INT "$WRK_PID" 2>/dev/null || true
    twin_stop || true
    if [ "$STOP_STACK" = 1 ]; then
        conf/stack.sh stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T_BEGIN=$(date +%s)
plog "run $RUN: ACCOUNTS=$ACCOUNTS DURATION=$DURATION CONNECTIONS='$CONNECTIONS' THREADS=$THREADS QUICK=$QUICK"

# ------------------------------------------------------------ the stack --

plog "starting the local stack: conf/stack.sh run"
conf/stack.sh run > "$RAW/stack.log" 2>&1 || { cat "$RAW/stack.log"; pdie "conf/stack.sh run failed"; }
plog "building the database client: make -C perf dbclient"
# (OUT on make's command line: this script's OUT, in the environment, would
# otherwise be the Makefile's output directory too)
make -s -C perf dbclient OUT="$ROOT/build/perf" > "$RAW/dbclient-build.log" 2>&1 ||
    { cat "$RAW/dbclient-build.log"; pdie "make -C perf dbclient failed"; }

REDO_MB=$(redo_log_check) || exit 1
FLUSH=$(sql "SELECT @@innodb_flush_log_at_trx_commit")
plog "innodb_flush_log_at_trx_commit = $FLUSH (every COMMIT is flushed to disk before it returns)"
[ "$FLUSH" = 1 ] || plog "WARNING: innodb_flush_log_at_trx_commit is not 1: commits are not durable, the ceiling is not comparable"

# ------------------------------------------------------------- machine --

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM_MB=$(awk '/^MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta run "$RUN"
meta root "$ROOT"
meta machine "$(nproc) cores ($CPU_MODEL), ${MEM_MB} MiB memory, $(uname -sr)"
meta versions "$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //'), MariaDB $(sql 'SELECT VERSION()'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(redis-server --version | awk '{print $1, $3}')"
meta git "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain -- src config ngx_rbcs_module.c conf 2>/dev/null | grep -q . && echo ' (working tree has uncommitted changes under src/ config conf/)')"
meta module "$(sha256sum build/ngx_rbcs_module.so | cut -c1-16) $(date -u -r build/ngx_rbcs_module.so +%Y-%m-%dT%H:%M:%SZ)"
meta db "innodb_flush_log_at_trx_commit=$FLUSH, $(sql "SELECT CONCAT('innodb_buffer_pool_size=', @@innodb_buffer_pool_size DIV 1048576, 'M, innodb_log_file_size=${REDO_MB}M, innodb_flush_method=', @@innodb_flush_method, ', binlog=', IF(@@log_bin, 'on', 'off'))"), datadir on $(df -P var/run/mariadb | awk 'NR==2 {print $1}') ($(findmnt -no FSTYPE -T var/run/mariadb 2>/dev/null || stat -f -c %T var/run/mariadb))"
meta settings "ACCOUNTS=$ACCOUNTS PREFIX=$PREFIX DURATION=$DURATION CONNECTIONS='$CONNECTIONS' THREADS=$THREADS HOT_KEYS=$HOT_KEYS DB_LEAN_THREADS='$DB_LEAN_THREADS' DB_BATCHES='$DB_BATCHES' DB_THREADS='$DB_THREADS' DB_DURATION=$DB_DURATION RATE_CONNS=$RATE_CONNS RATE_DURATION=$RATE_DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS QUICK=$QUICK${WRK_KNOBS[*]:+ ${WRK_KNOBS[*]}}"
plog "machine: $(nproc) cores, ${MEM_MB} MiB; wrk, nginx, MariaDB and Redis share these cores"

# ------------------------------------------------------------ accounts --

plog "accounts: perf/gen-accounts.sh $ACCOUNTS $PREFIX"
GEN=$(perf/gen-accounts.sh "$ACCOUNTS" "$PREFIX")
echo "$GEN"
meta accounts "$GEN"
plog "the write baseline's accounts: perf/gen-accounts.sh --baseline $ACCOUNTS $PREFIX"
GENB=$(perf/gen-accounts.sh --baseline "$ACCOUNTS" "$PREFIX")
echo "$GENB"
meta baseline "$GENB"
# does the data fit in the buffer pool (conf/my.cnf.in)?
sql "ANALYZE TABLE accounts, entries, transactions, audit_log, rbcs_baseline.accounts, rbcs_baseline.transactions" > /dev/null
meta data "$(sql "SELECT GROUP_CONCAT(CONCAT(s, ' ', mb, ' MB') SEPARATOR ', ') FROM (SELECT table_schema s, ROUND(SUM(data_length + index_length) / 1048576) mb FROM information_schema.tables WHERE table_schema IN ('rbcs', 'rbcs_baseline') GROUP BY table_schema) t") at the start (InnoDB's estimate), buffer pool $(sql "SELECT @@innodb_buffer_pool_size DIV 1048576") MB"

# ------------------------------------------------------------- the twin --

# real answers, for the size of the static ones (from the make-run nginx)
J='Content-Type: application/json'
STACK_URL="http://127.0.0.1:$HTTP_PORT"
A1=$(account_name 1); A3=$(account_name 3); A4=$(account_name 4)
BAL_BODY=$(curl -s -m 5 "$STACK_URL/accounts/$A1/balance?consistency=strong")
case "$BAL_BODY" in *'"version"'*) ;; *) pdie "no balance for $A1: $BAL_BODY";; esac
# a probe transfer there and back, with an id as long as the scenarios' ones
TX_BODY=$(curl -s -m 5 -XPOST -H "$J" "$STACK_URL/accounts/transactions" \
    -d "{\"transactionId\":\"$RUN-tu-c32-1-1000\",\"sourceAccountNumber\":\"$A3\",\"destinationAccountNumber\":\"$A4\",\"amount\":\"0.01\"}")
curl -s -m 5 -o /dev/null -XPOST -H "$J" "$STACK_URL/accounts/transactions" \
    -d "{\"transactionId\":\"$RUN-tu-c32-1-1001\",\"sourceAccountNumber\":\"$A4\",\"destinationAccountNumber\":\"$A3\",\"amount\":\"0.01\"}"
case "$TX_BODY" in *'"COMPLETED"'*) ;; *) pdie "probe transfer failed: $TX_BODY";; esac
EXT=$(external_account)
if has_scenario deposit; then
    # deposits come from outside the ledger: an EXTERNAL account, opened
    # through the API (201, or 200 when it exists with the same fields)
    EXT_BODY=$(curl -s -m 5 -w ' %{http_code}' -XPOST -H "$J" "$STACK_URL/accounts" \
        -d "{\"accountNumber\":\"$EXT\",\"currency\":\"${CURRENCY:-USD}\",\"kind\":\"EXTERNAL\"}")
    case "$EXT_BODY" in
        *'"EXTERNAL"'*' 201'|*'"EXTERNAL"'*' 200') ;;
        *) pdie "could not open the EXTERNAL account $EXT for the deposits: $EXT_BODY";;
    esac
    plog "the deposits' EXTERNAL account $EXT: balance $(external_balance)"
fi
if has_scenario hold capture card; then
    # the module has holds: a hold of 0.01 and its void (changes nothing)
    HOLD_BODY=$(curl -s -m 5 -XPOST -H "$J" "$STACK_URL/accounts/transactions" \
        -d "{\"transactionId\":\"$RUN-probe-hold\",\"sourceAccountNumber\":\"$A3\",\"destinationAccountNumber\":\"$A4\",\"amount\":\"0.01\",\"hold\":true}")
    case "$HOLD_BODY" in *'"PENDING"'*) ;; *) pdie "probe hold failed (does the module have holds?): $HOLD_BODY";; esac
    VOID_BODY=$(curl -s -m 5 -XPOST -H "$J" "$STACK_URL/accounts/transactions/$RUN-probe-hold/void" -d '{}')
    case "$VOID_BODY" in *'"VOIDED"'*) ;; *) pdie "probe void failed: $VOID_BODY";; esac
fi
esc() { case "$1" in *'$'*) pdie "an answer contains a \$, nginx cannot return it as text: $1";; esac; local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
STATIC="location ^~ /static/accounts/transactions { default_type application/json; return 201 \"$(esc "$TX_BODY")\"; } location ^~ /static/accounts/ { default_type application/json; add_header X-RBCS-Cache zone; return 200 \"$(esc "$BAL_BODY")\"; }"

# the zone: 16m as shipped, larger when ACCOUNTS would not fit at 256 bytes each
ZONE_MB=16
need=$(( (ACCOUNTS * 256 + 1048575) / 1048576 + 8 ))
[ "$need" -gt "$ZONE_MB" ] && ZONE_MB=$need
ZONE_KB=$((ZONE_MB * 1024))
meta zone "${ZONE_MB}m"

plog "twin nginx on 127.0.0.1:$PERF_PORT (prefix var/perf/twin, cache zone ${ZONE_MB}m)"
twin_render "$STATIC" "${ZONE_MB}m"
twin_start
TWIN_URL="http://127.0.0.1:$PERF_PORT"
SR=$(curl -s -o /dev/null -w '%{size_download}/%{size_header}' "$TWIN_URL/accounts/$A1/balance")
SS=$(curl -s -o /dev/null -w '%{size_download}/%{size_header}' "$TWIN_URL/static/accounts/$A1/balance")
TS=$(curl -s -o /dev/null -w '%{size_download}/%{size_header}' -XPOST -H "$J" "$TWIN_URL/static/accounts/transactions" -d '{}')
TR=$(printf '%s' "$TX_BODY" | wc -c)
plog "answer sizes (body/headers): balance $SR, static balance $SS; transfer body $TR, static transfer $TS"
meta sizes "balance read $SR, its static twin $SS; transfer body $TR bytes, its static twin $TS (body/headers, bytes)"
# that read went through the database (a miss): forget it for the zone
# measurement by restarting the twin (a fresh zone)
twin_start

# -------------------------------------------------------- quiet machine --

QUIET_USED=0
# quiet_wait: wait (bounded) until processes outside this benchmark use at
# most QUIET_MAX % of a core; print what they used.
quiet_wait() {
    local a b f i=0
    [ "$QUIET_WAIT" -gt 0 ] || return 0
    while :; do
        a=$(cpu_sample); sleep 1; b=$(cpu_sample)
        f=$(cpu_kv "$a" "$b" | sed 's/.*cpu_other=\([0-9]*\).*/\1/')
        if [ "$f" -le "$QUIET_MAX" ]; then
            return 0
        fi
        if [ "$i" -ge "$QUIET_WAIT" ] || [ "$QUIET_USED" -ge "$QUIET_BUDGET" ]; then
            plog "  (machine not quiet: other processes use ${f}% of a core; going on)"
            return 0
        fi
        [ "$i" = 0 ] && plog "  waiting for other processes to calm down (${f}% of a core)"
        i=$((i + 1)); QUIET_USED=$((QUIET_USED + 1))
    done
}

kv() {   # kv KEY "k=v k=v ...": the value of KEY
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}

# ------------------------------------------------------- balance checks --

EXPECTED_N=$(sql "SELECT $ACCOUNTS * $BALANCE")
# the keys of a money check in runs.txt
CHECK_KEYS='check|total_before|total_after|negative|sum_accounts|external|held_total|pending_holds|holds'
# check_begin / check_end LABEL: total of all balances unchanged, no
# STANDARD account below its floor (balance - held < -overdraft limit: for
# the benchmark's accounts, a negative available balance), the generated
# accounts and PREFIX-EXT (the deposits' source, at 0 until a deposit: see
# balance_totals in perf/lib.sh) hold exactly ACCOUNTS*BALANCE; after hold,
# capture and card also: the sum of the held balances is the sum of the
# pending holds
check_begin() { CHECK_BEFORE=$(balance_totals); }
check_end() {
    local after total0 total1 neg sumn ext ok=ok held="" htot hsum hn
    after=$(balance_totals)
    read -r total0 _ _ <<<"$CHECK_BEFORE"
    read -r total1 neg sumn <<<"$after"
    ext=$(external_balance)
    [ "$total0" = "$total1" ] || ok=FAIL
    [ "$neg" = 0 ] || ok=FAIL
    [ "$(sql "SELECT $sumn = $EXPECTED_N")" = 1 ] || ok=FAIL
    CHECK_KV="check=$ok total_before=$total0 total_after=$total1 negative=$neg sum_accounts=$sumn external=$ext"
    case "$1" in
        hold*|capture*|card*)
            read -r htot hsum hn <<<"$(hold_totals)"
            held=ok
            [ "$(sql "SELECT $htot = $hsum")" = 1 ] || { held=FAIL; ok=FAIL; }
            CHECK_KV="check=$ok ${CHECK_KV#check=* } held_total=$htot pending_holds=$hn holds=$held"
            held="; held balances $htot, pending holds $hn for $hsum: $held";;
    esac
    plog "  money check after $1: $ok (total before $total0, after $total1; below their floor: $neg; accounts 1..$ACCOUNTS and $EXT hold $sumn, expected $EXPECTED_N; $EXT: $ext$held)"
}

# ------------------------------------------------- shm per cached account --

plog "shared memory per cached account: fill the zone with all $ACCOUNTS accounts"
sleep 0.5
Z0=$(twin_zone_pages "$ZONE_KB")
FILL_S=$(( ACCOUNTS / 500 + 30 ))
FILL_CMD="ACCOUNTS=$ACCOUNTS PREFIX=$PREFIX THREADS=$THREADS wrk -t$THREADS -c16 -d${FILL_S}s -s perf/wrk/fill.lua $TWIN_URL"
echo "# $FILL_CMD" > "$RAW/fill.txt"
ACCOUNTS=$ACCOUNTS PREFIX=$PREFIX THREADS=$THREADS \
    wrk -t"$THREADS" -c16 -d"${FILL_S}s" -s perf/wrk/fill.lua "$TWIN_URL" >> "$RAW/fill.txt" 2>&1 &
WRK_PID=$!
for ((i = 0; i < FILL_S * 10; i++)); do
    [ "$(grep -c '^fill-done' "$RAW/fill.txt" || true)" -ge "$THREADS" ] && break
    kill -0 "$WRK_PID" 2>/dev/null || break
    sleep 0.1
done
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" || true
WRK_PID=""
FILLED=$(grep '^fill-done' "$RAW/fill.txt" | awk '{s += $4} END {print s + 0}')
sleep 0.5
Z1=$(twin_zone_pages "$ZONE_KB")
# every account must still be in the zone (no eviction): sample some
EVICTED=0
for i in 1 2 3 $((ACCOUNTS / 3)) $((ACCOUNTS / 2)) $((ACCOUNTS - 1)) "$ACCOUNTS"; do
    [ "$i" -ge 1 ] || continue
    tier=$(curl -s -D - -o /dev/null "$TWIN_URL/accounts/$(account_name "$i")/balance" |
           tr -d '\r' | awk -F': ' 'tolower($1)=="x-rbcs-cache"{print $2}')
    [ "$tier" = zone ] || EVICTED=$((EVICTED + 1))
done
read -r z0 _ <<<"$Z0"
read -r z1 _ <<<"$Z1"
BPA=$(awk -v a="$z0" -v b="$z1" -v n="$ACCOUNTS" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}')
plog "  zone resident: $z0 kB before, $z1 kB after $FILLED balance reads => $BPA bytes per cached account (samples not served by the zone: $EVICTED)"
plog "  per process (pid:Rss kB) before: ${Z0#* }; after: ${Z1#* }"
echo "kind=shm zone_kb=$ZONE_KB before_kb=$z0 after_kb=$z1 filled=$FILLED accounts=$ACCOUNTS bytes_per_account=$BPA not_in_zone=$EVICTED" >> "$RUNS"
meta shm_detail "zone mapping resident (sum of Pss over the twin's master and workers): $z0 kB before, $z1 kB after; per process pid:Rss kB before ${Z0#* }, after ${Z1#* }"

# ---------------------------------------------------- the database alone --

run_dbclient() {   # lean|batch B uniform|hot THREADS
    local mode=$1 bs=$2 pairs=$3 t=$4 raw="$RAW/db-$1-b$2-$3-t$4.txt" out a b d0 d1 t0 t1 cpu
    # database and user: rbcs_baseline (lean), rbcs (batch), dbclient's
    # defaults; mariadbd's CPU over the timed run alone (not dbclient's
    # money checks)
    local cmd=("$DBCLIENT" --mode "$mode" --batch "$bs" -h 127.0.0.1 -P "$MYSQL_PORT"
               -t "$t" -d "$DB_DURATION" -m "$pairs" -n "$ACCOUNTS" -x "$PREFIX"
               -r "$RUN-d${mode:0:1}$bs${pairs:0:1}$t"
               --cpu-pid "$(tr -dc '0-9' < "$ROOT/var/run/mariadb/mariadbd.pid")")
    quiet_wait
    echo "# ${cmd[*]}" > "$raw"
    a=$(cpu_sample); d0=$(db_status); t0=$(date +%s.%N)
    { TIMEFORMAT='CLIENT-CPU %U %S'; time timeout --signal=INT $((DB_DURATION + 60)) "${cmd[@]}"; } >> "$raw" 2>&1 || true
    t1=$(date +%s.%N); b=$(cpu_sample); d1=$(db_status)
    out=$(grep '^DBCLIENT' "$raw" | head -1 || true)
    [ -n "$out" ] || { cat "$raw"; pdie "dbclient failed, see $raw"; }
    local el cl
    el=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
    cl=$(awk -v e="$el" '/^CLIENT-CPU/ {printf "%.0f", 100 * ($2 + $3) / e}' "$raw")
    cpu=$(cpu_kv "$a" "$b")
    local other foreign
    other=$(kv cpu_other "$cpu"); foreign=$(( other > cl ? other - cl : 0 ))
    echo "kind=db ${out#DBCLIENT } $cpu client_cpu=$cl foreign_cpu=$foreign $(db_kv "$d0" "$d1" "$el")" >> "$RUNS"
    printf '  %-5s B=%-3s %-7s T=%-3s %s\n' "$mode" "$bs" "$pairs" "$t" "$(echo "$out" | sed 's/.*transfers=[0-9]* //; s/ total=[^ ]*//')"
    [ "$(kv money "${out#DBCLIENT }")" = ok ] || plog "  WARNING: dbclient's money check failed, see $raw"
}

plog "the database alone (dbclient, ${DB_DURATION}s each): the lean procedure at T in '$DB_LEAN_THREADS'; the module's two round trips, B in '$DB_BATCHES' transfers per transaction, T in '$DB_THREADS'"
for pairs in uniform hot; do
    check_begin
    for t in $DB_LEAN_THREADS; do
        run_dbclient lean 1 "$pairs" "$t"
    done
    for bs in $DB_BATCHES; do
        for t in $DB_THREADS; do
            run_dbclient batch "$bs" "$pairs" "$t"
        done
    done
    # the project's database (the lean runs check their own, each run)
    check_end "dbclient $pairs"
    echo "kind=check what=dbclient-$pairs $CHECK_KV" >> "$RUNS"
done

# ------------------------------------------------------------ scenarios --

short_of() {
    case "$1" in
        balance-uniform) echo bu;; balance-hot) echo bh;; transfer-uniform) echo tu;;
        transfer-hot) echo th;; mix) echo mx;; transfer-rate) echo tr;;
        hold) echo ho;; capture) echo ca;; deposit) echo de;; card) echo cd;; *) echo x;;
    esac
}

# run_wrk SCENARIO TARGET(rbcs|static) CONNS DURATION [NAME=VALUE...]
run_wrk() {
    local scen=$1 target=$2 c=$3 dur=$4; shift 4
    local base="" raw id a b d0 d1 t0 t1 stats cpu el wcpu other foreign dbkv=""
    [ "$target" = static ] && base=/static
    raw="$RAW/wrk-$scen-$target-c$c${ATTEMPT:-}.txt"
    id="$RUN-$(short_of "$scen")${target:0:1}$c${ATTEMPT:-}"
    local envs=(ACCOUNTS="$ACCOUNTS" PREFIX="$PREFIX" HOT_KEYS="$HOT_KEYS" RUN_ID="$id" ${WRK_KNOBS[@]+"${WRK_KNOBS[@]}"} "$@")
    [ -n "$base" ] && envs+=(BASE="$base")
    local cmd=(wrk -t"$THREADS" -c"$c" -d"$dur" --latency -s "perf/wrk/$scen.lua" "$TWIN_URL")
    quiet_wait
    echo "# ${envs[*]} ${cmd[*]}" > "$raw"
    a=$(cpu_sample); d0=$(db_status); t0=$(date +%s.%N)
    { TIMEFORMAT='WRK-CPU %U %S'; time timeout --signal=INT $(( $(secs_of "$dur") + 30 )) env "${envs[@]}" "${cmd[@]}"; } >> "$raw" 2>&1 || true
    t1=$(date +%s.%N); b=$(cpu_sample); d1=$(db_status)
    stats=$(grep '^RBCS-STATS' "$raw" | head -1 | sed 's/^RBCS-STATS //' || true)
    if [ -z "$stats" ]; then
        tail -5 "$raw"
        plog "  WARNING: no statistics from wrk, see $raw"
        echo "kind=wrk scenario=$scen target=$target conns=$c failed=1" >> "$RUNS"
        return 0
    fi
    el=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
    wcpu=$(awk -v e="$el" '/^WRK-CPU/ {printf "%.0f", 100 * ($2 + $3) / e}' "$raw")
    cpu=$(cpu_kv "$a" "$b")
    other=$(kv cpu_other "$cpu"); foreign=$(( other > wcpu ? other - wcpu : 0 ))
    case "$scen" in transfer*|mix|hold|capture|deposit|card) [ "$target" = rbcs ] && dbkv="$(db_kv "$d0" "$d1" "$el") db_cpu_s=$(db_cpu_s "$a" "$b")";; esac
    LAST_KV="kind=wrk target=$target conns=$c $stats $cpu wrk_cpu=$wcpu foreign_cpu=$foreign $dbkv"
    printf '  %-16s %-6s c=%-4s %9s req/s  p50 %7.2f ms  p99 %8.2f ms  non-2xx %s  socket errors %s  (CPU busy %s%%: nginx %s%%, mariadbd %s%%, wrk %s%%, foreign %s%%)\n' \
        "$scen" "$target" "$c" "$(kv rps "$stats")" \
        "$(awk -v v="$(kv p50_us "$stats")" 'BEGIN {print v / 1000}')" \
        "$(awk -v v="$(kv p99_us "$stats")" 'BEGIN {print v / 1000}')" \
        "$(kv non2xx "$stats")" "$(kv socket_errors "$stats")" \
        "$(kv cpu_busy "$cpu")" "$(kv cpu_nginx "$cpu")" "$(kv cpu_db "$cpu")" "$wcpu" "$foreign"
    [ -n "$dbkv" ] && printf '  %-16s %-6s c=%-4s database: %s\n' "" "" "$c" "$dbkv"
    return 0
}

for c in $CONNECTIONS; do
    plog "connections: $c (wrk -t$THREADS -c$c -d$DURATION)"
    for scen in $SCENARIOS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            ATTEMPT_R=""
            [ "$ROUNDS" -gt 1 ] && ATTEMPT_R="-r$round"
            # warm the zone up before a read run so that it measures the
            # zone, not refills
            case "$scen" in
                balance-*)
                    { echo "# warm-up, not measured"
                      env ACCOUNTS="$ACCOUNTS" PREFIX="$PREFIX" HOT_KEYS="$HOT_KEYS" RUN_ID="$RUN-w$c-$round" \
                          timeout --signal=INT $(( $(secs_of "$WARMUP") + 30 )) \
                          wrk -t"$THREADS" -c"$c" -d"$WARMUP" -s "perf/wrk/$scen.lua" "$TWIN_URL"
                    } > "$RAW/warmup-$scen-c$c${ATTEMPT_R:-}.log" 2>&1 || true
                    # the reads must now come from the zone
                    tier=$(curl -s -D - -o /dev/null "$TWIN_URL/accounts/$A1/balance" | tr -d '\r' |
                           awk -F': ' 'tolower($1)=="x-rbcs-cache"{print $2}')
                    [ "$tier" = zone ] || plog "  WARNING: after the warm-up, a balance read is answered by: $tier";;
            esac
            best_f=""; best_s=""; best_r=""
            for ((attempt = 1; ; attempt++)); do
                ATTEMPT=""
                [ "$ROUNDS" -gt 1 ] && ATTEMPT="-r$round"
                [ "$attempt" -gt 1 ] && ATTEMPT="$ATTEMPT-a$attempt"
                run_wrk "$scen" static "$c" "$DURATION"
                s_kv=${LAST_KV:-}
                LAST_KV=""
                case "$scen" in transfer*|mix|hold|capture|deposit|card) check_begin;; esac
                run_wrk "$scen" rbcs "$c" "$DURATION"
                r_kv=${LAST_KV:-}
                LAST_KV=""
                case "$scen" in
                    transfer*|mix|hold|capture|deposit|card)
                        check_end "$scen c=$c"
                        if [ -n "$r_kv" ]; then
                            r_kv="$r_kv $CHECK_KV"
                        else
                            echo "kind=check what=$scen-c$c $CHECK_KV" >> "$RUNS"
                        fi;;
                esac
                # other processes (not this benchmark) during either run
                f=$(( $(kv foreign_cpu "$s_kv") + 0 )); g=$(( $(kv foreign_cpu "$r_kv") + 0 ))
                [ "$g" -gt "$f" ] && f=$g
                if [ -z "$best_f" ] || [ "$f" -lt "$best_f" ]; then
                    # a discarded attempt's money check still counts
                    if [ -n "$best_r" ] && [ -n "$(kv check "$best_r")" ]; then
                        echo "kind=check what=$scen-c$c-discarded $(printf '%s\n' $best_r | grep -E "^($CHECK_KEYS)=" | tr '\n' ' ')" >> "$RUNS"
                    fi
                    best_f=$f; best_s=$s_kv; best_r=$r_kv
                elif [ -n "$(kv check "$r_kv")" ]; then
                    echo "kind=check what=$scen-c$c-discarded $(printf '%s\n' $r_kv | grep -E "^($CHECK_KEYS)=" | tr '\n' ' ')" >> "$RUNS"
                fi
                if [ "$f" -le "$QUIET_MAX" ] || [ "$attempt" -gt "$RETRY_NOISY" ] ||
                   [ "$RETRIES_USED" -ge "$RETRY_BUDGET" ]; then
                    break
                fi
                RETRIES_USED=$((RETRIES_USED + 1))
                plog "  other processes used ${f}% of a core during that pair: running it again"
            done
            ATTEMPT=""
            [ -n "$best_s" ] && echo "$best_s attempts=$attempt round=$round" >> "$RUNS"
            [ -n "$best_r" ] && echo "$best_r attempts=$attempt round=$round" >> "$RUNS"
            sleep 1
        done
    done
done

# ------------------------------------------------- p99 at half of the peak --

PEAK=$(perl -ne 'next unless /scenario=transfer-uniform\b/ && /target=rbcs/; my ($c) = /\bconns=(\d+)/; my ($r) = /\brps=([\d.]+)/; print "$c $r\n" if defined $c && defined $r' "$RUNS" |
       sort -k2 -g | tail -1)
if [ -n "$PEAK" ]; then
    read -r PEAK_C PEAK_RPS <<<"$PEAK"
    HALF=$(awk -v r="$PEAK_RPS" 'BEGIN {printf "%d", r / 2}')
    plog "p99 at half of the peak transfer throughput: peak $PEAK_RPS/s (c=$PEAK_C), aiming at $HALF/s with $RATE_CONNS connections for $RATE_DURATION"
    # like every scenario: run again when other processes were busy
    # meanwhile, keeping the quietest attempt
    best_kv=""; best_f=""
    for ((attempt = 1; ; attempt++)); do
        ATTEMPT=""
        [ "$attempt" -gt 1 ] && ATTEMPT="-a$attempt"
        check_begin
        run_wrk transfer-rate rbcs "$RATE_CONNS" "$RATE_DURATION" RATE="$HALF" CONNS="$RATE_CONNS" THREADS="$THREADS"
        check_end "transfer-rate"
        r_kv="$LAST_KV $CHECK_KV target_rps=$HALF peak_rps=$PEAK_RPS peak_conns=$PEAK_C"
        LAST_KV=""
        f=$(( $(kv foreign_cpu "$r_kv") + 0 ))
        if [ -z "$best_f" ] || [ "$f" -lt "$best_f" ]; then
            if [ -n "$best_kv" ]; then
                echo "kind=check what=transfer-rate-discarded $(printf '%s\n' $best_kv | grep -E "^($CHECK_KEYS)=" | tr '\n' ' ')" >> "$RUNS"
            fi
            best_f=$f; best_kv=$r_kv
        else
            echo "kind=check what=transfer-rate-discarded $(printf '%s\n' $r_kv | grep -E "^($CHECK_KEYS)=" | tr '\n' ' ')" >> "$RUNS"
        fi
        if [ "$f" -le "$QUIET_MAX" ] || [ "$attempt" -gt "$RETRY_NOISY" ] ||
           [ "$RETRIES_USED" -ge "$RETRY_BUDGET" ]; then
            break
        fi
        RETRIES_USED=$((RETRIES_USED + 1))
        plog "  other processes used ${f}% of a core during the half-peak run: running it again"
    done
    ATTEMPT=""
    echo "$best_kv attempts=$attempt" >> "$RUNS"
else
    plog "no transfer-uniform run: no half-peak run"
fi

twin_stop
T_END=$(date +%s)
meta elapsed "$((T_END - T_BEGIN))"
meta quiet_waited "$QUIET_USED"
meta retries "$RETRIES_USED"

# ------------------------------------------------------------- results --

plog "writing $OUT/results.md and the plots"
perl - "$RUNS" "$META" "$RAW/plot" "$SCENARIOS" "$OUT/results.md" <<'PERL'
use strict;
use warnings;

my ($runs, $metaf, $plotdir, $scenlist, $outf) = @ARGV;
my @scen = split ' ', $scenlist;
my (@wrk, @db, %shm, @checks, %meta, $rate);

open my $fh, '<', $metaf or die "$metaf: $!";
while (<$fh>) { chomp; my ($k, $v) = split /\t/, $_, 2; $meta{$k} = $v; }
close $fh;

open $fh, '<', $runs or die "$runs: $!";
while (<$fh>) {
    chomp;
    my %r = map { /^([^=]+)=(.*)$/ ? ($1, $2) : () } split ' ';
    next unless $r{kind};
    if ($r{kind} eq 'wrk') {
        if (($r{scenario} // '') eq 'transfer-rate') { $rate = \%r; } else { push @wrk, \%r; }
    }
    push @db, \%r if $r{kind} eq 'db';
    %shm = %r if $r{kind} eq 'shm';
    push @checks, \%r if $r{kind} eq 'check' || (exists $r{check} && $r{kind} eq 'wrk');
}
close $fh;

my (%res, %all);   # scenario -> target -> conns -> run (the median round)
for my $r (@wrk) {
    next if $r->{failed};
    push @{ $all{$r->{scenario}}{$r->{target}}{$r->{conns}} }, $r;
}
for my $s (keys %all) {
    for my $t (keys %{ $all{$s} }) {
        for my $c (keys %{ $all{$s}{$t} }) {
            my @v = sort { $a->{rps} <=> $b->{rps} } @{ $all{$s}{$t}{$c} };
            $res{$s}{$t}{$c} = $v[int($#v / 2)];
            $res{$s}{$t}{$c}{rounds} = scalar @v;
        }
    }
}
# the best run of each configuration: "lean-1-uniform", "batch-16-hot" ...
my (%dbbest);
my $dbkey = sub { my $r = shift; "$r->{mode}-$r->{batch}-$r->{pairs}" };
for my $r (@db) {
    my $k = $dbkey->($r);
    $dbbest{$k} = $r if !$dbbest{$k} || $r->{tps} > $dbbest{$k}{tps};
}
# what the service's transfers are judged against: uniform against the
# lean baseline, the hot pair against one transfer per transaction with
# the module's SQL (the hot pair's rows serialise every transaction)
# the hot pair, and deposits: every deposit locks the EXTERNAL account's
# row, as every transfer-hot transfer locks the pair's, so one transfer per
# transaction would apply them one at a time too
my %judge = ('transfer-uniform' => 'lean-1-uniform', 'transfer-hot' => 'batch-1-hot',
             'deposit' => 'batch-1-hot');
my %judge_name = ('lean-1-uniform' => 'lean procedure', 'batch-1-hot' => "module's SQL, B=1");
my $x = sub { my ($a, $b) = @_; (defined $a && defined $b && $b > 0) ? sprintf('%.2fx', $a / $b) : '-' };
# mariadbd CPU per transfer, in microseconds (a run's db_cpu_s over its transfers)
my $cpu_us = sub {
    my ($r, $n) = @_;
    return '-' unless defined $r->{db_cpu_s} && $n;
    return sprintf('%.0f', 1e6 * $r->{db_cpu_s} / $n);
};

my $ms = sub { defined $_[0] ? sprintf('%.2f', $_[0] / 1000) : '-' };
my $pct = sub { my ($a, $b) = @_; (defined $a && defined $b && $b > 0) ? sprintf('%.1f%%', 100 * $a / $b) : '-' };
my $err = sub {
    my $r = shift;
    my $n = ($r->{non2xx} // 0) + ($r->{socket_errors} // 0);
    return "$n" if !$n;
    return "$n ($r->{non2xx} non-2xx, $r->{socket_errors} socket)";
};
my $tps_of = sub {   # transfers/s of a run: its 201 answers
    my $r = shift;
    return ($r->{status_201} // 0) / ($r->{seconds} || 1);
};
my $changes_of = sub {   # state changes/s of a run: 201 (transfers, holds) + 200 (captures, voids)
    my $r = shift;
    return (($r->{status_201} // 0) + ($r->{status_200} // 0)) / ($r->{seconds} || 1);
};
my %two_phase = map { $_ => 1 } qw(hold capture deposit card);
my $transfers_of = sub {   # transfers a wrk run asked for (201 + 4xx outcomes)
    my $r = shift;
    my $n = 0;
    $n += $r->{$_} // 0 for grep { /^status_(201|4\d\d)$/ } keys %$r;
    return $n;
};
my $limit = sub {
    my ($r, $s) = @_;
    my $x = ($r->{attempts} // 1) > 1 ? "; the quietest of $r->{attempts} attempts" : "";
    $x .= "; median of $r->{rounds} rounds: " . join(", ", map { sprintf("%.0f", $_->{rps}) } sort { $a->{rps} <=> $b->{rps} } @{ $all{$s}{$r->{target}}{$r->{conns}} }) . " req/s" if ($r->{rounds} // 1) > 1;
    my $busy = $r->{cpu_busy} // 0;
    my $cpu = sprintf('nginx %d%%, mariadbd %d%%, wrk %d%%', $r->{cpu_nginx}, $r->{cpu_db}, $r->{wrk_cpu});
    $cpu .= sprintf(', other processes %d%%', $r->{foreign_cpu}) if ($r->{foreign_cpu} // 0) >= 10;
    if ($s =~ /^transfer|^mix/ && $r->{target} eq 'rbcs') {
        my $per = ($r->{commits_s} // 0) > 0 ? sprintf('%.2f', $tps_of->($r) / $r->{commits_s}) : '?';
        my $db = sprintf('%s commits/s, %s transfers per COMMIT, %s fsyncs/COMMIT',
                         $r->{commits_s} // '?', $per, $r->{fsyncs_per_commit} // '?');
        return "CPU ($busy% busy: $cpu); $db$x" if $busy >= 80;
        my $why = $s eq 'transfer-hot'
            ? 'row locks of the hot pair (transfers on it are serial)'
            : 'waiting on the database (round trip + commit)';
        return "$why; CPU $busy% busy ($cpu); $db$x";
    }
    if ($two_phase{$s} && $r->{target} eq 'rbcs') {
        my $per = ($r->{commits_s} // 0) > 0 ? sprintf('%.2f', $changes_of->($r) / $r->{commits_s}) : '?';
        my $db = sprintf('%s commits/s, %s state changes per COMMIT, %s fsyncs/COMMIT',
                         $r->{commits_s} // '?', $per, $r->{fsyncs_per_commit} // '?');
        return "CPU ($busy% busy: $cpu); $db$x" if $busy >= 80;
        my $why = $s eq 'deposit'
            ? 'the row lock of the EXTERNAL account (every deposit takes it)'
            : 'waiting on the database (round trip + commit)';
        return "$why; CPU $busy% busy ($cpu); $db$x";
    }
    return "CPU ($busy% busy: $cpu)$x" if $busy >= 80;
    return "not CPU ($busy% busy: $cpu): latency-bound at this concurrency$x";
};

# plot data
for my $s (@scen) {
    for my $t (qw(rbcs static)) {
        my $f = $t eq 'rbcs' ? "$plotdir/$s.dat" : "$plotdir/static-$s.dat";
        open my $o, '>', $f or die "$f: $!";
        print $o "# connections rps p50_ms p99_ms\n";
        for my $c (sort { $a <=> $b } keys %{ $res{$s}{$t} || {} }) {
            my $r = $res{$s}{$t}{$c};
            printf $o "%d %s %.3f %.3f\n", $c, $r->{rps}, $r->{p50_us} / 1000, $r->{p99_us} / 1000;
        }
        close $o;
    }
}
for my $m (qw(uniform hot)) {
    my $b = $dbbest{$judge{"transfer-$m"}} or next;
    open my $o, '>', "$plotdir/db-$m" or die; print $o "$b->{tps}\n"; close $o;
}

my ($dbdur) = ($meta{settings} =~ /DB_DURATION=(\S+)/);
$dbdur //= "?";
my @md;
push @md, "# RBCS benchmark results", "";
push @md, "Run `$meta{run}`, $meta{date}, $meta{elapsed} s in all. Produced by `perf/run-all.sh` ($meta{settings}).", "";
push @md, "- **Machine**: $meta{machine}. wrk, both nginx instances, MariaDB and Redis all share these cores, so every figure below is a lower bound of what the service does on a machine of its own; the CPU columns say who used the cores.";
push @md, "- **Software**: $meta{versions}; git $meta{git}; module build $meta{module}.";
push @md, "- **Database**: $meta{db}. Every transfer is durable before its answer.";
push @md, "- **Accounts**: $meta{accounts}. The write baseline's own: $meta{baseline}.";
push @md, "- **Service under test**: a second nginx (\"twin\", 2 workers, access_log off, cache zone $meta{zone}) rendered from `conf/nginx.local.conf.in` with the module's shipped settings (pool of 8 connections per worker), plus static locations: `/static/accounts/...` answers `return 200` with a balance read's body and `X-RBCS-Cache` header, `/static/accounts/transactions` `return 201` with a transfer's body. Answer sizes: $meta{sizes}.";
push @md, "- The `make run` nginx on port 8080 stays up (idle, subscribed to the Redis channel like a second pod).";
push @md, sprintf("- Other processes on the machine (not part of this benchmark) are shown as \"other processes\" when they used 10%% of a core or more during a run; before each run the script waited for them to calm down (%s s in all), and ran a scenario and its static twin again when they used more than a quarter of a core meanwhile, keeping the quietest attempt (%s re-runs in all).", $meta{quiet_waited} // 0, $meta{retries} // 0);
push @md, "";

push @md, "## Results", "";
push @md, "Ratio: balance reads and the mix against the static twin answering the same requests (the HTTP ceiling); transfers (201 answers per second) against the database alone (best of the dbclient sweep below): transfer-uniform against the lean baseline (one procedure call per transfer), transfer-hot against one transfer per transaction with the module's SQL (B=1). \"vs static\" is every scenario against its static twin. Errors: non-2xx answers + socket errors (connect, read, write, timeout).", "";
if (grep { $two_phase{$_} } @scen) {
    push @md, "Holds, captures, deposits: hold is one new hold per request; capture and card alternate a hold and its resolution on every connection, so their req/s counts both halves (the next table splits them by kind); deposit is transfers from the EXTERNAL account, judged (201 per second) against one transfer per transaction with the module's SQL on the hot pair (every deposit locks the EXTERNAL account's row as every transfer-hot transfer locks the pair's); hold, capture and card against their static twin (no database-alone baseline exists for holds; the twin answers every POST under /static/accounts/transactions, captures and voids included, with a transfer's 201).", "";
}
push @md, "| scenario | connections | throughput (req/s) | p50 (ms) | p99 (ms) | errors | ratio to baseline | baseline (req/s) | vs static | CPU busy | what limits it | money check |";
push @md, "|---|---:|---:|---:|---:|---|---:|---|---:|---:|---|---|";
for my $s (@scen) {
    for my $c (sort { $a <=> $b } keys %{ $res{$s}{rbcs} || {} }) {
        my $r = $res{$s}{rbcs}{$c};
        my $st = $res{$s}{static}{$c};
        my ($base, $bname, $got) = (undef, '-', $r->{rps});
        if ($judge{$s}) {
            my $b = $dbbest{$judge{$s}};
            $got = $tps_of->($r);
            $base = $b->{tps} if $b;
            $bname = sprintf('%.0f (%s, %s, %d threads)', $base, $judge_name{$judge{$s}}, $b->{pairs}, $b->{threads}) if $b;
        } else {
            $base = $st->{rps} if $st;
            $bname = $st ? sprintf('%.0f (static)', $base) : '-';
        }
        my $chk = exists $r->{check} ? ($r->{check} eq 'ok' ? 'ok' : "**$r->{check}**") : '';
        push @md, sprintf('| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s%% | %s | %s |',
            $s, $c, $r->{rps}, $ms->($r->{p50_us}), $ms->($r->{p99_us}), $err->($r),
            $pct->($got, $base), $bname, $st ? $pct->($r->{rps}, $st->{rps}) : '-',
            $r->{cpu_busy}, $limit->($r, $s), $chk);
    }
}
push @md, "";

# ---- holds, captures, deposits: each kind of request apart
{
    my @rows;
    my $lat = sub {   # "p50 / p99" in ms from microseconds (-1: not measured)
        my ($p50, $p99) = @_;
        return '-' if !defined $p50 || $p50 < 0;
        return sprintf('%.2f / %.2f', $p50 / 1000, $p99 / 1000);
    };
    for my $s (grep { $two_phase{$_} } @scen) {
        for my $c (sort { $a <=> $b } keys %{ $res{$s}{rbcs} || {} }) {
            my $r = $res{$s}{rbcs}{$c};
            my $sec = $r->{seconds} || 1;
            my (@per, @ms);
            if (exists $r->{op_hold_n}) {   # capture, card: counted by kind in wrk
                for my $k (qw(hold capture void)) {
                    next unless $r->{"op_${k}_n"} || $s eq 'capture' && $k ne 'void';
                    push @per, sprintf('%ss %.0f', $k, $r->{"op_${k}_n"} / $sec);
                    push @ms, "$k " . $lat->($r->{"op_${k}_p50_us"}, $r->{"op_${k}_p99_us"});
                }
            } else {                        # hold, deposit: one kind, wrk's figures
                push @per, sprintf('%ss %.0f', $s, ($r->{status_201} // 0) / $sec);
                push @ms, "$s " . $lat->($r->{p50_us}, $r->{p99_us});
            }
            my $chg = $changes_of->($r);
            push @rows, sprintf('| %s | %d | %.0f | %s | %s | %s | %s | %s |',
                $s, $c, $r->{rps}, join(', ', @per), join('; ', @ms), $err->($r),
                ($r->{commits_s} // 0) > 0 ? sprintf('%.2f', $chg / $r->{commits_s}) : '-',
                $cpu_us->($r, $chg * $sec));
        }
    }
    if (@rows) {
        push @md, "### Holds, captures, deposits: each kind of request", "";
        push @md, "Answers per second of each kind (hold: 201 PENDING, capture and void: 200 COMPLETED / VOIDED, deposit: 201 COMPLETED) and each kind's p50 / p99: for capture and card measured in wrk's Lua from the moment the request is built (right before wrk starts its own clock) to its answer, matched by the answer's transactionId and status (perf/wrk/common.lua, M.two_phase); for hold and deposit, where every request is of one kind, wrk's own. A completed two-phase transfer is one capture. State changes: 201 and 200 answers; per COMMIT from `Com_commit`; mariadbd CPU per state change as in the figures below.", "";
        push @md, "| scenario | connections | requests/s | answered per second | p50 / p99 (ms) by kind | errors | state changes per COMMIT | mariadbd CPU per change (µs) |";
        push @md, "|---|---:|---:|---|---|---|---:|---:|";
        push @md, @rows, "";
    }
}

push @md, "### The HTTP ceiling: the same requests against `return 200/201`", "";
push @md, "| requests of | connections | throughput (req/s) | p50 (ms) | p99 (ms) | errors | CPU busy | CPU |";
push @md, "|---|---:|---:|---:|---:|---|---:|---|";
for my $s (@scen) {
    for my $c (sort { $a <=> $b } keys %{ $res{$s}{static} || {} }) {
        my $r = $res{$s}{static}{$c};
        push @md, sprintf('| %s | %d | %.0f | %s | %s | %s | %s%% | nginx %d%%, wrk %d%%%s |',
            $s, $c, $r->{rps}, $ms->($r->{p50_us}), $ms->($r->{p99_us}), $err->($r), $r->{cpu_busy},
            $r->{cpu_nginx}, $r->{wrk_cpu}, ($r->{foreign_cpu} // 0) >= 10 ? ", other processes $r->{foreign_cpu}%" : '');
    }
}
push @md, "";

push @md, "### The database alone (perf/dbclient)", "";
push @md, "`build/perf/dbclient`: T threads, one blocking Connector/C connection each (TCP, READ COMMITTED, as the module's pool), for $dbdur s per run, same accounts and amounts as the scenarios. **lean**: the write baseline, `CALL lean_transfer(...)` per transfer, one round trip, its own database `rbcs_baseline` (`perf/baseline.sql`: insert PENDING, lock both accounts in byte order, decide, two UPDATEs, commit). **batch B**: exactly the module's two round trips on the project's schema (lock and read, judge in the client, multi-row INSERTs of outcomes, entries and audit rows, one net UPDATE, COMMIT) with B transfers per database transaction; B=1 is one transfer per transaction. Best throughput of each configuration in **bold**; mariadbd CPU per transfer from `/proc/<pid>/stat` (user + system) over the run.", "";
push @md, "| mode | B | pairs | threads | transfers/s | p50 (ms) | p99 (ms) | retries | errors | rejected | transfers/commit | commits/s | fsyncs/commit | mariadbd CPU/transfer (µs) | CPU busy | mariadbd | client | money |";
push @md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";
for my $r (@db) {
    my $best = $dbbest{$dbkey->($r)} == $r;
    push @md, sprintf('| %s | %d | %s | %d | %s | %.2f | %.2f | %d | %d | %d | %.1f | %s | %s | %s | %s%% | %s%% | %s%% | %s |',
        $r->{mode}, $r->{batch}, $r->{pairs}, $r->{threads}, $best ? sprintf('**%.0f**', $r->{tps}) : sprintf('%.0f', $r->{tps}),
        $r->{p50_ms}, $r->{p99_ms}, $r->{retries}, $r->{errors}, $r->{rejected},
        $r->{commits} ? $r->{transfers} / $r->{commits} : 0,
        $r->{commits_s}, $r->{fsyncs_per_commit}, $cpu_us->($r, $r->{transfers}),
        $r->{cpu_busy}, $r->{cpu_db}, $r->{client_cpu}, $r->{money} eq 'ok' ? 'ok' : "**$r->{money}**");
}
push @md, "";

# ---- the figures the project is judged by
push @md, "## The figures", "";
my @tu = map { $res{'transfer-uniform'}{rbcs}{$_} } sort { $a <=> $b } keys %{ $res{'transfer-uniform'}{rbcs} || {} };
my @th = map { $res{'transfer-hot'}{rbcs}{$_} } sort { $a <=> $b } keys %{ $res{'transfer-hot'}{rbcs} || {} };
# the best of each by transfers (201 answers), not by answers of any kind
my ($btu) = sort { $tps_of->($b) <=> $tps_of->($a) } @tu;
my ($bth) = sort { $tps_of->($b) <=> $tps_of->($a) } @th;
my $lean_u = $dbbest{'lean-1-uniform'};
my $b1_h = $dbbest{'batch-1-hot'};
my $fig = 0;   # the figures present in this run, numbered in order
if ($btu && $lean_u) {
    push @md, sprintf('%d. **Transfers over the lean baseline** (uniform, target 1.5x or more, aim 2x): best %.0f transfers/s through the service (c=%d) against %.0f for the lean procedure alone (T=%d, the best of T=%s): **%s**.',
        ++$fig,
        $tps_of->($btu), $btu->{conns}, $lean_u->{tps}, $lean_u->{threads}, join('/', map { $_->{threads} } grep { $dbkey->($_) eq 'lean-1-uniform' } @db), $x->($tps_of->($btu), $lean_u->{tps}));
}
if ($bth && $b1_h) {
    push @md, sprintf('%d. **Hot pair over one transfer per transaction** (target 5x or more): best %.0f transfers/s through the service (c=%d) against %.0f for the module\'s SQL with B=1 (%d threads): **%s**.%s',
        ++$fig,
        $tps_of->($bth), $bth->{conns}, $b1_h->{tps}, $b1_h->{threads}, $x->($tps_of->($bth), $b1_h->{tps}),
        $dbbest{'lean-1-hot'} ? sprintf(' Against the lean procedure on the pair (%.0f): %s.', $dbbest{'lean-1-hot'}{tps}, $x->($tps_of->($bth), $dbbest{'lean-1-hot'}{tps})) : '');
}
{
    # how close the service comes to its own design's ceiling
    my @c;
    for my $p (qw(uniform hot)) {
        my $best = $p eq 'hot' ? $bth : $btu;
        for my $k (sort { $a->{batch} <=> $b->{batch} } grep { $_->{mode} eq 'batch' && $_->{batch} > 1 && $_->{pairs} eq $p } values %dbbest) {
            push @c, sprintf('%s B=%d %.0f/s (%d threads)%s', $p, $k->{batch}, $k->{tps}, $k->{threads},
                $best ? sprintf(', the service %s of it', $pct->($tps_of->($best), $k->{tps})) : '');
        }
    }
    push @md, '   The batched design\'s ceiling, the database alone with the module\'s SQL: ' . join('; ', @c) . '.' if @c;
}
if ($rate) {
    my $ach = $rate->{rps};
    push @md, sprintf('%d. **p99 at half of the peak transfer rate** (target under 10 ms): peak %.0f/s (transfer-uniform, c=%d); aimed at %d/s with %d connections (perf/wrk/transfer-rate.lua, a fixed schedule through wrk\'s delay()), got %.0f/s: p50 %s ms, **p99 %s ms**, p99.9 %s ms, errors %s, money check %s. wrk measures from the actual send, without coordinated-omission correction.',
        ++$fig,
        $rate->{peak_rps}, $rate->{peak_conns}, $rate->{target_rps}, $rate->{conns}, $ach,
        $ms->($rate->{p50_us}), $ms->($rate->{p99_us}), $ms->($rate->{p999_us}), $err->($rate), $rate->{check} // '?');
}
my @rr;
for my $s (grep { /^balance/ } @scen) {
    for my $c (sort { $a <=> $b } keys %{ $res{$s}{rbcs} || {} }) {
        my $r = $res{$s}{rbcs}{$c}; my $st = $res{$s}{static}{$c} or next;
        push @rr, sprintf('%s c=%d %s', $s, $c, $pct->($r->{rps}, $st->{rps}));
    }
}
push @md, ++$fig . '. **Cached balance reads vs the static twin** (same requests, same answer size, same run): ' . join('; ', @rr) . '.' if @rr;
if (%shm) {
    push @md, sprintf('%d. **Shared memory per cached account**: %s bytes (target: 256 or less). The zone mapping had %d kB resident before and %d kB after reading all %d accounts once (%d balance reads answered; sampled accounts not served by the zone afterwards: %d).',
        ++$fig,
        $shm{bytes_per_account}, $shm{before_kb}, $shm{after_kb}, $shm{accounts}, $shm{filled}, $shm{not_in_zone});
}
{
    # mariadbd's CPU time over each transfer run, divided by its transfers
    my @rows;
    for my $s (grep { /^transfer/ } @scen) {
        for my $c (sort { $a <=> $b } keys %{ $res{$s}{rbcs} || {} }) {
            my $r = $res{$s}{rbcs}{$c};
            my $n = $transfers_of->($r);
            push @rows, sprintf('| %s c=%d (service) | %.0f | %s | %s |', $s, $c, $tps_of->($r), $r->{db_cpu_s} // '-', $cpu_us->($r, $n));
        }
    }
    if ($rate) {
        push @rows, sprintf('| transfer-rate %d/s (service) | %.0f | %s | %s |', $rate->{target_rps}, $tps_of->($rate), $rate->{db_cpu_s} // '-', $cpu_us->($rate, $transfers_of->($rate)));
    }
    for my $k (sort keys %dbbest) {
        my $r = $dbbest{$k};
        push @rows, sprintf('| dbclient %s B=%d %s, %d threads (best) | %.0f | %s | %s |', $r->{mode}, $r->{batch}, $r->{pairs}, $r->{threads}, $r->{tps}, $r->{db_cpu_s} // '-', $cpu_us->($r, $r->{transfers}));
    }
    if (@rows) {
        push @md, ++$fig . '. **mariadbd CPU per transfer** during each transfer run (user + system time of mariadbd from `/proc/<pid>/stat` before and after, divided by the transfers recorded: 201 and 4xx outcomes; background work of InnoDB (purge, page flushing) counts where it falls):', '';
        push @md, '| run | transfers/s | mariadbd CPU (s) | per transfer (µs) |', '|---|---:|---:|---:|', @rows;
    }
}
push @md, "";

# ---- what limits throughput, as far as the counters tell
push @md, "## What limits throughput", "";
for my $k (sort keys %dbbest) {
    my $b = $dbbest{$k};
    my $why = $b->{cpu_busy} >= 80
        ? sprintf('the CPU: the machine was %d%% busy, mariadbd alone used %d%% of a core and the client %d%%', $b->{cpu_busy}, $b->{cpu_db}, $b->{client_cpu})
        : $b->{pairs} eq 'hot'
        ? sprintf('the row locks of the pair: every transaction holds both rows until its COMMIT is durable, so transactions go one at a time (CPU %d%% busy)', $b->{cpu_busy})
        : sprintf('latency, not CPU (%d%% busy)', $b->{cpu_busy});
    push @md, sprintf('- Database alone, %s B=%d %s: %.0f transfers/s at %d threads; limited by %s. %s fsyncs per COMMIT: %s.',
        $b->{mode}, $b->{batch}, $b->{pairs}, $b->{tps}, $b->{threads}, $why, $b->{fsyncs_per_commit},
        $b->{fsyncs_per_commit} < 0.9 ? 'InnoDB already shares one redo-log flush among concurrent commits, the disk flush is not what stops it'
                                      : 'about one flush per commit');
}
for my $s (qw(transfer-uniform transfer-hot)) {
    my ($r) = sort { $b->{rps} <=> $a->{rps} } values %{ $res{$s}{rbcs} || {} };
    next unless $r;
    my $per = ($r->{commits_s} // 0) > 0 ? $tps_of->($r) / $r->{commits_s} : 0;
    push @md, sprintf('- %s through the service, best %.0f/s at c=%d: machine %d%% busy (mariadbd %d%%, nginx %d%%, wrk %d%% of a core); %.2f transfers per COMMIT%s.',
        $s, $r->{rps}, $r->{conns}, $r->{cpu_busy}, $r->{cpu_db}, $r->{cpu_nginx}, $r->{wrk_cpu}, $per,
        $per > 1.05 ? ' (the module\'s batches put several transfers in one database transaction)' : ' (about one transaction per transfer)');
}
{
    my @b = grep { $_ } map { my $s = $_; map { $res{$s}{rbcs}{$_} } keys %{ $res{$s}{rbcs} || {} } } grep { /^balance/ } @scen;
    if (@b) {
        my ($n, $w) = (0, 0);
        $n += $_->{cpu_nginx}, $w += $_->{wrk_cpu} for @b;
        push @md, sprintf('- Balance reads: on average nginx used %.0f%% and wrk %.0f%% of a core: the load generator takes about as much CPU as the server, so reads (and their static twin alike) are bounded by the shared cores, not by the module.', $n / @b, $w / @b);
    }
}
push @md, "";

push @md, "## Money checks", "";
push @md, "After every scenario that writes (and each dbclient sweep, on the project's database): the total of all balances, the EXTERNAL account included, equals the total before it; no STANDARD account is below its floor (balance - held < -overdraft limit: for the benchmark's accounts, a negative available balance); and accounts 1..N together with the deposits' EXTERNAL account (at 0 until the first deposit; it only ever pays into accounts 1..N) hold exactly N x 1000.00. After hold, capture and card also: the sum of all held balances equals the sum of the pending holds (holds: ok).", "";
push @md, "| after | result | total before | total after | below their floor | accounts 1..N + EXTERNAL hold | EXTERNAL account | held / pending holds |";
push @md, "|---|---|---:|---:|---:|---:|---:|---|";
for my $r (@checks) {
    next unless exists $r->{check};
    my $what = $r->{what} // sprintf('%s c=%s%s', $r->{scenario}, $r->{conns}, ($r->{round} // 1) > 1 ? " round $r->{round}" : "");
    my $held = exists $r->{holds} ? "$r->{held_total} / $r->{pending_holds} ($r->{holds})" : '';
    push @md, "| $what | $r->{check} | $r->{total_before} | $r->{total_after} | $r->{negative} | $r->{sum_accounts} | " . ($r->{external} // '-') . " | $held |";
}
push @md, "";
if (@db) {
    my @bad = grep { ($_->{money} // '') ne 'ok' } @db;
    push @md, sprintf('Each dbclient run also checks its own database (the lean runs: `rbcs_baseline`): the sum of all balances before and after, no balance negative (on the project\'s schema: no STANDARD account below its floor): %d of %d runs ok%s.',
        @db - @bad, scalar @db, @bad ? ' (**failed**: ' . join(', ', map { "$_->{mode} B=$_->{batch} $_->{pairs} T=$_->{threads}" } @bad) . ')' : ''), "";
}

# ---- every command of the run, as it was run (each heads its raw file)
{
    (my $rawdir = $plotdir) =~ s{/plot$}{};
    my @cmds;
    for my $f (sort { (stat $a)[9] <=> (stat $b)[9] or $a cmp $b } glob("$rawdir/*.txt")) {
        open my $c, '<', $f or next;
        my $first = <$c> // '';
        close $c;
        push @cmds, $1 =~ s{\Q$meta{root}\E/}{}gr if $first =~ /^# (.*)$/;
    }
    if (@cmds) {
        push @md, "## Commands", "";
        my ($na) = $meta{settings} =~ /ACCOUNTS=(\d+)/;
        my ($np) = $meta{settings} =~ /PREFIX=(\S+)/;
        push @md, "From the repository root, `perf/run-all.sh` ran `conf/stack.sh run`, `make -C perf dbclient`, `perf/gen-accounts.sh $na $np`, `perf/gen-accounts.sh --baseline $na $np`, then these (each output, under the command, in raw/):";
        push @md, "", "```", @cmds, "```", "";
    }
}

push @md, "## How it was measured", "";
push @md, "- Shared memory: $meta{shm_detail}. The zone is a shared anonymous mapping of exactly the zone's size; a page counts once it has been touched, so (after - before) / N is the cost of one cached account including the slab allocator's rounding.";
push @md, "- Each wrk run: `wrk -t<THREADS> -c<connections> -d<DURATION> --latency -s perf/wrk/<scenario>.lua http://127.0.0.1:<PERF_PORT>` with ACCOUNTS, PREFIX, HOT_KEYS and a unique RUN_ID in the environment (BASE=/static for the static twin); the exact command heads each file in raw/.";
push @md, "- CPU: from /proc/stat and /proc/<pid>/stat over the run, in % of one core (the machine has " . ($meta{machine} =~ /^(\d+)/ ? $1 : '?') . " cores, so \"busy\" 100% means all of them); wrk's (and dbclient's) own CPU from bash's `time`.";
push @md, "- Commits/s and fsyncs/commit: `SHOW GLOBAL STATUS` deltas of `Com_commit` and `Innodb_data_fsyncs` over the run (a COMMIT inside the lean procedure counts too).";
push @md, "- Data: $meta{data}." if $meta{data};
push @md, "";

open my $o, '>', $outf or die "$outf: $!";
print $o join("\n", @md), "\n";
close $o;
PERL

DBCEIL=$(cat "$RAW/plot/db-uniform" 2>/dev/null || echo 0)
DBHOT=$(cat "$RAW/plot/db-hot" 2>/dev/null || echo 0)
if command -v gnuplot >/dev/null; then
    gnuplot -e "datadir='$RAW/plot'; outdir='$OUT'; scenarios='$SCENARIOS'; dbceil=$DBCEIL; dbhot=$DBHOT; title='$(nproc) cores shared by wrk, nginx, MariaDB, Redis; $ACCOUNTS accounts, $DURATION per point'" \
        perf/plot.gp 2> "$RAW/gnuplot.log" || { cat "$RAW/gnuplot.log"; plog "WARNING: gnuplot failed"; }
else
    plog "gnuplot is missing (apt-get install gnuplot-nox): no plots"
fi

plog "done in $((T_END - T_BEGIN)) s: $OUT/results.md, $OUT/throughput.png, $OUT/p99.png, raw outputs in $RAW"
[ "$STOP_STACK" = 1 ] || plog "the local stack keeps running: make stop stops it"
echo
cat "$OUT/results.md"
