#!/usr/bin/env bash
# Cached balance reads against the HTTP ceiling, side by side in one run.
#
# Starts the local stack (conf/stack.sh run: MariaDB, Redis, nginx), then a
# second nginx of its own on PERF_PORT with the same module and
# configuration plus one static location that answers, with `return 200`,
# a body and headers of the same size as a balance read.  wrk measures
# both in alternating rounds; the script prints each round and the ratio of
# the medians.
#
#   perf/bench-balance.sh            # 3 rounds of 10 s, 2 threads, 64 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 perf/bench-balance.sh
#
# Loopback only; it stops its own nginx at the end (make stop stops the rest).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PERF_PORT="${PERF_PORT:-18180}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
WORKERS="${WORKERS:-2}"
OUT="${OUT:-$ROOT/perf/results}"

conf/stack.sh run >/dev/null
MYSQL_PORT="${RBCS_MYSQL_PORT:-3306}"
REDIS_PORT="${RBCS_REDIS_PORT:-6379}"
HTTP_PORT="${RBCS_HTTP_PORT:-8080}"

P="$ROOT/var/perf/nginx"
mkdir -p "$P" "$OUT"
chmod 755 "$ROOT/var" "$ROOT/var/perf" "$P"

ACC="PERF-READ-1"
curl -s -o /dev/null -XPOST -H 'Content-Type: application/json' \
     "http://127.0.0.1:$HTTP_PORT/accounts" \
     -d "{\"accountNumber\":\"$ACC\",\"currency\":\"USD\",\"initialBalance\":\"100.00\"}"

# the static twin: same body, same extra header
BODY="$(curl -s "http://127.0.0.1:$HTTP_PORT/accounts/$ACC/balance?consistency=strong")"
case "$BODY" in *'"version"'*) ;; *) echo "no balance for $ACC: $BODY" >&2; exit 1;; esac
ESCAPED="${BODY//\"/\\\"}"
STATIC="location = /static { default_type application/json; add_header X-RBCS-Cache zone; return 200 \"$ESCAPED\"; }"

USER_DIRECTIVE=""
[ "$(id -u)" = 0 ] && USER_DIRECTIVE="user nobody nogroup;"

perl -e '
    my ($in, $out, @kv) = @ARGV;
    my %v = map { /^([^=]+)=(.*)\z/s ? ($1, $2) : die "bad $_\n" } @kv;
    open my $fh, "<", $in or die "$in: $!\n";
    local $/; my $t = <$fh>; close $fh;
    $t =~ s/\@([A-Z_]+)\@/exists $v{$1} ? $v{$1} : die "no value for \@$1\@\n"/ge;
    $t =~ s/^(\s*access_log)\s+[^;]+;/$1 off;/m;
    open $fh, ">", $out or die "$out: $!\n"; print $fh $t; close $fh;
' conf/nginx.local.conf.in "$P/nginx.conf" \
    "MODULE=$ROOT/build/ngx_rbcs_module.so" "PREFIX=$P" \
    "USER_DIRECTIVE=$USER_DIRECTIVE" "WORKERS=$WORKERS" "HTTP_PORT=$PERF_PORT" \
    "MYSQL_PORT=$MYSQL_PORT" "MYSQL_DATABASE=rbcs" "REDIS_PORT=$REDIS_PORT" \
    "REDIS_PREFIX=rbcs:" "HTTP_CONF=" "SERVER_CONF=$STATIC"

[ -f "$P/nginx.pid" ] && /usr/sbin/nginx -p "$P/" -c "$P/nginx.conf" -s quit 2>/dev/null && sleep 1 || true
/usr/sbin/nginx -p "$P/" -c "$P/nginx.conf" -e "$P/error.log"
trap '/usr/sbin/nginx -p "$P/" -c "$P/nginx.conf" -s quit 2>/dev/null || true' EXIT
sleep 0.5

READ_URL="http://127.0.0.1:$PERF_PORT/accounts/$ACC/balance"
STATIC_URL="http://127.0.0.1:$PERF_PORT/static"

# the read must come from the zone, and both answers must be the same size
curl -s -o /dev/null "$READ_URL"
TIER="$(curl -s -D - -o /dev/null "$READ_URL" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-rbcs-cache"{print $2}')"
[ "$TIER" = zone ] || { echo "balance read not served by the zone (X-RBCS-Cache: $TIER)" >&2; exit 1; }
SR="$(curl -s -o /dev/null -w '%{size_download}/%{size_header}' "$READ_URL")"
SS="$(curl -s -o /dev/null -w '%{size_download}/%{size_header}' "$STATIC_URL")"
echo "response sizes (body/headers): balance $SR, static $SS"

rps() {   # url -> requests/s
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1" \
        | tee -a "$OUT/bench-balance.wrk.txt" \
        | awk '/^Requests\/sec/ {print $2}'
}

: > "$OUT/bench-balance.wrk.txt"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, nginx $WORKERS workers, $ROUNDS rounds"
printf '%-6s %14s %14s %8s\n' round static_rps balance_rps ratio
declare -a S B
for i in $(seq 1 "$ROUNDS"); do
    s="$(rps "$STATIC_URL")"
    b="$(rps "$READ_URL")"
    S+=("$s"); B+=("$b")
    printf '%-6s %14s %14s %7.1f%%\n' "$i" "$s" "$b" "$(echo "$b $s" | awk '{print 100*$1/$2}')"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms="$(median "${S[@]}")"
mb="$(median "${B[@]}")"
ratio="$(echo "$mb $ms" | awk '{printf "%.1f", 100*$1/$2}')"
printf '%-6s %14s %14s %7s%%\n' median "$ms" "$mb" "$ratio"

{
    echo "| run | static return 200 (req/s) | cached balance read (req/s) | ratio |"
    echo "|---|---|---|---|"
    for i in $(seq 0 $((ROUNDS - 1))); do
        echo "| $((i + 1)) | ${S[$i]} | ${B[$i]} | $(echo "${B[$i]} ${S[$i]}" | awk '{printf "%.1f%%", 100*$1/$2}') |"
    done
    echo "| median | $ms | $mb | $ratio% |"
    echo
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on loopback, nginx $WORKERS workers, $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
} > "$OUT/bench-balance.md"
echo "written: $OUT/bench-balance.md"
