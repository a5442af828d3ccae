#!/usr/bin/perl
# perf/report.pl RUNS META PLOTDIR "SCENARIOS" OUT.md - the report of
# perf/run-all.sh: reads raw/runs.txt (one key=value line per run) and
# raw/meta.txt, writes results.md and the gnuplot data files under PLOTDIR.
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
    # transfers per COMMIT, or (holds, captures, deposits) state changes
    my ($what, $per_of) = $s =~ /^transfer|^mix/ ? ('transfers', $tps_of)
                        : $two_phase{$s} ? ('state changes', $changes_of) : ();
    if ($what && $r->{target} eq 'rbcs') {
        my $per = ($r->{commits_s} // 0) > 0 ? sprintf('%.2f', $per_of->($r) / $r->{commits_s}) : '?';
        my $db = sprintf('%s commits/s, %s %s per COMMIT, %s fsyncs/COMMIT',
                         $r->{commits_s} // '?', $per, $what, $r->{fsyncs_per_commit} // '?');
        return "CPU ($busy% busy: $cpu); $db$x" if $busy >= 80;
        my $why = $s eq 'transfer-hot' ? 'row locks of the hot pair (transfers on it are serial)'
            : $s eq 'deposit' ? 'the row lock of the EXTERNAL account (every deposit takes it)'
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
push @md, "- **Service under test**: a second nginx (\"twin\", " . ($meta{twin} // '?') . ", access_log off, cache zone $meta{zone}) rendered from `conf/nginx.local.conf.in` with the module's shipped settings (pool of 8 connections per worker), plus static locations: `/static/accounts/...` answers `return 200` with a balance read's body and `X-RBCS-Cache` header, `/static/accounts/transactions` `return 201` with a transfer's body. Answer sizes: $meta{sizes}.";
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
# the best of each by transfers (201 answers), not by answers of any kind
my ($btu, $bth) = map { (sort { $tps_of->($b) <=> $tps_of->($a) or $a->{conns} <=> $b->{conns} }
                         values %{ $res{$_}{rbcs} || {} })[0] } qw(transfer-uniform transfer-hot);
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
