# perf/lib.sh - shell helpers shared by the benchmark scripts (sourced, bash).
#
#   . "$ROOT/perf/lib.sh"
#
# Defaults (environment overrides them):
#   PERF_PORT   18190   port of the benchmark's own nginx (the "twin")
#   PREFIX      P       account number prefix (accounts are P-000001 ...)
#   ACCOUNTS    10000   number of generated accounts
#   BALANCE     1000.00 initial balance of every generated account
# The local stack's ports follow conf/stack.sh: RBCS_HTTP_PORT (8080),
# RBCS_MYSQL_PORT (3306), RBCS_REDIS_PORT (6379).
#
# perf/check-jmx.pl reads the PERF_PORT default from this file: the JMeter
# plan's default port must be the same.

PERF_ROOT="${PERF_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

PERF_PORT="${PERF_PORT:-18190}"
PREFIX="${PREFIX:-P}"
ACCOUNTS="${ACCOUNTS:-10000}"
BALANCE="${BALANCE:-1000.00}"
HTTP_PORT="${RBCS_HTTP_PORT:-8080}"
MYSQL_PORT="${RBCS_MYSQL_PORT:-3306}"
REDIS_PORT="${RBCS_REDIS_PORT:-6379}"

MY_CNF="$PERF_ROOT/var/run/my.cnf"
TWIN="$PERF_ROOT/var/perf/twin"          # nginx prefix of the twin
NGINX_BIN="${RBCS_NGINX:-/usr/sbin/nginx}"

plog()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
pdie()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# bench_check VAR...: the checks of perf/bench-*.sh: each VAR a positive
# number, PREFIX and LARGE_PREFIX different, the tools installed
bench_check() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || pdie "$v must be a positive number"
    done
    [ "$PREFIX" != "$LARGE_PREFIX" ] || pdie "PREFIX and LARGE_PREFIX must differ"
    for v in wrk curl mariadb perl; do
        command -v "$v" >/dev/null || pdie "$v is missing (make run installs it)"
    done
}

secs_of() {   # 10s, 2m, 500ms, 10 -> whole seconds (at least 1)
    perl -e '$_ = shift; /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/ or die "bad duration $_\n";
             my %m = (ms => 0.001, s => 1, m => 60, h => 3600);
             my $s = $1 * $m{$2 // "s"}; print $s < 1 ? 1 : int($s + 0.999), "\n"' "$1"
}

# sql 'STATEMENTS': run as root over the local stack's socket, batch output
# without column names.
sql() {
    mariadb --defaults-file="$MY_CNF" -N -B rbcs -e "$1"
}

# redo_log_check: the local stack's redo log at 1G or more (perf/README.md,
# "Redo log"): a server started before conf/my.cnf.in asked for 1G is
# resized online (MariaDB 10.11 allows it).  Prints the size in MB.
redo_log_check() {
    local mb
    mb=$(sql "SELECT @@innodb_log_file_size DIV 1048576")
    if [ "$mb" -lt 1024 ]; then
        plog "innodb_log_file_size is ${mb}M: resizing it to 1G (perf/README.md, \"Redo log\")" >&2
        sql "SET GLOBAL innodb_log_file_size = 1073741824" ||
            pdie "could not resize the redo log"
        mb=$(sql "SELECT @@innodb_log_file_size DIV 1048576")
    fi
    echo "$mb"
}

# account_sql_expr SEQ_COLUMN: the SQL expression of the account number for
# sequence number SEQ_COLUMN: PREFIX-000001 (at least 6 digits), exactly
# what perf/wrk/common.lua's string.format("%s-%06d") and perf/dbclient.c
# produce.
account_sql_expr() {
    printf "CONCAT('%s-', LPAD(%s, GREATEST(6, LENGTH(%s)), '0'))" "$PREFIX" "$1" "$1"
}

account_name() {   # i -> PREFIX-00000i
    printf '%s-%06d' "$PREFIX" "$1"
}

# ------------------------------------------------------------- the twin --

# twin_render STATIC_CONF ZONE_SIZE: nginx.conf of the twin from the same
# template as make run (conf/nginx.local.conf.in), with access_log off, the
# balance zone resized to ZONE_SIZE (e.g. 16m) and STATIC_CONF added to the
# server block.
twin_render() {
    local static=$1 zone=$2 user=""
    [ "$(id -u)" = 0 ] && user="user nobody nogroup;"
    mkdir -p "$TWIN"
    chmod 755 "$PERF_ROOT/var" "$PERF_ROOT/var/perf" "$TWIN"
    "$PERF_ROOT/conf/stack.sh" render "$PERF_ROOT/conf/nginx.local.conf.in" \
        "$TWIN/nginx.conf" \
        "MODULE=$PERF_ROOT/build/ngx_rbcs_module.so" "PREFIX=$TWIN" \
        "USER_DIRECTIVE=$user" "WORKERS=${WORKERS:-1}" "HTTP_PORT=$PERF_PORT" \
        "MYSQL_PORT=$MYSQL_PORT" "MYSQL_DATABASE=rbcs" "REDIS_PORT=$REDIS_PORT" \
        "REDIS_PREFIX=rbcs:" "HTTP_CONF=" "SERVER_CONF=$static" \
        "REDIS_PASSWORD_FILE=$PERF_ROOT/var/run/secrets/redis.password" \
        "REDIS_HMAC_KEY_FILE=$PERF_ROOT/var/run/secrets/redis.hmac-key" \
        || return 1
    perl -0pi -e '
        BEGIN { $zone = shift }
        s/^\s*#.*\n//mg;    # comments
        s/^(\s*access_log)\s+[^;]+;/$1 off;/m or die "no access_log line\n";
        s/(rbcs_cache_zone\s+zone=[A-Za-z0-9_]+:)\S+/$1$zone/
            or die "no rbcs_cache_zone line\n";
    ' "$zone" "$TWIN/nginx.conf"
}

# nginx_pids PIDFILE: the nginx master of PIDFILE and its workers, on one
# line (fails when no nginx runs under that pid)
nginx_pids() {
    local m
    m=$(tr -dc '0-9' 2>/dev/null < "$1") && [ -n "$m" ] || return 1
    [ "$(cat "/proc/$m/comm" 2>/dev/null)" = nginx ] || return 1
    echo "$m" $(cat "/proc/$m/task/$m/children" 2>/dev/null)
}

twin_pids() { nginx_pids "$TWIN/nginx.pid"; }

twin_stop() {
    local pid i
    pid=$(twin_pids) || { rm -f "$TWIN/nginx.pid"; return 0; }
    pid=${pid%% *}
    kill -QUIT "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [ -e "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -e "/proc/$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$TWIN/nginx.pid"
}

twin_start() {
    twin_stop
    "$NGINX_BIN" -p "$TWIN/" -c "$TWIN/nginx.conf" -e "$TWIN/error.log" ||
        pdie "the twin nginx did not start, see $TWIN/error.log"
    local i code=000
    for ((i = 0; i < 100; i++)); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PERF_PORT/healthz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    pdie "the twin nginx does not answer on 127.0.0.1:$PERF_PORT (last: $code)"
}

# twin_zone_pages ZONE_KB: print "<resident kB of the zone, all processes>
# <rss kB per process...>".  The zone is the shared anonymous mapping
# (/dev/zero (deleted)) of exactly ZONE_KB kB in every nginx process of the
# twin.  Pss of a shared page is split among the processes that map it, so
# the sum of Pss over the master and the workers is the resident size of
# the mapping, each page counted once.
twin_zone_pages() {
    local kb=$1 pids
    pids=$(twin_pids)
    perl -e '
        my ($kb, @pids) = @ARGV;
        my ($pss, @rss, $found) = (0);
        for my $pid (@pids) {
            open my $fh, "<", "/proc/$pid/smaps" or die "/proc/$pid/smaps: $!\n";
            my ($in, $n) = (0, 0);
            my $cur_dev = 0;
            while (<$fh>) {
                if (/^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/) {
                    $cur_dev = ($1 =~ m{^/dev/zero|^/SYSV|^\[anon:}) ? 1 : 0;
                    $in = 0;
                } elsif (/^Size:\s+(\d+) kB/) {
                    $in = ($cur_dev && $1 == $kb) ? 1 : 0;
                    $n++ if $in;
                } elsif ($in && /^Rss:\s+(\d+) kB/) {
                    push @rss, "$pid:$1";
                } elsif ($in && /^Pss:\s+(\d+) kB/) {
                    $pss += $1;
                }
            }
            die "pid $pid: expected one ${kb} kB shared mapping, found $n\n" if $n != 1;
        }
        print join(" ", $pss, @rss), "\n";
    ' "$kb" $pids
}

# -------------------------------------------------------------- samples --

# cpu_sample: "<total jiffies> <idle jiffies> <twin nginx> <mariadbd> <redis>
# <stack nginx>" (process figures: utime+stime in jiffies).
cpu_sample() {
    local twin my_pid redis_pid stack_pids
    twin=$(twin_pids 2>/dev/null)
    my_pid=$(tr -dc '0-9' < "$PERF_ROOT/var/run/mariadb/mariadbd.pid" 2>/dev/null || true)
    redis_pid=$(tr -dc '0-9' < "$PERF_ROOT/var/run/redis/redis.pid" 2>/dev/null || true)
    stack_pids=$(nginx_pids "$PERF_ROOT/var/run/nginx/nginx.pid" || true)
    perl -e '
        my @groups = map { [ grep { /^\d+$/ } split /\s+/ ] } @ARGV;
        open my $fh, "<", "/proc/stat" or die; my $l = <$fh>; close $fh;
        my (undef, @f) = split /\s+/, $l;
        my $total = 0; $total += $_ for @f[0..7];
        my $idle = $f[3] + $f[4];
        my @out = ($total, $idle);
        for my $g (@groups) {
            my $s = 0;
            for my $pid (@$g) {
                open my $ph, "<", "/proc/$pid/stat" or next;
                my $st = <$ph>; close $ph;
                $st =~ s/^.*\)\s+//;
                my @x = split /\s+/, $st;
                $s += $x[11] + $x[12];    # utime, stime (fields 14, 15)
            }
            push @out, $s;
        }
        print "@out\n";
    ' "$twin" "$my_pid" "$redis_pid" "$stack_pids"
}

# cpu_kv "SAMPLE_BEFORE" "SAMPLE_AFTER": key=value pairs: cpu_busy (% of the
# whole machine), then each group in % of one core: cpu_nginx (the twin),
# cpu_db (mariadbd), cpu_redis, cpu_stack (the make-run nginx), cpu_other
# (the rest of the busy time: wrk, dbclient, the kernel's softirqs ...).
cpu_kv() {
    perl -e '
        my @a = split " ", $ARGV[0]; my @b = split " ", $ARGV[1];
        my $cores = $ARGV[2];
        my $dt = $b[0] - $a[0]; $dt = 1 if $dt <= 0;
        my $busy = 100 * (1 - ($b[1] - $a[1]) / $dt);
        my @p = map { 100 * ($b[$_ + 2] - $a[$_ + 2]) * $cores / $dt } 0..3;
        my $other = $busy * $cores - $p[0] - $p[1] - $p[2] - $p[3];
        $other = 0 if $other < 0;
        printf "cpu_busy=%.0f cpu_nginx=%.0f cpu_db=%.0f cpu_redis=%.0f cpu_stack=%.0f cpu_other=%.0f\n",
            $busy, @p, $other;
    ' "$1" "$2" "$(nproc)"
}

# db_cpu_s "SAMPLE_BEFORE" "SAMPLE_AFTER": mariadbd's CPU time (user +
# system, from /proc/<pid>/stat) between two cpu_sample's, in seconds
db_cpu_s() {
    perl -e 'my @a = split " ", $ARGV[0]; my @b = split " ", $ARGV[1];
             printf "%.3f\n", ($b[3] - $a[3]) / $ARGV[2]' "$1" "$2" "$(getconf CLK_TCK)"
}

# db_status: "<Com_commit> <Innodb_data_fsyncs> <Innodb_os_log_fsyncs>"
db_status() {
    sql "SHOW GLOBAL STATUS WHERE Variable_name IN
         ('Com_commit','Innodb_data_fsyncs','Innodb_os_log_fsyncs')" |
        awk '{v[$1]=$2} END {print v["Com_commit"]+0, v["Innodb_data_fsyncs"]+0, v["Innodb_os_log_fsyncs"]+0}'
}

# db_kv "BEFORE" "AFTER" SECONDS: commits_s, data_fsyncs_s, log_fsyncs_s,
# fsyncs_per_commit (data fsyncs per COMMIT statement)
db_kv() {
    perl -e '
        my @a = split " ", $ARGV[0]; my @b = split " ", $ARGV[1]; my $s = $ARGV[2] || 1;
        my ($c, $f, $l) = map { $b[$_] - $a[$_] } 0..2;
        printf "commits_s=%.0f data_fsyncs_s=%.0f log_fsyncs_s=%.0f fsyncs_per_commit=%.2f\n",
            $c / $s, $f / $s, $l / $s, $c ? $f / $c : 0;
    ' "$1" "$2" "$3"
}

# external_account: the EXTERNAL account of the deposit scenario,
# PREFIX-EXT (perf/wrk/common.lua names it the same); perf/run-all.sh opens
# it.  It opens at 0 and only ever pays into accounts 1..ACCOUNTS.
external_account() {
    printf '%s-EXT' "$PREFIX"
}

# balance_totals: "<sum of all balances> <accounts below their floor> <sum
# over the generated accounts 1..ACCOUNTS and PREFIX-EXT>".  Below the
# floor: a STANDARD account whose available balance (balance - held) is
# below minus its overdraft limit (conf/schema.sql's accounts_within_limit;
# with no limit and no hold: a negative balance); EXTERNAL accounts have no
# floor (PREFIX-EXT goes below zero with every deposit).  Deposits move
# money from PREFIX-EXT into accounts 1..ACCOUNTS, so the two together still
# hold exactly ACCOUNTS x BALANCE (without deposits PREFIX-EXT is 0 or
# absent: the sum over 1..ACCOUNTS, as before deposits existed).
balance_totals() {
    sql "SELECT (SELECT SUM(balance) FROM accounts),
                (SELECT COUNT(*) FROM accounts WHERE kind = 'STANDARD'
                   AND balance - held_balance < -(overdraft_limit + overdraft_excess)),
                (SELECT COALESCE(SUM(a.balance), 0) FROM seq_1_to_${ACCOUNTS} s
                   JOIN accounts a ON a.account_number = $(account_sql_expr s.seq))
                + (SELECT COALESCE(SUM(balance), 0) FROM accounts
                   WHERE account_number = '$(external_account)')"
}

# external_balance: PREFIX-EXT's balance (0 when it does not exist)
external_balance() {
    sql "SELECT COALESCE((SELECT balance FROM accounts
                          WHERE account_number = '$(external_account)'), 0)"
}

# hold_totals: "<sum of every account's held balance> <sum of the pending
# holds' amounts> <pending holds>", one consistent read: the first two are
# equal whenever every hold's creation and resolution changed the source's
# held balance in the same database transaction as the holds row.
hold_totals() {
    sql "SELECT (SELECT COALESCE(SUM(held_balance), 0) FROM accounts),
                (SELECT COALESCE(SUM(amount), 0) FROM holds),
                (SELECT COUNT(*) FROM holds)"
}
