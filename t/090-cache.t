#!/usr/bin/perl
# The balance cache: which tier answers, read-your-writes and monotonic
# reads under concurrent transfers on one pod, the bound within which
# another pod sees a change, eviction from a full zone, and a reload under
# load that keeps the zone and correct answers.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);

# a pod of WORKERS workers with the balance cache ZONE
sub conf {
    my ($workers, $zone) = @_;
    return <<"EOF";
\${TEST_GLOBALS}
worker_processes $workers;
worker_rlimit_nofile 16384;
error_log \${PREFIX}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log \${PREFIX}/access.log;

    \${TEST_GLOBALS_HTTP}

    client_max_body_size    64k;
    client_body_buffer_size 64k;

    rbcs_mysql_server 127.0.0.1:\${MYSQL_PORT};
    rbcs_mysql_user rbcs;
    rbcs_mysql_password rbcs;
    rbcs_mysql_database \${MYSQL_DATABASE};
    rbcs_mysql_pool_size 8;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 5s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;

    rbcs_cache_zone $zone;
    rbcs_redis_server 127.0.0.1:\${REDIS_PORT};
    rbcs_redis_prefix \${REDIS_PREFIX};
    rbcs_redis_user rbcs;
    rbcs_redis_password_file \${REDIS_PASSWORD_FILE};
    rbcs_redis_hmac_key_file \${REDIS_HMAC_KEY_FILE};
    rbcs_redis_key_ttl 1h;
    # the tiers under test, not Redis's timeouts (t/091): on a loaded
    # machine a Redis command past the 200 ms default is a failed publish,
    # which moves the cache generation, and every pod then rightly
    # distrusts what it holds
    rbcs_redis_command_timeout 5s;
    rbcs_redis_read_timeout 2s;

    server {
        listen 127.0.0.1:\${HTTP_PORT};

        error_page 413 \@rbcs_problem;
        location \@rbcs_problem { rbcs_problem; }

        location / { rbcs; }
    }
}
EOF
}

my $t = RBCS::Test->new(conf => conf(2, 'zone=rbcs_balances:16m ttl=2s poll=1s'));

sub open_account {
    my ($t, $n, $balance) = @_;
    my $r = $t->post_json('/accounts', { accountNumber => $n,
                                         initialBalance => $balance });
    is($r->{status}, 201, "opened $n") or diag $r->{body};
}


# run $n children, each $code->($k) returning lines; all lines back
sub parallel {
    my ($n, $code) = @_;
    my @pids;
    for my $k (0 .. $n - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my @lines = eval { $code->($k) };
            @lines = ("ERROR $@") if $@;
            open my $fh, '>', "$dir/p.$k" or POSIX::_exit(1);
            print $fh map { "$_\n" } @lines;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
    my @all;
    for my $k (0 .. $n - 1) {
        open my $fh, '<', "$dir/p.$k" or next;
        push @all, map { chomp; $_ } <$fh>;
        unlink "$dir/p.$k";
    }
    return @all;
}

# --- tiers --------------------------------------------------------------

open_account($t, 'T1', '10.00');
my $bb = $t->balance('T1');
is($bb->{tier}, 'zone', 'an account just opened on this pod is in the zone');
is($bb->{balance}, '10.00', 'with its balance');
is($bb->{version}, 1, 'and its version');

$bb = $t->balance('T1', '?consistency=strong');
is($bb->{tier}, 'database', '?consistency=strong reads the database');
is($bb->{balance}, '10.00', 'same balance');

# an account written behind the service's back is read from the database
# first, then from the zone
$t->dbh->do(q{INSERT INTO accounts (account_number, currency, scale,
              balance, initial_balance, version, created_at, updated_at)
              VALUES ('T2', 'EUR', 2, 5.5, 5.5, 7,
              UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))});
$t->dbh->do(q{INSERT INTO entries VALUES ('T2', 7, 'OPENING', NULL, NULL,
              5.5, 5.5, UTC_TIMESTAMP(3))});
$bb = $t->balance('T2');
is($bb->{tier}, 'database', 'a miss everywhere goes to the database');
is_deeply([ @$bb{qw(balance currency version)} ], [ '5.50', 'EUR', 7 ],
          'balance, currency and version from the database');
$bb = $t->balance('T2');
is($bb->{tier}, 'zone', 'the next read comes from the zone');
is($bb->{balance}, '5.50', 'same answer');

# a second pod: its zone is empty, Redis has what the first pod saw
my $pod2 = RBCS::Test->new(pod_of => $t,
    conf => conf(1, 'zone=rbcs_balances:16m ttl=2s poll=1s'));
# the cache's own figures, to say why a tier was not the one expected
sub cache_metrics {
    my ($pod) = @_;
    return join "\n", grep { /^rbcs_(cache_generation|redis)_/ }
        split /\n/, $pod->get('/metrics')->{body} // '';
}

# Redis is used once the pod has read the cache generation and its
# connection to Redis is up
ok(RBCS::Test::wait_for(10, sub {
       my $m = cache_metrics($pod2);
       $m =~ /^rbcs_cache_generation_reads_total [1-9]/m
           && $m =~ /^rbcs_redis_connected 1\b/m }),
   'pod 2 has read the cache generation and is connected to Redis')
    or diag cache_metrics($pod2);
$bb = $pod2->balance('T2');
is($bb->{tier}, 'redis', 'another pod misses its zone and finds Redis')
    or diag cache_metrics($pod2), "\n", cache_metrics($t);
is_deeply([ @$bb{qw(balance currency version)} ], [ '5.50', 'EUR', 7 ],
          'with the same balance, currency and version');
is($pod2->balance('T2')->{tier}, 'zone', 'then its own zone');

is($t->get('/accounts/NOPE/balance')->{status}, 404,
   'an unknown account is still 404');
is($t->get('/accounts/NOPE/balance')->{status}, 404, 'twice (not cached)');

# --- read-your-writes and monotonic reads on one pod --------------------

open_account($t, 'RA', '1000.00');
open_account($t, 'RB', '1000.00');

my @lines = parallel(8, sub {
    my ($k) = @_;
    my @out;
    my %last = (RA => 0, RB => 0);
    for my $i (1 .. 25) {
        my ($s, $d) = ($k + $i) % 2 ? qw(RA RB) : qw(RB RA);
        my $r = $t->transfer("ryw-$k-$i", $s, $d, '1.00');
        if ($r->{status} != 201) {
            push @out, "BAD transfer $r->{status}";
            next;
        }
        my $j = $r->json;
        for my $acc ([ $s, $j->{sourceVersion} ],
                     [ $d, $j->{destinationVersion} ]) {
            my ($n, $v) = @$acc;
            my $rb = $t->balance($n);
            if (!$rb) {
                push @out, "BAD read $n";
                next;
            }
            push @out, "STALE $n read $rb->{version} < written $v"
                if $rb->{version} < $v;
            push @out, "BACKWARDS $n $rb->{version} < $last{$n}"
                if $rb->{version} < $last{$n};
            $last{$n} = $rb->{version};
            push @out, "TIER $rb->{tier}";
        }
    }
    return @out;
});

my @bad = grep { !/^TIER / } @lines;
is(scalar @bad, 0,
   '200 transfers, each followed by reads of both accounts: no read older '
   . 'than the transfer, no version going backwards')
    or diag join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)];
my %tiers;
$tiers{ (split / /)[1] }++ for grep { /^TIER / } @lines;
is($tiers{zone} // 0, 400, 'all 400 reads were answered by the zone')
    or diag explain \%tiers;

my $ra = $t->balance('RA', '?consistency=strong');
my $rb = $t->balance('RB', '?consistency=strong');
is($t->balance('RA')->{version}, $ra->{version},
   'the zone holds the database version of RA');
is($t->balance('RB')->{balance}, $rb->{balance},
   'and the database balance of RB');

# --- the other pod sees a change within the bound -----------------------

my $bound = 1.0;     # seconds; documented in README (measured far lower)
is($pod2->balance('RA')->{version} > 0, 1, 'pod 2 has RA cached');
is($pod2->balance('RB')->{version} > 0, 1, 'and RB');
my (@delays, $rb_version);
for my $i (1 .. 10) {
    my $r = $t->transfer("xpod-$i", 'RA', 'RB', '0.01');
    my $v = $r->json->{sourceVersion};
    $rb_version = $r->json->{destinationVersion};
    my $t0 = time;
    my $seen;
    while (time - $t0 < 5) {
        my $x = $pod2->balance('RA');
        if ($x && $x->{version} >= $v) { $seen = time - $t0; last }
        sleep 0.002;
    }
    push @delays, $seen // 99;
}
@delays = sort { $a <=> $b } @delays;
cmp_ok($delays[-1], '<', $bound,
       "another pod sees every change within ${bound}s");
diag(sprintf 'cross-pod visibility: median %.1f ms, max %.1f ms',
     1000 * $delays[4], 1000 * $delays[-1]);

# a write batch publishes every account it changed in one message: the
# destination's change reached pod 2 with the source's, into its zone
my $rb2 = RBCS::Test::wait_for(5, sub {
    my $x = $pod2->balance('RB');
    $x && $x->{version} >= $rb_version ? $x : undef;
});
is($rb2 && $rb2->{version}, $rb_version,
   'pod 2 has the destination\'s last version too');
is($rb2 && $rb2->{tier}, 'zone', '... in its zone, by message')
    or diag cache_metrics($pod2), "\n", cache_metrics($t);

# --- eviction from a full zone ------------------------------------------

my $small = RBCS::Test->new(conf => conf(2, 'zone=rbcs_small:32k ttl=2s'));
my %want;      # in cents
for my $i (1 .. 300) {
    my $n = sprintf 'EV-%03d', $i;
    my $r = $small->post_json('/accounts', { accountNumber => $n,
        initialBalance => sprintf('%d.00', $i) });
    $want{$n} = $i * 100 if $r->{status} == 201;
}
is(scalar keys %want, 300, '300 accounts opened against a 32 KiB zone');
for my $i (1 .. 100) {
    my $s = sprintf 'EV-%03d', 1 + ($i * 7) % 300;
    my $d = sprintf 'EV-%03d', 1 + ($i * 13 + 5) % 300;
    next if $s eq $d;
    my $r = $small->transfer("ev-$i", $s, $d, '0.50');
    next unless $r->{status} == 201;
    $want{$s} -= 50;
    $want{$d} += 50;
}
my ($wrong, %etier) = (0);
for my $round (1 .. 2) {
    for my $n (sort keys %want) {
        my $x = $small->balance($n);
        my $w = sprintf '%d.%02d', int($want{$n} / 100), $want{$n} % 100;
        $wrong++ unless $x && $x->{balance} eq $w;
        $etier{ $x ? $x->{tier} : 'error' }++;
    }
}
is($wrong, 0, 'every read of 300 accounts through a full zone is correct');
ok(($etier{zone} // 0) > 0 && ($etier{zone} // 0) < 600,
   'some reads hit the zone, others were evicted and re-read')
    or diag explain \%etier;
{
    my $m = $small->get('/metrics')->{body} // '';
    my ($ev) = $m =~ /^rbcs_cache_evictions_total (\d+)$/m;
    my ($size) = $m =~ /^rbcs_cache_zone_size_bytes (\d+)$/m;
    my ($free) = $m =~ /^rbcs_cache_zone_free_bytes (\d+)$/m;
    ok(($ev // 0) > 0, 'the evictions are counted (' . ($ev // 'none') . ')');
    ok(defined $free && $size && $free < $size / 10,
       'and the zone shows (nearly) no free pages ('
       . ($free // 'none') . ' of ' . ($size // 'none') . ')');
}

# --- reload under load --------------------------------------------------

open_account($t, 'HA', '500.00');
open_account($t, 'HB', '500.00');
my $reloader = fork // die;
if ($reloader == 0) {
    for (1 .. 3) { sleep 0.3; kill 'HUP', $t->master_pid }
    POSIX::_exit(0);
}
@lines = parallel(4, sub {
    my ($k) = @_;
    my @out;
    for my $i (1 .. 30) {
        my $r = $t->transfer("hup-$k-$i", $i % 2 ? 'HA' : 'HB',
                         $i % 2 ? 'HB' : 'HA', '1.00');
        push @out, "BAD transfer $r->{status}" unless $r->{status} == 201;
        my $x = $t->balance('HA');
        push @out, 'BAD read' unless $x;
        sleep 0.01;
    }
    return @out;
});
waitpid($reloader, 0);
is(scalar(@lines), 0, 'transfers and reads during three reloads all succeed')
    or diag join "\n", @lines[0 .. ($#lines > 9 ? 9 : $#lines)];
sleep 0.5;
my $after = $t->balance('HA');
is($after->{tier}, 'zone', 'after the reloads the zone still answers');
is($after->{version},
   $t->balance('HA', '?consistency=strong')->{version},
   'with the current version');
my $sum = 0;
for my $n (qw(HA HB)) {
    my ($x) = $t->balance($n)->{balance} =~ /^(\d+)\.00$/;
    $sum += $x // 0;
}
is($sum, 1000, 'HA + HB still 1000.00');

# the zone itself outlives a reload: T2 went in before it and is still there
# (well within max_age, 2 s, so that the entry is still trusted)
$t->balance('T2', '?consistency=strong');
is($t->balance('T2')->{tier}, 'zone', 'T2 is in the zone');
my @old = $t->worker_pids;
kill 'HUP', $t->master_pid;
my $t0 = time;
sleep 0.1 while time - $t0 < 10 && grep { kill 0, $_ } @old;
my @new = $t->worker_pids;
ok(@new && !grep({ my $o = $_; grep { $_ == $o } @new } @old),
   'after a reload every worker is new');
my $kept = $t->balance('T2');
is($kept->{tier}, 'zone', 'the new workers find T2 in the zone: it was kept');
is($kept->{version}, 7, 'with its version');

done_testing();
