#!/usr/bin/env bash
# perf/run-all.sh - the whole benchmark suite, one command.
#
#   perf/run-all.sh                        # 10k accounts, 10 s per run, 8/32/128/256 connections
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
#   DURATION 10s*    CONNECTIONS "8 32 128 256"*   THREADS 2 (wrk -t)
#   SCENARIOS "balance-uniform balance-hot transfer-uniform transfer-hot mix
#              hold capture deposit card"
#   HOT_KEYS 1       balance-hot's hot set
#   HOLD_EXPIRES_IN, CARD_AMOUNT, CARD_EXPIRES_IN, CARD_VOID_PCT,
#   CARD_PARTIAL_PCT, AMOUNT: passed to wrk when set (defaults and meaning:
#                    perf/wrk/common.lua)
#   DB_LEAN_THREADS "16 32 64"*   threads of the lean baseline (its best counts)
#   DB_BATCHES "1 16 64"   DB_THREADS "4 16 64"*   the module's SQL: batch sizes, threads
#   DB_DURATION 5*   seconds per dbclient run
#   RATE_CONNS 64    RATE_DURATION 20s (QUICK: DURATION)   the half-peak run
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
DEFAULT_CONNECTIONS="8 32 128 256"

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
RATE_CONNS="${RATE_CONNS:-64}"
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
DATA="$(sql "SELECT GROUP_CONCAT(CONCAT(s, ' ', mb, ' MB') SEPARATOR ', ') FROM (SELECT table_schema s, ROUND(SUM(data_length + index_length) / 1048576) mb FROM information_schema.tables WHERE table_schema IN ('rbcs', 'rbcs_baseline') GROUP BY table_schema) t") at the start (InnoDB's estimate), buffer pool $(sql "SELECT @@innodb_buffer_pool_size DIV 1048576") MB"
# every run adds its ledger to the service's database, the baseline's
# stays small: past the pool, transfers wait for page reads and the ratio
# to the baseline measures the disk (perf/README.md, "Buffer pool")
if [ "$(sql "SELECT SUM(data_length + index_length) > @@innodb_buffer_pool_size FROM information_schema.tables WHERE table_schema = 'rbcs'")" = 1 ]; then
    DATA="$DATA; **the service's ledger is larger than the buffer pool**: its transfers read pages from disk, the lean baseline's do not (start from a fresh ledger: make stop; rm -r var/run/mariadb)"
    plog "WARNING: the rbcs ledger is larger than the buffer pool; see perf/README.md, \"Buffer pool\""
fi
meta data "$DATA"

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
# the report says what the rendered configuration says, not what it ought to
meta twin "$(awk '$1 == "worker_processes" || $1 == "rbcs_mysql_writers" {
    sub(/;$/, "", $2); printf "%s%s %s", n++ ? ", " : "", $1, $2 }' "$TWIN/nginx.conf")"
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
perl perf/report.pl "$RUNS" "$META" "$RAW/plot" "$SCENARIOS" "$OUT/results.md"

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
