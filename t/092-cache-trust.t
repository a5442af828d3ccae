#!/usr/bin/perl
# How long a cached balance is trusted, on two pods of one deployment.
# Healthy (both pods publishing, both subscribed): an entry stays trusted
# without being read again, and a change on one pod reaches the other at
# once.  Pod 1 cut off from Redis (its Redis traffic goes through a relay
# that is frozen): its transfers still commit, move the cache generation
# on in the same transaction, and pod 2 stops trusting its entry within
# the documented bound (docs/architecture.md, "Cache trust").  A gap in a
# writer's message numbers makes a pod refill.  A Redis value written
# before the generation moved is not used.  A balance read waits for a
# frozen database at most rbcs_balance_read_timeout (1 s).

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $redis = RBCS::Test::private_redis();

# --- a relay between pod 1 and Redis, frozen to cut pod 1 off -----------

my $relay_sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => 0, Listen => 64, ReuseAddr => 1, Proto => 'tcp')
    or die "relay: $!";
my $relay_port = $relay_sock->sockport;
my $relay = fork // die "fork: $!";
if ($relay == 0) {
    relay($relay_sock, $redis->port);
    POSIX::_exit(0);
}
close $relay_sock;
END { if ($relay) { local $?; kill 'CONT', $relay; kill 'TERM', $relay; waitpid($relay, 0) } }

my @quiet = (allow_log => [ qr/redis|cache generation|changes may have been missed|unexpected message/i ]);
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
my $p1 = RBCS::Test->new(redis_port => $relay_port, @quiet, conf => $conf);
my $p2 = RBCS::Test->new(redis_port => $redis->port,
                         pod_of => $p1, @quiet, conf => $conf);


# wait until pod's read of $n has version $v; seconds taken, or undef
sub visible {
    my ($t, $n, $v, $limit) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        my $x = $t->balance($n);
        return time - $t0 if $x && $x->{version} == $v;
        sleep 0.02;
    }
    return undef;
}

for my $n (qw(H1 H2)) {
    is($p1->post_json('/accounts', { accountNumber => $n,
                                     initialBalance => '100.00' })->{status},
       201, "opened $n");
}

# both pods subscribed and reading the generation
ok(RBCS::Test::wait_for(10, sub {
       ($p1->metric('rbcs_redis_connected') // 0) >= 2
           && ($p2->metric('rbcs_redis_connected') // 0) >= 2 }),
   'both pods are connected to Redis');

# --- healthy: trusted without a timer, changes seen at once -------------

my $x = $p2->balance('H1');
is($x && $x->{version}, 1, 'pod 2 reads H1');
my $db0 = $p2->metric('rbcs_database_balance_reads_total');
my @tiers;
for (1 .. 8) {                      # 4 s: twice ttl, four polls
    sleep 0.5;
    my $y = $p2->balance('H1');
    push @tiers, $y ? $y->{tier} : 'error';
}
is_deeply(\@tiers, [ ('zone') x 8 ],
          'healthy: pod 2 answers H1 from its zone for 4 s (no refetch)');
is($p2->metric('rbcs_database_balance_reads_total'), $db0,
   'healthy: no database read meanwhile');

my $r = $p1->transfer('ok-1', 'H1', 'H2', '1.00');
is($r->{status}, 201, 'a transfer on pod 1');
my $dt = visible($p2, 'H1', $r->json->{sourceVersion}, 1);
ok(defined $dt, 'healthy: pod 2 sees the change');
cmp_ok($dt // 9, '<', 0.1, 'healthy: within 100 ms');
diag(sprintf 'healthy cross-pod visibility %.1f ms', 1000 * ($dt // 9));

# --- pod 1 cut off from Redis ---------------------------------------------

my $dbh = $p1->dbh;
my ($gen0) = $dbh->selectrow_array(
    'SELECT COALESCE(SUM(generation), 0) FROM cache_generation');

$x = $p2->balance('H1');
is($x && $x->{tier}, 'zone', 'pod 2 trusts its entry for H1');

sub generation {
    my ($g) = $dbh->selectrow_array(
        'SELECT COALESCE(SUM(generation), 0) FROM cache_generation');
    return $g;
}

kill 'STOP', $relay;
sleep 0.3;

# pod 1's idle Redis connection looks fine: its put is sent, and lost
$r = $p1->transfer('cut-1', 'H1', 'H2', '2.00');
is($r->{status}, 201, 'pod 1 still commits while cut off from Redis');
my $v = $r->json->{sourceVersion};
ok(RBCS::Test::wait_for(1.5, sub { generation() > $gen0 }),
   'the lost put moved the cache generation on (its own query)');

$dt = visible($p2, 'H1', $v, 5);
ok(defined $dt, 'pod 2 sees the change pod 1 could not publish');
cmp_ok($dt // 9, '<', 2.5, 'within the documented bound (1.3 s) and a margin');
diag(sprintf 'unpublished change seen by pod 2 after %.2f s', $dt // -1);

# now pod 1 knows Redis is away: the next transfer moves it itself
ok(RBCS::Test::wait_for(5, sub {
       ($p1->metric('rbcs_redis_connected') // 2) < 2 }),
   'pod 1 sees Redis gone');
my $gen1 = generation();
$r = $p1->transfer('cut-2', 'H1', 'H2', '3.00');
is($r->{status}, 201, 'pod 1 commits again');
$v = $r->json->{sourceVersion};
cmp_ok(generation(), '>', $gen1,
       'that transfer moved the cache generation on in its transaction');
$dt = visible($p2, 'H1', $v, 5);
ok(defined $dt, 'pod 2 sees that change too');
cmp_ok($dt // 9, '<', 2.5, 'within the bound');
diag(sprintf 'second unpublished change seen by pod 2 after %.2f s', $dt // -1);
cmp_ok($p2->metric('rbcs_cache_generation_changes_total') // 0, '>=', 1,
       'pod 2 counted the generation move');

# pod 2 answers H1 from the database, not from the old Redis value
$x = $p2->balance('H1');
is($x && $x->{version}, $v, 'pod 2 keeps the new version');

kill 'CONT', $relay;
ok(RBCS::Test::wait_for(10, sub {
       ($p1->metric('rbcs_redis_connected') // 0) >= 2 }),
   'pod 1 reconnects to Redis');

# --- a Redis value from before the move is not used ------------------------

# H2 in Redis still says what pod 1 could not update; pod 2 has it only
# from before the move, so it must go to the database for H2
my $strong = $p2->balance('H2', '?consistency=strong');
$x = $p2->balance('H2');
is($x && $x->{version}, $strong->{version}, 'pod 2 reads the current H2');
isnt($x && $x->{tier}, 'redis', 'not the stale value Redis holds');

# --- a gap in a writer's numbers -----------------------------------------

sleep 0.3;
$x = $p2->balance('H2');
is($x && $x->{tier}, 'zone', 'pod 2 trusts H2 again');
my $chan = $p1->redis_prefix . 'balances';
my $pfx = $p1->redis_prefix;
$redis->cli('PUBLISH', $chan, RBCS::Test::redis_header($pfx, 'elsewhere/0/1', 1, 0));
$redis->cli('PUBLISH', $chan, RBCS::Test::redis_header($pfx, 'elsewhere/0/1', 3, 0));
sleep 0.2;
$x = $p2->balance('H2');
isnt($x && $x->{tier}, 'zone', 'after a gap pod 2 refills H2');
like($p2->error_log, qr/changes may have been missed/,
     'the gap is logged');

# a message whose body cannot be read is as good as a missing one
sleep 0.3;
$p2->balance('H2');
$x = $p2->balance('H2');
is($x && $x->{tier}, 'zone', 'pod 2 trusts H2 again');
$redis->cli('PUBLISH', $chan,
            RBCS::Test::redis_header($pfx, 'elsewhere/0/2', 1, 0) . "\nnot a balance");
sleep 0.2;
$x = $p2->balance('H2');
isnt($x && $x->{tier}, 'zone', 'after an unreadable message pod 2 refills H2');

$p1->stop;
$p2->stop;

# --- a frozen database: a read waits at most the read timeout ------------

my $m = RBCS::Test::private_mariadb();
# no Redis: a miss of the zone goes to the database
my $t = RBCS::Test->new(mysql_port => $m->port,
    allow_log => [ qr/rbcs: (mysql|idle mysql)|past its deadline/ ],
    conf => <<'EOF');
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

    rbcs_cache_zone zone=rbcs_balances:1m ttl=1s;
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
is($t->post_json('/accounts', { accountNumber => 'F1',
                                initialBalance => '5.00' })->{status},
   201, 'opened F1');
is($t->post_json('/accounts', { accountNumber => 'F2' })->{status}, 201,
   'opened F2');
$x = $t->balance('F1');
is($x && $x->{balance}, '5.00', 'F1 read once');

$m->signal('STOP');
my $t0 = time;
$r = $t->get('/accounts/F2/balance?consistency=strong');
my $took = time - $t0;
is($r->{status}, 503, 'frozen database: a strong read answers 503');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After');
cmp_ok($took, '>=', 0.9, 'after the read timeout');
cmp_ok($took, '<', 1.8, 'not the query timeout (5 s)');

sleep 1.2;                          # F1's entry is past ttl: not trusted
$t0 = time;
$x = $t->balance('F1');
$took = time - $t0;
is($x && $x->{balance}, '5.00', 'frozen database: the zone\'s F1 is served');
is($x && $x->{tier}, 'zone-stale', 'marked zone-stale');
cmp_ok($took, '<', 1.8, 'within the read timeout and a margin');
$m->signal('CONT');

$t->stop;
$m->stop;
$redis->stop;
done_testing();

# A TCP relay: every connection to $l is forwarded to $upstream.
sub relay {
    my ($l, $upstream) = @_;
    my $sel = IO::Select->new($l);
    my %peer;
    my $deadline = time + 300;
    while (time < $deadline) {
        for my $fh ($sel->can_read(0.05)) {
            if ($fh == $l) {
                my $c = $l->accept or next;
                my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                    PeerPort => $upstream, Proto => 'tcp') or next;
                $peer{$c} = $u;
                $peer{$u} = $c;
                $sel->add($c, $u);
                next;
            }
            my $to = $peer{$fh} or next;
            my $n = sysread($fh, my $buf, 65536);
            if (!$n) {
                $sel->remove($fh, $to);
                delete @peer{$fh, $to};
                close $fh;
                close $to;
                next;
            }
            syswrite($to, $buf);
        }
    }
}
