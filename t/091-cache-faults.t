#!/usr/bin/perl
# The cache under faults, while transfers and reads keep going on two pods:
# Redis killed, frozen, and restarted from a stale snapshot must cause no
# client error and no read older than what the pod acknowledged; a worker
# killed again and again never wedges the others or serves a torn entry.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);
my @ACC = map { "F$_" } 1 .. 4;


# Clients that transfer among @ACC and read back, until $stop exists.
# A client retries a request whose connection broke, with the same id, as
# a real client would. Returns the problems seen.
sub load {
    my ($pods, $clients, $stop) = @_;
    my @pids;
    for my $k (0 .. $clients - 1) {
        my $pid = fork // die;
        if ($pid == 0) {
            srand($k + 1);
            my $t = $pods->[$k % @$pods];
            my (@bad, %last);
            my $i = 0;
            while (!-e $stop) {
                $i++;
                my $s = $ACC[int rand @ACC];
                my $d;
                do { $d = $ACC[int rand @ACC] } while $d eq $s;
                # a connection broken by a killed worker gives no status:
                # retry with the same id; then a 200 replay is the answer
                my ($r, $retried);
                for my $try (1 .. 20) {
                    $r = eval { $t->transfer("ld-$k-$i", $s, $d, '0.01') };
                    last if $r && $r->{status};
                    $retried = 1;
                    sleep 0.05;
                }
                if (!$r || !$r->{status}
                    || !($r->{status} == 201
                         || ($retried && $r->{status} == 200)))
                {
                    push @bad, "transfer ld-$k-$i: "
                        . ($r ? "$r->{status} $r->{body}" : 'no answer');
                    next;
                }
                my $v = $r->json->{sourceVersion};
                my $x;
                for (1 .. 20) {
                    $x = $t->balance($s);
                    last if $x;
                    sleep 0.05;
                }
                if (!$x) {
                    push @bad, "read $s: no answer";
                    next;
                }
                push @bad, "read $s version $x->{version} < acknowledged $v"
                    . " ($x->{tier})" if $x->{version} < $v;
                push @bad, "read $s went back from $last{$s} to "
                    . "$x->{version} ($x->{tier})"
                    if $x->{version} < ($last{$s} // 0);
                $last{$s} = $x->{version};
            }
            open my $fh, '>', "$dir/load.$k" or POSIX::_exit(1);
            print $fh map { "$_\n" } @bad;
            print $fh "DONE $i\n";
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return sub {
        open my $fh, '>', $stop or die;
        close $fh;
        waitpid($_, 0) for @pids;
        my (@bad, $n);
        for my $k (0 .. $clients - 1) {
            open my $fh, '<', "$dir/load.$k" or do {
                push @bad, "client $k left no report";
                next;
            };
            for (<$fh>) {
                chomp;
                if (/^DONE (\d+)/) { $n += $1 } else { push @bad, $_ }
            }
        }
        unlink $stop;
        return ($n, @bad);
    };
}

sub agree_with_database {
    my ($name, @pods) = @_;
    my $wrong = 0;
    for my $t (@pods) {
        for my $n (@ACC) {
            my $strong = $t->balance($n, '?consistency=strong');
            my $x = $t->balance($n);
            $wrong++ unless $strong && $x
                && $x->{version} == $strong->{version}
                && $x->{balance} eq $strong->{balance};
        }
    }
    is($wrong, 0, "$name: every pod's reads equal the database");
}

# --- Redis killed, frozen, restarted from a stale snapshot --------------

my $conf = <<'EOF';
${TEST_GLOBALS}
worker_processes 2;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log warn;

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
    rbcs_mysql_pool_size 8;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 5s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;

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
    }
}
EOF

my $redis = RBCS::Test::private_redis();
my @quiet = (allow_log => [ qr/redis/i ]);
my $t = RBCS::Test->new(redis_port => $redis->port, @quiet, conf => $conf);
my $pod2 = RBCS::Test->new(redis_port => $redis->port,
                           pod_of => $t, @quiet, conf => $conf);

for my $n (@ACC) {
    is($t->post_json('/accounts', { accountNumber => $n,
                                    initialBalance => '1000.00' })->{status},
       201, "opened $n");
}

my $finish = load([ $t, $pod2 ], 6, "$dir/stop-redis");

sleep 0.7;
$redis->signal('KILL');                 # killed
sleep 0.7;
$redis->start;                          # back, empty
sleep 0.7;
$redis->signal('STOP');                 # frozen
sleep 1.0;
$redis->signal('CONT');
sleep 0.7;
$redis->save;                           # a snapshot of now ...
sleep 1.0;                              # ... that goes stale
$redis->signal('KILL');
$redis->start;                          # restarted from the stale snapshot
sleep 1.5;

my ($n, @bad) = $finish->();
ok($n > 100, "clients made $n transfers with reads during the Redis faults");
is(scalar @bad, 0, 'no client error, no read older than an acknowledged '
   . 'transfer, no version going backwards')
    or diag join "\n", @bad[0 .. ($#bad > 14 ? 14 : $#bad)];

# changes made while the subscription was down may reach the other pod
# only when its entries stop being trusted: after ttl (2 s)
sleep 2.2;
agree_with_database('after the Redis faults', $t, $pod2);

my $total = 0;
for my $x (map { $t->balance($_, '?consistency=strong') } @ACC) {
    my ($i, $f) = $x->{balance} =~ /^(\d+)\.(\d\d)$/;
    $total += $i * 100 + $f;
}
is($total, 4000_00, 'the total is conserved');
like($t->error_log . $pod2->error_log, qr/\[warn\].*redis/i,
     'the Redis outage was logged as a warning');

# A change made while the subscription is down never reaches the other
# pod's zone by message: its entry stops being trusted after ttl (2 s).
my $x = $pod2->balance('F1');
ok($x, 'pod 2 has F1');
$redis->signal('STOP');
sleep 1.5;                         # the subscription is seen down
my $r = $t->transfer('while-down', 'F1', 'F2', '1.00');
is($r->{status}, 201, 'a transfer on pod 1 while Redis is frozen');
my $v = $r->json->{sourceVersion};
sleep 2.2;
$x = $pod2->balance('F1');
is($x && $x->{version}, $v,
   'after ttl pod 2 no longer trusts its entry and reads the change');
$redis->signal('CONT');

$t->stop;
$pod2->stop;
$redis->stop;

# --- workers killed under load -------------------------------------------

my $k = RBCS::Test->new(conf => $conf, @quiet,
    allow_log => [ qr/redis/i, qr/exited on signal 9/,
                   qr/cache zone emptied/,
                   # a worker killed holding the zone's lock: the master
                   # frees it (rarer the faster the worker; make
                   # test-sanitize's are slow)
                   qr/shared memory zone "rbcs_balances" was locked by/ ]);
for my $n (@ACC) {
    $k->post_json('/accounts', { accountNumber => $n,
                                 initialBalance => '1000.00' });
}

$finish = load([ $k ], 6, "$dir/stop-kill");
my $kills = 0;
for (1 .. 12) {
    sleep 0.25;
    my @w = $k->worker_pids;
    next unless @w;
    kill 'KILL', $w[int rand @w];
    $kills++;
}
sleep 0.5;
($n, @bad) = $finish->();
ok($kills >= 10, "$kills workers killed while $n transfers and reads ran");
is(scalar @bad, 0, 'every transfer and read completed, none stale')
    or diag join "\n", @bad[0 .. ($#bad > 14 ? 14 : $#bad)];

my $t0 = time;
my $h = $k->get('/healthz');
is($h->{status}, 200, 'the service answers after the kills');
cmp_ok(time - $t0, '<', 0.5, 'at once: no worker is wedged');
agree_with_database('after the kills', $k);

done_testing();
