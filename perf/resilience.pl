#!/usr/bin/perl
# The resilience suite, the long version of t/170-resilience.t: prints its
# figures, writes the raw log perf/results/resilience.txt and the results
# document docs/resilience.md.
#
#   perf/resilience.pl                   # a few minutes
#   CLIENTS=24 ROUNDS=3 perf/resilience.pl
#
# Everything runs on loopback with real processes of its own: a private
# mariadbd and redis-server, nginx pods started by t/lib/RBCS/Test.pm, all
# under var/resilience/run-PID.  It does not touch the stacks of `make run` or `make test`.  Options (environment):
#
#   CLIENTS   concurrent client processes during the faults (16)
#   ACCOUNTS  accounts they move money between (20)
#   ROUNDS    times the whole fault sequence runs (2)
#   PRE       seconds of load before each fault (3)
#   POST      seconds of load after the recovery, before the audit (1)
#   FREEZE    seconds MariaDB stays frozen (6); Redis: FREEZE - 1
#   DOWN      seconds MariaDB and Redis stay killed before the restart (3)
#   KILLS     workers SIGKILLed in the worker fault (6)
#   FLOOD     transfers per overload flood (2000), FLOOD_ROUNDS (8)
#   DOC, RAW  where the document and the raw log go

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use POSIX qw(strftime);

my $ROOT;
BEGIN {
    $ROOT = abs_path(dirname(abs_path($0)) . '/..');
    $ENV{RBCS_ROOT} //= $ROOT;
    # a directory of its own for private servers and nginx prefixes,
    # var/resilience/run-PID (its logs stay; the large datadirs go at the
    # end); the test stack's initialised datadir, when there is one, spares
    # mariadb-install-db.  Nothing of this under perl -c.  Always its own:
    # an RBCS_TEST_VAR in the environment (from `conf/stack.sh test-env`)
    # names the test stack's directory, which must not be emptied.
    $ENV{RBCS_TEST_VAR} = "$ROOT/var/resilience/run-$$";
    if (!$^C) {
        my $var = $ENV{RBCS_TEST_VAR};
        remove_tree($var);
        make_path($var);
        my $tpl = "$ROOT/var/test/mariadb-template";
        system('cp', '-a', $tpl, "$var/mariadb-template") if -d "$tpl/mysql";
        # the private Redis servers' secrets, made as a stack's are
        system("$ROOT/conf/stack.sh", 'redis-secrets', $var) == 0
            or die "conf/stack.sh redis-secrets $var failed\n";
    }
}

use lib "$ROOT/t/lib", "$ROOT/perf/lib";
use JSON::PP ();
use List::Util qw(max min sum);
use Test::More;            # RBCS::Test reports its error.log check with it
use Time::HiRes qw(time sleep);
use RBCS::Test;
use RBCS::Resilience;

my %O = (CLIENTS => 16, ACCOUNTS => 20, ROUNDS => 2, PRE => 3, POST => 1,
         FREEZE => 6, DOWN => 3, KILLS => 6, FLOOD => 2000, FLOOD_ROUNDS => 8,
         DOC => "$ROOT/docs/resilience.md",
         RAW => "$ROOT/perf/results/resilience.txt");
$O{$_} = $ENV{$_} for grep { defined $ENV{$_} && length $ENV{$_} } keys %O;

make_path(dirname($O{RAW}));
open my $RAW, '>', $O{RAW} or die "$O{RAW}: $!";
$RAW->autoflush(1);
STDOUT->autoflush(1);
my $JSON = JSON::PP->new->canonical->pretty;

sub out { my $l = join '', @_; print "$l\n"; print $RAW "$l\n" }
sub raw { print $RAW @_, "\n" }

sub loadavg { my $l = `cat /proc/loadavg`; return (split ' ', $l)[0] }
my $load_start = loadavg();
my $T0 = time;
my $started = strftime('%Y-%m-%d %H:%M:%S UTC', gmtime);
out("resilience suite, $started; options: "
    . join(' ', map { "$_=$O{$_}" } sort grep { !/^(DOC|RAW)$/ } keys %O));

my $scratch = "$ENV{RBCS_TEST_VAR}/scratch";
make_path($scratch);

my $m = RBCS::Test::private_mariadb();
my $redis = RBCS::Test::private_redis();
my %common = (mysql_port => $m->port, redis_port => $redis->port,
              allow_log => [ qr/exited on signal 9/ ]);

my %versions = (
    nginx   => (`$RBCS::Test::NGINX -v 2>&1` =~ m{nginx/(\S+)})[0] // '?',
    mariadb => (`$RBCS::Test::MARIADBD --version 2>&1` =~ /Ver\s+(\S+)/)[0] // '?',
    redis   => (`redis-server --version 2>&1` =~ /v=(\S+)/)[0] // '?',
);
my $cpus = () = `cat /proc/cpuinfo` =~ /^processor/mg;
out("nginx $versions{nginx}, MariaDB $versions{mariadb}, Redis $versions{redis}, $cpus CPUs");

# nginx.conf of the suite's pods: they differ in the number of workers,
# the error_log level, the pool's directives (rbcs_mysql_NAME => VALUE;
# unless given: pool 8, queue 1024, 2 s to connect, 5 s a query, 3 s in
# the queue) and lines of their own in the server block
sub pod_conf {
    my (%o) = @_;
    my %fill = (WORKERS => delete $o{workers} // 2,
                LEVEL => delete $o{log} // 'warn',
                SERVER => delete $o{server} // '');
    my %mysql = (pool_size => 8, connect_timeout => '2s', query_timeout => '5s',
                 queue_size => 1024, queue_timeout => '3s', %o);
    $fill{MYSQL} = join '', map { "    rbcs_mysql_$_ $mysql{$_};\n" } sort keys %mysql;
    $fill{SERVER} =~ s/^(?=.)/        /mg;
    (my $conf = <<'EOF') =~ s/\@(\w+)\@\n?/$fill{$1}/g;
${TEST_GLOBALS}
worker_processes @WORKERS@;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log @LEVEL@;

events {
    worker_connections 4096;
}

http {
    access_log ${PREFIX}/access.log;

    ${TEST_GLOBALS_HTTP}

    client_max_body_size    64k;
    client_body_buffer_size 64k;

    rbcs_mysql_server 127.0.0.1:${MYSQL_PORT};
    rbcs_mysql_user rbcs;
    rbcs_mysql_password rbcs;
    rbcs_mysql_database ${MYSQL_DATABASE};
@MYSQL@

    rbcs_cache_zone zone=rbcs_balances:16m ttl=2s poll=1s;
    rbcs_redis_server 127.0.0.1:${REDIS_PORT};
    rbcs_redis_prefix ${REDIS_PREFIX};
    rbcs_redis_user rbcs;
    rbcs_redis_password_file ${REDIS_PASSWORD_FILE};
    rbcs_redis_hmac_key_file ${REDIS_HMAC_KEY_FILE};
    rbcs_redis_key_ttl 1h;

    server {
        listen 127.0.0.1:${HTTP_PORT};

        error_page 413 @rbcs_problem;
        location @rbcs_problem { rbcs_problem; }

        location / { rbcs; }
@SERVER@
    }
}
EOF
    return $conf;
}

# --- backpressure -----------------------------------------------------------

my @overload;
for my $slow (qw(lock freeze)) {
    my ($pool, $queue) = (2, 8);
    my $o = RBCS::Test->new(%common, name => "resilience_overload_$slow",
        conf => pod_conf(pool_size => $pool, queue_size => $queue,
            connect_timeout => '1s', query_timeout => '3s',
            queue_timeout => '2s', lock_wait_timeout => '2s', server => <<~'EOF'));
            # how long the service held each answer, whatever the
            # client's scheduling on a loaded machine adds
            add_header X-Request-Time $request_time always;
            EOF
    out("overload ($slow): pool $pool, queue $queue, 2 workers; floods of "
        . "$O{FLOOD} x $O{FLOOD_ROUNDS}");
    my $r = RBCS::Resilience::overload(pod => $o, mariadb => $m, pool => $pool,
        queue => $queue, workers => 2, at_once => 0.5, warm => 500,
        big => $O{FLOOD}, rounds => $O{FLOOD_ROUNDS}, procs => 4, big_procs => 8,
        dir => $scratch, hold => 1.5, slow => $slow);
    $r->{pool} = $pool;
    $r->{queue} = $queue;
    for my $f ($r->{warm}, @{ $r->{rounds} }) {
        out(sprintf '  flood of %d: %s in %.2f s; 503 at once (< 0.5 s): %d, median '
            . '%.3f s, max %.3f s; waited: %d; 503 without Retry-After: %d',
            $f->{n}, join(', ', map { "$_ x$f->{status}{$_}" } sort keys %{ $f->{status} }),
            $f->{took}, $f->{fast_503} // 0, $f->{fast_p50} // -1, $f->{fast_max} // -1,
            $f->{slow} // 0, $f->{no_retry_after} // 0);
    }
    out('  worker RSS (kB): start ' . rss($r->{mem_start}) . '; after warm-up '
        . rss($r->{mem_before}) . '; after each large flood '
        . join(' | ', map { rss($_) } @{ $r->{mem_rounds} }) . '; end ' . rss($r->{mem_end}));
    out(sprintf '  after the flood: first 201 %.3f s after the database was '
        . 'free; 20 in a row %d x 201 (slowest %.3f s); %d concurrent: %d x 201; '
        . 'applied %d, acknowledged %d, unknown 503 %d; queue_full_total %s',
        $r->{recovered} // -1, $r->{after_sequential_ok}, $r->{after_slowest},
        $r->{after_burst}{n}, $r->{after_burst}{ok}, $r->{applied}, $r->{acked},
        $r->{unknown}, $r->{queue_full_total} // '?');
    $r->{log} = RBCS::Resilience::log_summary($o->error_log);
    raw('overload detail: ', $JSON->encode($r));
    push @overload, $r;
    $o->stop;
}

sub rss { join ' / ', map { $_->[0] // '?' } @{ $_[0] } }

# --- graceful reload and stop -----------------------------------------------

my @lifecycle;
for my $sig (qw(HUP QUIT)) {
    my $l = RBCS::Test->new(%common, name => "resilience_\L$sig",
        conf => pod_conf(pool_size => 4, lock_wait_timeout => '3s'));
    my $r = RBCS::Resilience::lifecycle(pod => $l, mariadb => $m, signal => $sig,
        n => 16, dir => $scratch, hold => 1.5, redis => $redis);
    out(sprintf '%s with %d transfers in flight (%d queries waiting in MariaDB): '
        . 'answers %s; applied %d (%d entries); old workers alive while held: %d, '
        . 'gone %.3f s after the lock went; MariaDB connections %d -> %d; '
        . 'Aborted_clients %d -> %d; Redis connections %s -> %s', $sig, $r->{n}, $r->{in_flight},
        join(' ', map { "$_ x$r->{answered}{$_}" } sort keys %{ $r->{answered} }),
        $r->{applied}, $r->{entries}, $r->{old_alive_while_held},
        $r->{old_exited_after_release} // -1, $r->{conns_before}, $r->{conns_after},
        $r->{aborted_clients_before}, $r->{aborted_clients_after},
        $r->{redis_before} // '?', $r->{redis_after} // '?');
    raw("lifecycle detail: ", $JSON->encode($r));
    push @lifecycle, $r;
    $l->stop;
}

# --- the fault sequence -------------------------------------------------------

# each answer says which worker gave it
my $faults_conf = pod_conf(connect_timeout => '1s', query_timeout => '2s',
    queue_timeout => '2s', server => "add_header X-RBCS-Worker \$pid always;\n");
my @pods;
push @pods, RBCS::Test->new(%common, name => 'resilience', conf => $faults_conf);
push @pods, RBCS::Test->new(%common, pod_of => $pods[0], conf => $faults_conf);

my $r = RBCS::Resilience->new(dir => "$scratch/faults", pods => \@pods,
    mariadb => $m, redis => $redis, clients => $O{CLIENTS},
    accounts => $O{ACCOUNTS}, give_up => 60, log => sub { out(@_) });
$r->open_accounts;
my $base = $r->audit('before any fault');
out('audit before any fault: ' . ($base->{ok} ? 'ok' : "FAILED @{ $base->{fail} }"));

my $load_t0 = time;
$r->start_load;
my %p = (pre => $O{PRE}, post => $O{POST});
for my $round (1 .. $O{ROUNDS}) {
    out("--- round $round");
    $r->fault("worker SIGKILL x$O{KILLS}", sub { $r->kill_workers(kills => $O{KILLS}, gap => 0.5) }, %p);
    $r->fault('reload (HUP) of pod1', sub { $r->reload_pod(0) }, %p);
    $r->fault('reload (HUP) of pod2', sub { $r->reload_pod(1) }, %p);
    $r->fault('MariaDB SIGKILL + restart', sub { $r->mariadb_kill(down => $O{DOWN}) }, %p);
    $r->fault('MariaDB frozen (SIGSTOP)', sub { $r->mariadb_freeze(secs => $O{FREEZE}) }, %p);
    $r->fault('Redis SIGKILL + restart empty', sub { $r->redis_kill(down => $O{DOWN}) }, %p);
    $r->fault('Redis frozen (SIGSTOP)', sub { $r->redis_freeze(secs => $O{FREEZE} - 1) }, %p);
    $r->fault('Redis restarted from a stale snapshot', sub { $r->redis_stale(age => $O{DOWN}) }, %p);
    $r->fault('clients abort mid-request', sub { $r->client_aborts(n => 10) }, %p);
}
my @dead = $r->stop_load;
my $load_secs = time - $load_t0;
my $final = $r->audit('at the end');
out('final audit: ' . ($final->{ok} ? 'ok' : "FAILED @{ $final->{fail} }"));
my $recs = $r->records;
delete $final->{recs};

my %metrics;
for my $i (0 .. $#pods) {
    my $body = eval { $pods[$i]->get('/metrics')->{body} } // '';
    for my $name (qw(rbcs_mysql_retries_total rbcs_mysql_errors_total
                     rbcs_mysql_deadlocks_total rbcs_mysql_lock_wait_timeouts_total
                     rbcs_mysql_reconnects_total rbcs_mysql_timeouts_total
                     rbcs_mysql_connections_lost_total rbcs_mysql_queue_full_total))
    {
        $metrics{$name}[$i] = ($body =~ /^\Q$name\E\s+(\d+)/m)[0] // '?';
    }
}
my $logs = RBCS::Resilience::log_summary(map { $_->error_log } @pods);
for my $p (@pods) { $p->stop }

# --- one pod cut off from Redis, the other not ------------------------------

# both pods of it (one worker each)
my $part = RBCS::Resilience::redis_partition(redis => $redis, common => \%common,
                                             secs => 8,
                                             conf => pod_conf(workers => 1, log => 'info'));
out('partition: pod A (its Redis relay cut) acknowledged version '
    . ($part->{acked_version} // '?') . ' (' . ($part->{transfer} // '?')
    . '); pod B (subscription ' . (!$part->{b_sub_up_before} ? 'NEVER came up'
                                   : $part->{b_sub_down} ? 'went DOWN' : 'up')
    . ') read every 0.5 s: ' . join(' ', map { sprintf '%.1fs:v%s', $_->[0], $_->[1] // '?' }
                                     @{ $part->{reads} // [] })
    . '; strong read v' . ($part->{strong_version} // '?'));
$m->stop;
$redis->stop;
remove_tree($m->dir . '/data', "$ENV{RBCS_TEST_VAR}/mariadb-template");   # large; the logs stay
out("logs: $ENV{RBCS_TEST_VAR}");

# --- figures ------------------------------------------------------------------

my ($tb, $tk, $tr, $partial) = RBCS::Resilience::tally($recs);
my %by = %$tb;
my %kind = %$tk;
my %res = %$tr;
my $refused_retry = grep { $_->{outcome} eq 'REFUSED' && $_->{uncertain} }
                    values %{ $recs->{resolutions} };
my $done_retry = grep { $_->{outcome} eq 'DONE' && $_->{uncertain} }
                 values %{ $recs->{resolutions} };
my %kind_name = (T => 'transfers', D => 'deposits', W => 'withdrawals', H => 'holds');
sub outcomes { my ($h) = @_; join ', ', map { "$_ $h->{$_}" } sort keys %{ $h // {} } }
my %att;
$att{ $_->[1] == 0 ? 'no answer' : $_->[1] }++ for @{ $recs->{attempts} };
my $nids = keys %{ $recs->{final} };
my $natt = @{ $recs->{attempts} };
my @faults = $r->faults;
my $audits_ok = grep { $_->{audit}{ok} } @faults;
my @problems = @{ $recs->{problems} };
my $alerts = { map { $_ => $logs->{$_} } grep { /^\[(alert|emerg|crit)\]/ } keys %$logs };
my $unexpected_alerts = grep { !/exited on signal N/ } keys %$alerts;
my $kills = sum(map { scalar @{ $_->{kills} // [] } } @faults) // 0;

out(sprintf 'transfers and holds: %d ids attempted (%d requests, captures and '
    . 'voids included), %d acknowledged, %d rejected, %d unknown; %d faults, %d '
    . 'audits passed; load ran %.0f s; problems seen by clients: %d; client '
    . 'processes died: %d', $nids, $natt,
    $by{COMPLETED} // 0, $by{REJECTED} // 0, $by{UNKNOWN} // 0, scalar @faults,
    $audits_ok, $load_secs, scalar @problems, scalar @dead);
out("  $kind_name{$_}: " . outcomes($kind{$_})) for grep { $kind{$_} } qw(T D W H);
out("  $_: " . outcomes($res{$_})) for grep { $res{$_} } qw(capture void);
out('  holds in the database at the end: ' . outcomes($final->{db_holds})
    . sprintf('; %d expired, released at most %s after expiresAt, %d more than 1 s after',
              $final->{expiry}{n}, s3($final->{expiry}{max_late}), $final->{expiry}{late}));
out("  $_") for @problems[0 .. min(19, $#problems)];
out('error.log lines (warn and above) of the two pods:');
out(sprintf '  %5d %s', $logs->{$_}, $_) for sort { $logs->{$b} <=> $logs->{$a} } keys %$logs;
raw('faults detail: ', $JSON->encode([ map { my %f = %$_; \%f } @faults ]));
raw('final audit: ', $JSON->encode($final));
raw('metrics: ', $JSON->encode(\%metrics));
out(sprintf 'took %.0f s', time - $T0);

my $load_end = loadavg();
write_doc();
out("wrote $O{DOC} and $O{RAW}");
done_testing();
exit 0;

# --- the document -----------------------------------------------------------

sub s3 { defined $_[0] ? sprintf('%.3f s', $_[0]) : 'never' }
sub s2 { defined $_[0] ? sprintf('%.2f s', $_[0]) : 'never' }

sub statuses {
    my ($h) = @_;
    my @k = sort { ($a =~ /^\d/ ? $a : 999) <=> ($b =~ /^\d/ ? $b : 999) } keys %$h;
    return join ', ', map { "$_: $h->{$_}" } @k;
}

sub write_doc {
    open my $fh, '>', $O{DOC} or die "$O{DOC}: $!";
    print $fh doc_summary(), doc_how(), doc_faults(), doc_pods(),
        doc_partition(), doc_problems();
    close $fh;
}

# the title, the run and the summary table
sub doc_summary {
    my $d = "# Resilience test results\n\n";
    $d .= "Written by `perf/resilience.pl` on $started ($cpus CPUs, nginx "
        . "$versions{nginx}, MariaDB $versions{mariadb}, Redis $versions{redis}); "
        . "the raw log is [perf/results/resilience.txt](../perf/results/resilience.txt). "
        . "`t/170-resilience.t` runs a shorter version of the same suite in `make test` "
        . "and asserts every audit. The machine was shared: load average $load_start "
        . "at the start, $load_end at the end.\n\n";
    $d .= "Options: " . join(', ', map { "`$_=$O{$_}`" } sort grep { !/^(DOC|RAW)$/ } keys %O)
        . ".\n\n";

    $d .= "## Summary\n\n";
    $d .= "| | |\n|---|---|\n";
    $d .= "| faults injected under load | " . scalar(@faults) . " ($O{ROUNDS} rounds of "
        . (@faults / ($O{ROUNDS} || 1)) . "), $kills workers SIGKILLed in all |\n";
    $d .= "| client processes | $O{CLIENTS}, on 2 pods of 2 workers, over $O{ACCOUNTS} accounts, for "
        . sprintf('%.0f s', $load_secs) . " |\n";
    $d .= "| transfers and holds attempted (distinct ids) | $nids |\n";
    $d .= "| requests sent (captures, voids and the clients' retries included) | $natt ("
        . statuses(\%att) . ") |\n";
    $d .= "| acknowledged (201, or 200 on a retry) | " . ($by{COMPLETED} // 0) . " |\n";
    $d .= "| rejected (422 insufficient funds, 404 unknown account) | " . ($by{REJECTED} // 0) . " |\n";
    $d .= "| outcome never learnt (client gave up after 60 s) | " . ($by{UNKNOWN} // 0) . " |\n";
    for my $k (grep { $kind{$_} } qw(T D W H)) {
        $d .= "| $kind_name{$k} | acknowledged " . ($kind{$k}{COMPLETED} // 0)
            . ", rejected " . ($kind{$k}{REJECTED} // 0)
            . ($kind{$k}{UNKNOWN} ? ", unknown $kind{$k}{UNKNOWN}" : '') . " |\n";
    }
    $d .= "| captures (200 / 409 / unknown) | " . join(' / ', map { $res{capture}{$_} // 0 }
        qw(DONE REFUSED UNKNOWN)) . " ($partial in part) |\n";
    $d .= "| voids (200 / 409 / unknown) | " . join(' / ', map { $res{void}{$_} // 0 }
        qw(DONE REFUSED UNKNOWN)) . " |\n";
    $d .= "| captures and voids retried after a 503 or no answer: then 200 / 409 | $done_retry / $refused_retry |\n";
    $d .= "| holds in the database at the end | " . outcomes($final->{db_holds}) . " |\n";
    $d .= "| holds expired | $final->{expiry}{n}, released at most "
        . s3($final->{expiry}{max_late}) . " after their `expiresAt`, $final->{expiry}{late} "
        . "more than 1 s after (a fault can delay it: see the faults) |\n";
    $d .= "| audits passed | $audits_ok of " . scalar(@faults) . " after the faults, "
        . ($final->{ok} ? 'and' : 'but NOT') . " the final one |\n";
    $d .= "| unexpected answers, stale reads, 503 without Retry-After | " . scalar(@problems) . " |\n";
    $d .= "| [alert]/[crit]/[emerg] in error.log other than the killed workers | $unexpected_alerts |\n";
    my $reads_ok = !grep { @{ $_->{audit}{read_bad} // [] } } @faults, { audit => $final };
    my $money_ok = !grep { grep { !/^reads differ/ } @{ $_->{audit}{fail} } } @faults, { audit => $final };
    $money_ok &&= !@problems && !@dead && !$unexpected_alerts && !($by{UNKNOWN} // 0);
    $d .= "| one pod cut off from Redis: the other pod's reads after the first pod's transfer | "
        . ($part->{stale_late} ? sprintf('**stale for all of the %.0f s watched** (bound: 2 s)', $part->{reads}[-1][0])
                               : 'within the bound') . " |\n";
    $d .= "| verdict | " . (
        $money_ok ? '**no acknowledged transfer lost or doubled, no rejected one applied, '
            . 'no hold resolved twice or captured above its amount, every acknowledged '
            . 'capture and void final, money conserved, every available balance within its limit'
            . ($reads_ok ? ', every worker read what the database holds after every fault' : '')
            . '**' . ($reads_ok && !$part->{stale_late} ? ''
                     : '; but **a pod can serve a stale balance past the documented cross-pod bound** (see Problems found)')
                  : '**PROBLEMS FOUND: see below**') . " |\n\n";
    return $d;
}

# what the suite does, as the reader of the figures needs it
sub doc_how {
    return "## How the suite works\n\n" . <<'EOT';
- **Real processes on loopback**: a private `mariadbd` and `redis-server`
  (so that they can be killed and frozen without touching anything else),
  two nginx "pods" of 2 workers each sharing the database and Redis
  (`rbcs_mysql_query_timeout 2s`, `connect_timeout 1s`, `queue_timeout 2s`,
  pool 8, lock wait timeout 2 s, 3 retries inside the service).
- **Accounts**: STANDARD accounts opened with 100.00, but every third
  opened empty with an overdraft limit of 50.00, and one EXTERNAL account
  (opened with zero, no floor).
- **Clients**: forked processes, each sending, with fresh ids: plain
  transfers between random STANDARD accounts (60 %; 4 % of them to an
  unknown account), deposits from the EXTERNAL account (8 %), withdrawals
  to it (8 %), and holds (24 %: most between STANDARD accounts, a tenth
  from the EXTERNAL account, a tenth to it), amounts 0.01 to 30.00 so that
  some are refused for insufficient funds. Of the holds, 40 % carry
  `expiresIn` 1 or 2 s: half of those are left to expire, the others are
  captured or voided at a random time up to half a second past `expiresAt`
  (so that some captures and voids meet the expiry and get 409
  `hold_not_pending`); the holds without expiry are captured whole (40 %),
  in part (30 %) or voided (30 %) within 1.5 s, while the client goes on
  with other requests. Each request on a new connection to a random pod.
  A client does what a real one must: a `503` (with `Retry-After`) or a
  connection that broke without an answer is retried **with the same
  request** (the same `transactionId`, or the same capture or void), after
  0.25–0.5 s, or 0.05–0.15 s, on any pod, until a final answer (201/200,
  422/404; for a capture or void 200 or 409) or 60 s. A 409 to a capture
  or void is recorded with whether an earlier attempt's outcome was
  unknown and whether it came before the hold's `expiresAt`; the audit
  decides from the database. Every third acknowledged request is followed
  by a balance read on the pod that acknowledged it, which must not show
  an older version of the source account. Every attempt and every final
  outcome is recorded (id → final status).
- **Each fault**: `PRE` seconds of load, the fault, then the **recovery
  time**: from the end of the fault (the restart done, the SIGCONT sent, the
  kill) until a probe transfer with a fresh id has been acknowledged by
  each pod; then `POST` seconds of load, then the **audit**.
- **The audit** pauses the clients (each finishes the request it is on,
  retries included; the service's expiries go on), gives holds more than
  a second past their `expiresAt` up to 10 s to be released (after a
  database fault), and checks, in SQL on one consistent snapshot of
  `accounts`, `transactions`, `holds`, `entries` and `audit_log`, with
  the clients' records loaded into two tables: the total of all balances,
  the EXTERNAL account's included, equals the total opened; no STANDARD
  account's available balance (`balance - held_balance`) is below minus its
  overdraft limit; every balance equals what its ledger entries add up to
  (and the last entry's `balance_after`), and its version the number of
  its entries plus the changes of its held balance (each hold it is the
  source of, each void or expiry of one); every held balance is the sum
  of the account's rows in `holds`, and `holds` lists exactly the
  `PENDING` holds, with their amounts, accounts and expiry; a completed
  transfer has exactly two entries, from its source to its destination,
  summing to zero, of its amount (a captured hold: of its captured
  amount), and any other transaction (rejected, pending, voided, expired)
  none; no hold is captured above its amount; every resolved hold has
  exactly one `hold.capture`, `hold.void` or `hold.expire` row in
  `audit_log`, the one of its state, and a pending one none; no hold is
  still pending 3 s past its `expiresAt`, none was released before it,
  none captured or voided at or after it; every acknowledged transfer,
  deposit and withdrawal is `COMPLETED` with the acknowledged accounts
  and amount and exactly two entries (applied once); every acknowledged
  hold is a hold of the acknowledged accounts, amount and expiry; every
  capture or void the clients saw acknowledged is the hold's final state
  (captured of the amount asked); every 409 to a capture or void is of a
  hold that had expired, answered at or after its `expiresAt` (a 409 on a
  retry whose earlier attempt had applied would be a wrong replay); no
  hold is captured or voided that no client asked to; no transfer or hold
  reported rejected is applied or held, and every rejection is recorded;
  no transaction exists that no client sent. Then 12 final outcomes and 6
  captures or voids are asked again (a replay must give the same outcome:
  a hold's request its `PENDING` answer whatever became of it), and every
  account's balance is read through every worker of both pods (4
  concurrent `Connection: close` reads per account and pod, the answering
  worker named by an `X-RBCS-Worker: $pid` header) and compared with
  `SELECT balance, version, held_balance` (a read newer than the database
  read before it is of an account that moved on since, a hold's expiry:
  it is read again; retrying for up to the zone's `ttl` + 2 s when they
  differ: without a message an entry is trusted for at most
  `ttl`/`max_age`).
- **Client-visible effect** of a fault: the requests the clients sent from
  the fault to the audit, by answer, and the longest time without any
  acknowledgement (from the last one before the fault).
EOT
}

# the faults, the audits after them, the clients that went away
sub doc_faults {
    my $d = "\n## Faults\n\n";
    $d .= "| # | fault | what was done | recovery | requests from the fault to the audit | longest time without an acknowledgement | holds due in the window: released at most after `expiresAt` | audit |\n";
    $d .= "|---|---|---|---|---|---|---|---|\n";
    my $i = 0;
    for my $f (@faults) {
        $i++;
        my $a = $f->{audit};
        (my $detail = $f->{detail} // '') =~ s/\|/\\|/g;
        my $e = $a->{expiry_window} // {};
        $d .= sprintf "| %d | %s | %s | %s | %s | %s | %s | %s |\n", $i, $f->{name}, $detail,
            s3($f->{recovery}), statuses($f->{by_status}), s2($f->{gap}),
            $e->{n} ? "$e->{n}: " . s3($e->{max_late}) : 'none',
            $a->{ok} ? 'pass' : '**FAIL**: ' . join('; ', map { (split /:/, $_)[0] } @{ $a->{fail} });
    }
    $d .= "\nRecovery times by fault (all rounds): \n\n| fault | recovery (each round) |\n|---|---|\n";
    my (%rec, @order);
    for my $f (@faults) {
        push @order, $f->{name} unless $rec{ $f->{name} };
        push @{ $rec{ $f->{name} } }, s3($f->{recovery});
    }
    $d .= "| $_ | " . join(', ', @{ $rec{$_} }) . " |\n" for @order;

    $d .= "\n### The audits\n\n";
    $d .= "| # | after | total of balances (EXTERNAL included) | available balance below zero / below minus the limit | acknowledged checked | rejected checked | holds (pending / captured / voided / expired) | replays | balance reads (workers reached) | reads agreed after | result |\n";
    $d .= "|---|---|---|---|---|---|---|---|---|---|---|\n";
    $i = 0;
    for my $a ($base, (map { $_->{audit} } @faults), $final) {
        my $w = join ' + ', map { scalar @{ $a->{workers_read}{$_} } } sort keys %{ $a->{workers_read} };
        my $h = $a->{db_holds} // {};
        $d .= sprintf "| %s | %s | %s of %s | %d / %d | %d | %d | %s | %d | %d (%s) | %s | %s |\n",
            $i++, $a->{label}, $a->{total}, $a->{initial_total}, $a->{overdrawn},
            $a->{below_limit_n},
            $a->{by_outcome}{COMPLETED} // 0, $a->{by_outcome}{REJECTED} // 0,
            join(' / ', map { $h->{$_} // 0 } qw(PENDING COMPLETED VOIDED EXPIRED)),
            $a->{replays} // 0, $a->{reads} // 0, $w,
            @{ $a->{read_bad} } ? sprintf('**not within %d s**', $a->{read_bound})
              : $a->{read_converged} ? sprintf('%.2f s', $a->{read_converged}) : 'at once',
            $a->{ok} ? 'pass' : '**FAIL**';
    }
    my @conv = grep { $_->{audit}{read_converged} && !@{ $_->{audit}{read_bad} } } @faults;
    if (@conv) {
        $d .= "\nReads that differed from the database at first and agreed within "
            . "the bound (after a Redis fault a pod's subscription was down, so its "
            . "entries are trusted for `ttl` only):\n\n";
        for my $f (@conv) {
            $d .= "- after *$f->{name}*: " . join('; ', @{ $f->{audit}{read_first_bad} }) . "\n";
        }
    }
    my @stale = grep { @{ $_->{audit}{read_bad} } } @faults;
    if (@stale) {
        $d .= "\nReads that still differed from the database " . ($stale[0]{audit}{read_bound})
            . " s after the clients paused (the audit's bound: `ttl` + 2 s):\n\n";
        for my $f (@stale) {
            $d .= "- after *$f->{name}*: " . join('; ', @{ $f->{audit}{read_bad} }) . "\n";
        }
        $d .= "\nSee \"One pod cut off from Redis\" below for the cause, reproduced "
            . "deterministically.\n";
    }

    my ($ab) = grep { $_->{kinds} } @faults;
    if ($ab) {
        $d .= "\n### Clients that went away\n\n";
        $d .= "Each round, $ab->{kinds}{inflight}{sent} clients sent a whole transfer while its "
            . "accounts were locked in MariaDB (so the transfer was in flight) and "
            . "closed the connection (half with FIN, half with RST); as many sent "
            . "the headers and half the body and closed; as many sent a whole "
            . "transfer and closed at once. As many did the same with a capture "
            . "(whole or in part) or a void of a hold made beforehand. Then a "
            . "well-behaved client sent each request again:\n\n";
        for my $f (grep { $_->{kinds} } @faults) {
            $d .= "- $f->{detail}" . ($f->{inflight_seen} ? '' : ' (the in-flight ones were NOT seen in MariaDB)') . "\n";
        }
        my $mb = sum(map { $_->{midbody_applied} // 0 } grep { $_->{kinds} } @faults);
        $d .= "\nA transfer, capture or void whose body never arrived must never be applied ("
            . ($mb ? "**$mb were**" : 'none was')
            . "); the others must be applied exactly once whatever the service did "
            . "while the client was gone (the audit after the fault), and a capture "
            . "or void applied while its client was away is answered 200 with the "
            . "same resolution when the client asks again.\n";
    }
    return $d;
}

# backpressure, graceful reload and stop
sub doc_pods {
    my $d = "\n## Backpressure\n\n";
    for my $o (@overload) {
        my $how = $o->{slow} eq 'lock'
            ? 'its two accounts held by `SELECT … FOR UPDATE` for 1.5 s during each flood (a slow database)'
            : '`mariadbd` frozen (SIGSTOP) during each flood, SIGCONT after';
        $d .= "**A pod of 2 workers, `rbcs_mysql_pool_size $o->{pool}`, `rbcs_mysql_queue_size $o->{queue}`, "
            . "queue timeout 2 s, query timeout 3 s, $how**, flooded with concurrent "
            . "transfers, each on its own connection. At most workers × (pool + queue) = "
            . "$o->{bound} transfers can wait; the rest must get 503 at once.\n\n";
        $d .= "| flood | answers | took | 503 at once (< 0.5 s) | their median / max time | waited ≥ 0.5 s | 503 without Retry-After |\n|---|---|---|---|---|---|---|\n";
        for my $f ($o->{warm}, @{ $o->{rounds} }) {
            $d .= sprintf "| %d | %s | %.2f s | %d | %s / %s | %d | %d |\n", $f->{n},
                statuses($f->{status}), $f->{took}, $f->{fast_503} // 0,
                s3($f->{fast_p50}), s3($f->{fast_max}), $f->{slow} // 0,
                $f->{no_retry_after} // 0;
        }
        $d .= "\nWorker memory (RSS, kB, per worker): at start " . rss($o->{mem_start})
            . "; after the warm-up flood " . rss($o->{mem_before})
            . "; after each large flood " . join(' → ', map { rss($_) } @{ $o->{mem_rounds} })
            . "; at the end " . rss($o->{mem_end}) . ".\n\n";
        $d .= sprintf "When the flood stopped: first transfer accepted %s after the "
            . "database was free again; 20 transfers in a row: %d × 201 (slowest %s); "
            . "%d concurrent (pool + queue): %d × 201. Applied: %d transfers, for %d "
            . "acknowledged and %d 503s whose outcome was unknown. "
            . "`rbcs_mysql_queue_full_total` %s.\n\n",
            s3($o->{recovered}), $o->{after_sequential_ok}, s3($o->{after_slowest}),
            $o->{after_burst}{n}, $o->{after_burst}{ok}, $o->{applied}, $o->{acked},
            $o->{unknown}, $o->{queue_full_total} // '?';
    }
    $d .= "The local configuration has no rate limit; the production one answers 429 "
        . "by key and by address (`t/150-gateway.t`).\n";

    $d .= "\n## Graceful reload and stop\n\n";
    $d .= "A pod of 2 workers (pool 4): transfers between two accounts held by "
        . "`SELECT … FOR UPDATE`, so that they are in flight in MariaDB; then the "
        . "signal; 1.5 s later the lock is released.\n\n";
    $d .= "| signal | transfers | waiting in MariaDB at the signal | old workers alive 1.5 s later | answers | applied (entries) | old workers gone after the release | MariaDB connections before → after | Aborted_clients | Redis connections |\n|---|---|---|---|---|---|---|---|---|---|\n";
    for my $l (@lifecycle) {
        $d .= sprintf "| %s | %d | %d | %d | %s | %d (%d) | %s | %d → %d | %d → %d | %s → %s |\n",
            $l->{signal}, $l->{n}, $l->{in_flight}, $l->{old_alive_while_held},
            statuses($l->{answered}), $l->{applied}, $l->{entries},
            s3($l->{old_exited_after_release}), $l->{conns_before}, $l->{conns_after},
            $l->{aborted_clients_before}, $l->{aborted_clients_after},
            $l->{redis_before} // '?', $l->{redis_after} // '?';
    }
    my ($hup) = grep { $_->{signal} eq 'HUP' } @lifecycle;
    my ($quit) = grep { $_->{signal} eq 'QUIT' } @lifecycle;
    $d .= sprintf "\nWhile the transfers were held, after HUP %d new workers were running "
        . "and a new request was answered %s; after QUIT the listener was %s and the "
        . "master exited %s after the lock went. MariaDB's `Aborted_clients` (connections "
        . "closed without COM_QUIT) went from %d to %d over HUP and from %d to %d over "
        . "QUIT.\n", $hup->{new_workers} // 0, $hup->{served_during} // 'nothing',
        $quit->{listener_closed} ? 'closed' : 'STILL OPEN',
        s3($quit->{master_exited_after_release}),
        $hup->{aborted_clients_before}, $hup->{aborted_clients_after},
        $quit->{aborted_clients_before}, $quit->{aborted_clients_after};
    return $d;
}

# one pod cut off from Redis
sub doc_partition {
    my $d = "\n## One pod cut off from Redis\n\n";
    $d .= "Two more pods (1 worker each) share a database and the Redis channel; "
        . "pod B reaches Redis directly, pod A through a TCP relay. Pod B reads "
        . "account X (version $part->{before}[0], from its zone); the relay is "
        . "killed, so pod A loses Redis while pod B's subscription (up before B "
        . "read X) stays " . (!$part->{b_sub_up_before} ? 'up (it did NOT come up: the check is void)'
                              : $part->{b_sub_down} ? 'up (it did NOT: it went down)' : 'up')
        . "; 1.5 s later pod A acknowledges a transfer from X ("
        . ($part->{transfer} // '?') . ", source version "
        . ($part->{acked_version} // '?') . "). What pod B answers for X afterwards:\n\n";
    $d .= "| seconds after the acknowledgement | " . join(' | ', map { sprintf '%.1f', $_->[0] } @{ $part->{reads} }) . " |\n";
    $d .= "|---|" . join('', map { '---|' } @{ $part->{reads} }) . "\n";
    $d .= "| version pod B answers (tier) | " . join(' | ', map { "v" . ($_->[1] // '?') . " ($_->[2])" } @{ $part->{reads} }) . " |\n\n";
    $d .= "A strong read on pod B gives v" . ($part->{strong_version} // '?') . ". "
        . ($part->{stale_late}
           ? "**Pod B keeps answering the old balance as current past the documented "
             . "bound** (1 s while its subscription is up; `ttl` = 2 s while it is "
             . "down): a worker whose Redis command connection is not ready drops the "
             . "versioned write and its PUBLISH (`ngx_rbcs_redis_put` returns "
             . "`NGX_DECLINED`, logged at debug level only), and a pod whose "
             . "subscription is up trusts an entry filled after the subscription came "
             . "up for `max_age` (60 s). The same happens, by timing, after Redis is "
             . "restarted or frozen: a pod's subscriber can be back before another "
             . "pod's workers have their command connections back; the transfers those "
             . "workers acknowledge meanwhile are never announced (see the audits "
             . "above when they failed on reads).\n"
           : "Pod B saw the change within the bound: its entry for X is not trusted "
             . "beyond `max_age` (the reads marked `database` come every 2 s), so the "
             . "change pod A could not publish still reached it.\n");
    return $d;
}

# the service's counters, its error.log, the problems found
sub doc_problems {
    my $d = "\n## What the service counted\n\n| metric | pod1 | pod2 |\n|---|---|---|\n";
    $d .= "| `$_` | $metrics{$_}[0] | $metrics{$_}[1] |\n" for sort keys %metrics;
    $d .= "\n## error.log (warn and above, both pods, numbers blanked)\n\n| count | line |\n|---|---|\n";
    for my $k (sort { $logs->{$b} <=> $logs->{$a} } keys %$logs) {
        (my $e = $k) =~ s/\|/\\|/g;
        $d .= "| $logs->{$k} | `$e` |\n";
    }
    $d .= "\nThe `[alert] worker process N exited on signal 9` lines are the workers "
        . "the suite killed.\n" if $kills;

    $d .= "\n## Problems found\n\n";
    my @p;
    push @p, map { "audit after *$_->{name}* failed: " . join('; ', @{ $_->{audit}{fail} }) }
        grep { !$_->{audit}{ok} } @faults;
    push @p, 'final audit failed: ' . join('; ', @{ $final->{fail} }) unless $final->{ok};
    push @p, map { "client: $_" } @problems[0 .. min(19, $#problems)];
    push @p, "transfers whose outcome the clients never learnt: $by{UNKNOWN}" if $by{UNKNOWN};
    push @p, "client processes that died: " . scalar @dead if @dead;
    push @p, map { "error.log: $_ ($alerts->{$_})" } grep { !/exited on signal N/ } sort keys %$alerts;
    for my $f (@faults) {
        push @p, "*$f->{name}* never recovered" unless defined $f->{recovery};
        my $errs = ($f->{by_status}{503} // 0) + ($f->{by_status}{'no answer'} // 0);
        push @p, sprintf('*%s* cost the clients %d 503s and %d broken connections (a '
            . 'Redis fault should cost transfers nothing); longest time without an '
            . 'acknowledgement %.2f s, recovery %s', $f->{name}, $f->{by_status}{503} // 0,
            $f->{by_status}{'no answer'} // 0, $f->{gap}, s3($f->{recovery}))
            if $f->{name} =~ /^Redis/ && $errs;
        push @p, "*$f->{name}*: workers gone: @{ $f->{crashed} }" if @{ $f->{crashed} // [] };
        push @p, "*$f->{name}*: a transfer, capture or void whose body never arrived was applied"
            if $f->{midbody_applied};
        for my $k (grep { /capture\/void/ } sort keys %{ $f->{retry} // {} }) {
            my @not = grep { $_ != 200 } keys %{ $f->{retry}{$k} };
            push @p, "*$f->{name}*: $k asked again answered "
                . join(', ', map { "$_ x$f->{retry}{$k}{$_}" } @not) . ' (not 200)' if @not;
        }
    }
    for my $o (@overload) {
        push @p, "overload ($o->{slow}): 503 without Retry-After"
            if grep { $_->{no_retry_after} } $o->{warm}, @{ $o->{rounds} };
        push @p, "overload ($o->{slow}): applied $o->{applied} for $o->{acked} acknowledged"
            unless $o->{applied} >= $o->{acked} && $o->{applied} <= $o->{acked} + $o->{unknown};
    }
    push @p, sprintf('one pod cut off from Redis: the other pod answered the old balance '
        . '%d times over %.1f s after the acknowledgement (last at %.1f s), with its '
        . 'subscription up', $part->{stale_reads}, $part->{reads}[-1][0], $part->{last_stale})
        if $part->{stale_late};
    for my $l (@lifecycle) {
        push @p, "$l->{signal}: not every in-flight transfer answered 201"
            unless ($l->{answered}{201} // 0) == $l->{n} && $l->{applied} == $l->{n};
        push @p, "$l->{signal}: Aborted_clients grew"
            if $l->{aborted_clients_after} != $l->{aborted_clients_before};
    }
    $d .= @p ? join('', map { "- $_\n" } @p) : "None in this run.\n";
    return $d;
}
