#!/usr/bin/env bash
# perf/bench-balance.sh - cached balance reads against the HTTP ceiling
# (nginx `return 200` of a balance read's body, same headers), side by
# side in one run, for three read patterns:
#
#   uniform-small  GET /accounts/P-<random 1..SMALL>/balance   (10k accounts)
#   uniform-large  GET /accounts/M-<random 1..LARGE>/balance   (1M accounts)
#   hot            GET /accounts/P-000001/balance              (one account)
#
#   perf/bench-balance.sh                         # 3 rounds of 10 s, 64 connections
#   QUICK=1 perf/bench-balance.sh                 # 1 round of 3 s, LARGE 100000
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 perf/bench-balance.sh
#
# Loopback only, every run bounded by a timeout: the local stack and both
# account sets (perf/gen-accounts.sh, as perf/bench-accounts.sh); the twin
# with a cache zone sized for every account at 256 bytes and a static
# /static/accounts/ answering a real read's body; every account read once
# (perf/wrk/fill.lua: no eviction, the zone is sized for them); then, for
# each pattern, ROUNDS times, the static twin and the service, with the
# tiers that answered from /metrics; then cross-pod visibility (VIS_N
# transfers on the twin, their source read on the make-run nginx, another
# pod of the same MariaDB and Redis, until the new version shows).  Prints
# every run and the ratios; writes OUT/bench-balance.md (the wrk outputs
# under OUT/raw-balance/).
#
# Targets (the read path's issue): uniform-small >= 0.90, uniform-large
# >= 0.85, hot >= 0.95 of the static twin; cross-pod visibility under
# 10 ms.  The twin is stopped at the end;
# the local stack keeps running (make stop).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"

SMALL="${SMALL:-10000}"
SMALL_PREFIX="$PREFIX"
LARGE_PREFIX="${LARGE_PREFIX:-M}"
if [ "${QUICK:-0}" = 1 ]; then
    LARGE="${LARGE:-100000}"
    ROUNDS="${ROUNDS:-1}"
    DURATION="${DURATION:-3s}"
else
    LARGE="${LARGE:-1000000}"
    ROUNDS="${ROUNDS:-3}"
    DURATION="${DURATION:-10s}"
fi
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
OUT="${OUT:-$ROOT/perf/results}"
RAW="$OUT/raw-balance"
export THREADS   # perf/wrk/fill.lua reads it

bench_check SMALL LARGE ROUNDS CONNECTIONS THREADS

DUR_S=$(secs_of "$DURATION")
RUN="b$(date +%m%d%H%M%S)"

mkdir -p "$RAW"
rm -f "$RAW"/*.txt

plog "local stack (conf/stack.sh run)"
conf/stack.sh run > "$RAW/stack.log" 2>&1 || pdie "conf/stack.sh run failed, see $RAW/stack.log"

plog "accounts: $SMALL of $SMALL_PREFIX, $LARGE of $LARGE_PREFIX"
perf/gen-accounts.sh "$SMALL" "$SMALL_PREFIX" > "$RAW/gen.log" 2>&1 ||
    pdie "perf/gen-accounts.sh failed, see $RAW/gen.log"
perf/gen-accounts.sh "$LARGE" "$LARGE_PREFIX" >> "$RAW/gen.log" 2>&1 ||
    pdie "perf/gen-accounts.sh failed, see $RAW/gen.log"

# a real read's body for the static twin
A1=$(PREFIX="$SMALL_PREFIX" account_name 1)
BODY=$(curl -s -m 5 "http://127.0.0.1:$HTTP_PORT/accounts/$A1/balance?consistency=strong")
case "$BODY" in *'"version"'*) ;; *) pdie "no balance for $A1: $BODY";; esac
case "$BODY" in *'$'*) pdie "the answer contains a \$: $BODY";; esac
ESC=${BODY//\\/\\\\}
ESC=${ESC//\"/\\\"}
STATIC="location ^~ /static/accounts/ { default_type application/json; add_header X-RBCS-Cache zone; return 200 \"$ESC\"; }"

ZONE_MB=$(( ((SMALL + LARGE) * 256 + 1048575) / 1048576 + 8 ))
[ "$ZONE_MB" -lt 16 ] && ZONE_MB=16
plog "twin nginx on 127.0.0.1:$PERF_PORT (cache zone ${ZONE_MB}m)"
twin_render "$STATIC" "${ZONE_MB}m"
twin_start
URL="http://127.0.0.1:$PERF_PORT"
trap 'twin_stop' EXIT

fill() {   # PREFIX N: read accounts 1..N once
    local pfx=$1 n=$2 log="$RAW/fill-$1.txt" pid i limit
    limit=$(( n / 500 + 60 ))
    PREFIX="$pfx" ACCOUNTS="$n" RUN_ID="$RUN-f" \
        wrk -t"$THREADS" -c32 -d"${limit}s" -s perf/wrk/fill.lua "$URL" > "$log" 2>&1 &
    pid=$!
    for ((i = 0; i < limit * 10; i++)); do
        [ "$(grep -c '^fill-done' "$log" || true)" -ge "$THREADS" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" || true
    grep '^fill-done' "$log" | awk '{s += $4} END {print s + 0}'
}

plog "filling the zone: $SMALL + $LARGE accounts"
t0=$(date +%s)
F1=$(fill "$SMALL_PREFIX" "$SMALL")
F2=$(fill "$LARGE_PREFIX" "$LARGE")
plog "  read $F1 + $F2 accounts once in $(( $(date +%s) - t0 )) s"

tiers() {   # zone redis database
    curl -s -m 5 "$URL/metrics" | awk '
        $1 == "rbcs_cache_hits_total{tier=\"zone\"}" {z = $2}
        $1 == "rbcs_cache_hits_total{tier=\"redis\"}" {r = $2}
        $1 == "rbcs_database_balance_reads_total" {d = $2}
        END {print z + 0, r + 0, d + 0}'
}

run_wrk() {   # NAME BASE PREFIX ACCOUNTS HOT -> prints rps
    local name=$1 base=$2 pfx=$3 n=$4 hot=$5 script out
    if [ "$hot" = 1 ]; then script=perf/wrk/balance-hot.lua; else script=perf/wrk/balance-uniform.lua; fi
    out="$RAW/$name.txt"
    echo "# BASE=$base PREFIX=$pfx ACCOUNTS=$n HOT_KEYS=1 wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s $script $URL" > "$out"
    BASE="$base" PREFIX="$pfx" ACCOUNTS="$n" HOT_KEYS=1 RUN_ID="$RUN" \
        timeout --signal=INT $((DUR_S + 30)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$script" "$URL" >> "$out" 2>&1 || true
    perl -ne 'print "$1\n" if /^RBCS-STATS .*\brps=([\d.]+)/' "$out" | tail -1
}

ROWS="$RAW/runs.txt"
: > "$ROWS"
for pattern in uniform-small uniform-large hot; do
    case $pattern in
        uniform-small) pfx=$SMALL_PREFIX n=$SMALL hot=0;;
        uniform-large) pfx=$LARGE_PREFIX n=$LARGE hot=0;;
        hot)           pfx=$SMALL_PREFIX n=$SMALL hot=1;;
    esac
    for ((r = 1; r <= ROUNDS; r++)); do
        s=$(run_wrk "$pattern-static-r$r" /static "$pfx" "$n" "$hot")
        read -r z0 r0 d0 <<<"$(tiers)"
        m=$(run_wrk "$pattern-rbcs-r$r" "" "$pfx" "$n" "$hot")
        read -r z1 r1 d1 <<<"$(tiers)"
        echo "$pattern $r ${s:-0} ${m:-0} $((z1 - z0)) $((r1 - r0)) $((d1 - d0))" >> "$ROWS"
        plog "$pattern round $r: static ${s:-?} req/s, service ${m:-?} req/s (zone $((z1 - z0)), redis $((r1 - r0)), database $((d1 - d0)))"
    done
done

# Cross-pod visibility, healthy: a transfer on the twin, then reads of its
# source on the make-run nginx (another pod: same MariaDB, same Redis) on
# one kept-alive connection until the new version shows; both read once
# before, so the other pod answers from its zone.
VIS_N="${VIS_N:-50}"
plog "cross-pod visibility: $VIS_N transfers on the twin, read on 127.0.0.1:$HTTP_PORT"
perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
    my ($twin, $other, $pfx, $n, $run, $out) = @ARGV;
    my $conn = sub {
        IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $_[0], Proto => "tcp")
            or die "connect $_[0]: $!\n" };
    my %c = (t => $conn->($twin), o => $conn->($other));
    my $req = sub {
        my ($k, $m, $path, $body) = @_;
        my $s = $c{$k};
        my $h = "$m $path HTTP/1.1\r\nHost: x\r\n";
        $h .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" if defined $body;
        print $s $h, "\r\n", $body // "";
        my ($head, $len) = ("", 0);
        while (my $l = <$s>) { last if $l eq "\r\n"; $head .= $l; $len = $1 if $l =~ /^content-length:\s*(\d+)/i }
        read($s, my $b, $len);
        return ($head =~ m{^HTTP/1.1 (\d+)} ? $1 : 0, $b);
    };
    my @lat;
    for my $i (1 .. $n) {
        my ($a, $b) = (sprintf("%s-%06d", $pfx, 2 * $i + 100), sprintf("%s-%06d", $pfx, 2 * $i + 101));
        $req->("t", "GET", "/accounts/$a/balance");
        $req->("o", "GET", "/accounts/$a/balance");
        my ($st, $body) = $req->("t", "POST", "/accounts/transactions",
            qq({"transactionId":"$run-vis-$i","sourceAccountNumber":"$a","destinationAccountNumber":"$b","amount":"0.01"}));
        my ($v) = $body =~ /"sourceVersion":(\d+)/;
        die "transfer $i: $st $body\n" unless $st == 201 && $v;
        my $t0 = time;
        my $seen;
        while (time - $t0 < 2) {
            my (undef, $rb) = $req->("o", "GET", "/accounts/$a/balance");
            if ($rb =~ /"version":(\d+)/ && $1 >= $v) { $seen = time - $t0; last }
        }
        push @lat, defined $seen ? 1000 * $seen : 9999;
        sleep 0.05;
    }
    my @s = sort { $a <=> $b } @lat;
    open my $fh, ">", $out or die;
    printf $fh "%d %.2f %.2f %.2f\n", scalar @s, $s[$#s / 2], $s[int(0.99 * $#s)], $s[-1];
' "$PERF_PORT" "$HTTP_PORT" "$SMALL_PREFIX" "$VIS_N" "$RUN" "$RAW/visibility.txt" ||
    plog "  the visibility measurement failed"
read -r VIS_COUNT VIS_P50 VIS_P99 VIS_MAX < "$RAW/visibility.txt" 2>/dev/null || true
plog "  ${VIS_COUNT:-0} changes: median ${VIS_P50:-?} ms, p99 ${VIS_P99:-?} ms, max ${VIS_MAX:-?} ms"

perl -e '
    my ($rows, $out, $cmd, $vis) = @ARGV;
    open my $fh, "<", $rows or die; my %p; my @order;
    while (<$fh>) {
        my ($pat, $r, $s, $m, $z, $rd, $d) = split;
        push @order, $pat unless $p{$pat};
        push @{ $p{$pat} }, [$r, $s, $m, $z, $rd, $d];
    }
    my %target = ("uniform-small" => 0.90, "uniform-large" => 0.85, hot => 0.95);
    my @md = ("# Cached balance reads vs the HTTP ceiling", "",
              "| pattern | round | static `return 200` (req/s) | service (req/s) | ratio | answered by zone / redis / database |",
              "|---|---:|---:|---:|---:|---|");
    my @sum;
    for my $pat (@order) {
        my @runs = @{ $p{$pat} };
        for my $x (@runs) {
            push @md, sprintf("| %s | %d | %.0f | %.0f | %.1f%% | %d / %d / %d |", $pat, $x->[0], $x->[1], $x->[2],
                              $x->[1] ? 100 * $x->[2] / $x->[1] : 0, @$x[3 .. 5]);
        }
        my @s = sort { $a <=> $b } map { $_->[1] } @runs;
        my @m = sort { $a <=> $b } map { $_->[2] } @runs;
        my ($ms, $mm) = ($s[$#s / 2], $m[$#m / 2]);
        my $rom = $ms ? $mm / $ms : 0;
        # each service run right after its static twin: their ratio is what
        # the drift of the machine between rounds touches least
        my @pr = sort { $a <=> $b } map { $_->[1] ? $_->[2] / $_->[1] : 0 } @runs;
        my $ratio = $pr[$#pr / 2];
        push @md, sprintf("| %s | median | %.0f | %.0f | **%.2fx** (paired; ratio of the medians %.2fx) | |", $pat, $ms, $mm, $ratio, $rom);
        push @sum, sprintf("%s: %.2fx, the median of the ratios of the paired rounds (target %.2fx or more: %s); ratio of the medians %.2fx", $pat, $ratio, $target{$pat},
                           $ratio >= $target{$pat} ? "reached" : "not reached", $rom);
    }
    push @md, "", map({ "- $_" } @sum);
    push @md, "- cross-pod visibility, healthy (a transfer on the twin, its source read on the make-run nginx, another pod of the same MariaDB and Redis, until the new version shows): $vis" if $vis;
    push @md, "", $cmd;
    open $fh, ">", $out or die; print $fh join("\n", @md), "\n"; close $fh;
    print join("\n", @sum), "\n";
' "$ROWS" "$OUT/bench-balance.md" \
  "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (perf/wrk/balance-uniform.lua, balance-hot.lua; BASE=/static for the twin), $ROUNDS rounds, static run first in each pair; twin nginx ${WORKERS:-1} workers, cache zone ${ZONE_MB}m holding all $SMALL + $LARGE accounts (read once before); 2 cores shared by wrk, nginx, MariaDB and Redis; run $RUN, $(date -u +%Y-%m-%dT%H:%MZ); git $(git rev-parse --short HEAD 2>/dev/null || echo '?'). Produced by \`perf/bench-balance.sh\`." \
  "${VIS_COUNT:-0} changes: median ${VIS_P50:-?} ms, p99 ${VIS_P99:-?} ms, max ${VIS_MAX:-?} ms (target under 10 ms)"
plog "written: $OUT/bench-balance.md (wrk outputs in $RAW)"
