#!/usr/bin/perl
# The worker never blocks on the database: with mariadbd frozen (SIGSTOP)
# /healthz still answers at once and a transfer fails with 503 within the
# configured query timeout; /readyz tells the truth; after SIGCONT, and
# after a kill and restart, the service recovers by itself.  Uses a private
# mariadbd so that freezing it does not disturb other tests.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $m = RBCS::Test::private_mariadb();

my $t = RBCS::Test->new(
    mysql_port => $m->port,
    # the pool says what happened to its connections at warn level
    allow_log  => [ qr/rbcs: (mysql|idle mysql)/ ],
    conf       => <<'EOF');
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
    rbcs_mysql_connect_timeout 1s;
    rbcs_mysql_query_timeout 1s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 1s;

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

sub transfer {
    my ($id, $amount) = @_;
    return $t->post_json('/accounts/transactions', {
        transactionId => $id, sourceAccountNumber => 'A',
        destinationAccountNumber => 'B', amount => $amount });
}

sub timed {
    my ($code) = @_;
    my $t0 = time;
    my $r = $code->();
    return ($r, time - $t0);
}

sub wait_ready {
    my ($limit) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        return time - $t0 if $t->get('/readyz')->{status} == 200;
        sleep 0.1;
    }
    return undef;
}

is($t->post_json('/accounts', { accountNumber => 'A',
                                initialBalance => '100.00' })->{status},
   201, 'account A');
is($t->post_json('/accounts', { accountNumber => 'B' })->{status}, 201,
   'account B');
is(transfer('t-0', '1.00')->{status}, 201, 'a transfer before any fault');
is($t->get('/readyz')->{status}, 200, 'ready while the database is up');

# --- frozen database ----------------------------------------------------

$m->signal('STOP');

my ($r, $dt) = timed(sub { $t->get('/healthz') });
is($r->{status}, 200, 'frozen database: /healthz answers');
cmp_ok($dt, '<', 0.1, 'frozen database: /healthz within 100 ms');

($r, $dt) = timed(sub { transfer('t-frozen', '2.00') });
is($r->{status}, 503, 'frozen database: a transfer answers 503');
is($r->{headers}{'retry-after'}, '1', '503 carries Retry-After');
is(eval { $r->json->{code} }, 'unavailable', 'problem code unavailable');
like($r->{headers}{'content-type'}, qr{^application/problem\+json},
     '503 is problem details');
cmp_ok($dt, '<', 1.0 + 0.5,
       'the transfer fails within its query timeout (1 s) and a margin');

($r, $dt) = timed(sub { $t->get('/healthz') });
cmp_ok($dt, '<', 0.1, '/healthz still within 100 ms after the timeout');

($r, $dt) = timed(sub { $t->get('/readyz') });
is($r->{status}, 503, 'frozen database: /readyz answers 503');
cmp_ok($dt, '<', 1.5, '/readyz does not hang either');

($r, $dt) = timed(sub { $t->get('/accounts/A/balance') });
is($r->{status}, 200, 'frozen database: cached balances are still served');
like($r->{headers}{'x-rbcs-cache'} // '', qr/^zone(-stale)?$/,
     'from the zone');
is(eval { $r->json->{balance} }, '99.00', 'the balance this pod last knew');
cmp_ok($dt, '<', 1.5, 'within the timeouts');

($r, $dt) = timed(sub { $t->get('/accounts/A/balance?consistency=strong') });
is($r->{status}, 503, 'frozen database: a strong read answers 503');
cmp_ok($dt, '<', 1.5, 'within the timeouts');

$m->signal('CONT');

my $rec = wait_ready(15);
ok(defined $rec, 'after SIGCONT the service is ready again by itself');
diag(sprintf 'recovered %.2f s after SIGCONT', $rec // -1);

# The frozen transfer's outcome was unknown to the client: a retry with the
# same id is safe and applies it at most once.
$r = transfer('t-frozen', '2.00');
like($r->{status}, qr/^20[01]$/, 'retrying the frozen transfer succeeds');
is($t->get('/accounts/A/balance')->json->{balance}, '97.00',
   'the frozen transfer is applied exactly once');

# --- killed and restarted database --------------------------------------

$m->signal('KILL');          # returns once mariadbd is gone

($r, $dt) = timed(sub { transfer('t-killed', '3.00') });
is($r->{status}, 503, 'killed database: a transfer answers 503');
cmp_ok($dt, '<', 1.5, 'at once, not after a hang');

($r, $dt) = timed(sub { $t->get('/healthz') });
cmp_ok($dt, '<', 0.1, 'killed database: /healthz within 100 ms');
is($t->get('/readyz')->{status}, 503, 'killed database: not ready');

$m->start;

$rec = wait_ready(15);
ok(defined $rec, 'after a restart the service is ready again by itself');
diag(sprintf 'recovered %.2f s after the restart', $rec // -1);

$r = transfer('t-killed', '3.00');
like($r->{status}, qr/^20[01]$/, 'the transfer refused while down now goes');
is($t->get('/accounts/A/balance')->json->{balance}, '94.00',
   'balance after recovery');

# Many requests at once while the database is frozen: each fails within
# the timeouts, none hangs.
$m->signal('STOP');
my @pids;
my $t0 = time;
for my $k (1 .. 20) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $x = transfer("t-burst-$k", '0.01');
        POSIX::_exit($x->{status} == 503 ? 0 : 1);
    }
    push @pids, $pid;
}
my $bad = 0;
for (@pids) { waitpid($_, 0); $bad++ if $? != 0 }
my $burst = time - $t0;
$m->signal('CONT');
is($bad, 0, '20 concurrent transfers against a frozen database all get 503');
cmp_ok($burst, '<', 1.0 + 1.0 + 1.5,
       'within the queue and query timeouts');
ok(defined wait_ready(15), 'and the service recovers');

done_testing();
