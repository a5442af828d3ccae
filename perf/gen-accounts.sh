#!/usr/bin/env bash
# perf/gen-accounts.sh [--baseline] N [PREFIX] - create N benchmark accounts
# directly in MariaDB (database rbcs of the local stack started by `make run`).
#
#   perf/gen-accounts.sh 10000              # P-000001 ... P-010000
#   perf/gen-accounts.sh 1000000 Q          # Q-000001 ... Q-1000000
#   perf/gen-accounts.sh --baseline 10000   # the same accounts in rbcs_baseline
#
# Every account is opened as the service opens it (conf/schema.sql, the
# module's write path): currency USD (scale 2), balance = initial balance =
# BALANCE (1000.00), version 1, one OPENING entry with version 1 and
# amount = balance_after = BALANCE, created_at = updated_at = UTC_TIMESTAMP(3).
# The rows come from MariaDB's SEQUENCE engine (seq_1_to_N) in two set-based
# INSERT ... SELECT statements inside one transaction, so N = 1M takes
# seconds, not minutes.
#
# Account numbers: PREFIX-<at least 6 digits> (P-000001, P-1000000), the same
# format perf/wrk/common.lua and perf/dbclient.c use.
#
# Idempotent: INSERT IGNORE on the primary keys, so running it again (or
# with a larger N) only adds the accounts that are missing; existing
# accounts keep their current balance (transfers move money between them
# but never create or destroy it, so the total over 1..N stays N*BALANCE).
#
# --baseline: the write baseline's own database instead (perf/baseline.sql,
# build/perf/dbclient --mode lean): creates database rbcs_baseline, applies
# perf/baseline.sql (its tables and the procedure lean_transfer), then the
# same N accounts with the same balance there (no scale column, no history
# entries: that schema has neither).  Its client logs in as its own user
# rbcs_baseline/rbcs_baseline, which may call lean_transfer (the procedure
# runs with its definer's rights, root's) and read the accounts (the money
# check), nothing else; the service's user rbcs gets nothing there.
#
# Environment: BALANCE (1000.00), CURRENCY (USD), SCALE (2).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BASELINE_DB=""
if [ "${1:-}" = --baseline ]; then
    BASELINE_DB=rbcs_baseline
    shift
fi
N="${1:-}"
[ -n "$N" ] || { echo "usage: $0 [--baseline] N [PREFIX]   (N: 1 .. 10000000)" >&2; exit 2; }
[[ "$N" =~ ^[1-9][0-9]{0,7}$ ]] || { echo "N must be an integer 1 .. 10000000" >&2; exit 2; }
[ -n "${2:-}" ] && PREFIX="$2"

# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"

CURRENCY="${CURRENCY:-USD}"
SCALE="${SCALE:-2}"
[[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,50}$ ]] || pdie "bad PREFIX '$PREFIX'"
[[ "$BALANCE" =~ ^(0|[1-9][0-9]*)(\.[0-9]+)?$ ]] || pdie "bad BALANCE '$BALANCE'"
[[ "$CURRENCY" =~ ^[A-Z]{3,12}$ ]] || pdie "bad CURRENCY '$CURRENCY'"
[ -S "$ROOT/var/run/mariadb/mariadb.sock" ] ||
    pdie "MariaDB of the local stack is not running (make run)"

ACC="$(account_sql_expr seq)"
# the accounts 1..N present and the sum of their balances
PRESENT="COUNT(*), COALESCE(SUM(a.balance), 0) FROM seq_1_to_$N s JOIN accounts a
       ON a.account_number = $(account_sql_expr s.seq)"
start=$(date +%s.%N)
elapsed() { awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}'; }

if [ -n "$BASELINE_DB" ]; then
    bsql() { mariadb --defaults-file="$MY_CNF" -N -B "$@"; }
    bsql -e "CREATE DATABASE IF NOT EXISTS $BASELINE_DB"
    bsql "$BASELINE_DB" < "$ROOT/perf/baseline.sql" || pdie "applying perf/baseline.sql failed"
    # after the procedure is made again: dropping it dropped its grant
    for host in 127.0.0.1 localhost; do
        bsql "$BASELINE_DB" -e "
CREATE USER IF NOT EXISTS 'rbcs_baseline'@'$host' IDENTIFIED BY 'rbcs_baseline';
GRANT EXECUTE ON PROCEDURE lean_transfer TO 'rbcs_baseline'@'$host';
GRANT SELECT ON accounts TO 'rbcs_baseline'@'$host'" ||
            pdie "making the user rbcs_baseline failed"
    done
    out="$(bsql "$BASELINE_DB" -e "
SET @now = UTC_TIMESTAMP(3);
INSERT IGNORE INTO accounts (account_number, currency, balance,
       initial_balance, version, created_at, updated_at)
SELECT $ACC, '$CURRENCY', $BALANCE, $BALANCE, 1, @now, @now
  FROM seq_1_to_$N;
SET @accounts = ROW_COUNT();
SELECT @accounts, $PRESENT;
")"
    read -r added present total <<<"$out"
    echo "baseline ($BASELINE_DB, perf/baseline.sql) accounts $(account_name 1) .. $(account_name "$N"): $added created, $present present, total balance $total ($(elapsed) s)"
    [ "$present" = "$N" ] || pdie "expected $N accounts in $BASELINE_DB, found $present"
    exit 0
fi

out="$(sql "
SET SESSION unique_checks = 0;
SET @now = UTC_TIMESTAMP(3);
START TRANSACTION;
INSERT IGNORE INTO accounts (account_number, currency, scale, balance,
       initial_balance, version, created_at, updated_at)
SELECT $ACC, '$CURRENCY', $SCALE, $BALANCE, $BALANCE, 1, @now, @now
  FROM seq_1_to_$N;
SET @accounts = ROW_COUNT();
INSERT IGNORE INTO entries (account_number, version, type, transaction_id,
       counterparty, amount, balance_after, created_at)
SELECT $ACC, 1, 'OPENING', NULL, NULL, $BALANCE, $BALANCE, @now
  FROM seq_1_to_$N;
SET @entries = ROW_COUNT();
COMMIT;
SELECT @accounts, @entries, $PRESENT;
")"

read -r added entries present total <<<"$out"
echo "accounts $(account_name 1) .. $(account_name "$N"): $added created, $entries opening entries added, $present present, total balance $total ($(elapsed) s)"
[ "$present" = "$N" ] || pdie "expected $N accounts, found $present"
