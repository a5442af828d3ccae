#!/usr/bin/perl
# GET /metrics: Prometheus text that promtool accepts, aggregated across
# workers from shared memory, with the figures an operator reads (requests
# by route and status, transfer outcomes, latency histograms, cache tiers,
# the MariaDB pool, group-commit batch sizes, Redis) -- and a real
# Prometheus server that scrapes it, sees the target up and a counter rise.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $promtool = -x '/usr/bin/promtool' ? '/usr/bin/promtool' : undef;
my $prometheus = -x '/usr/bin/prometheus' ? '/usr/bin/prometheus' : undef;

my $t = RBCS::Test->new(conf => <<'EOF');
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

sub metrics {
    my $r = $t->get('/metrics');
    return $r;
}

sub value {
    my ($text, $series) = @_;
    for (split /\n/, $text) {
        next if /^#/;
        my ($name, $v) = /^(\S+)\s+(\S+)$/ or next;
        return $v if $name eq $series;
    }
    return undef;
}

my $r = metrics();
is($r->{status}, 200, 'GET /metrics answers');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'in the Prometheus text format');

# some traffic of every kind
$t->post_json('/accounts', { accountNumber => 'M1',
                             initialBalance => '100.00' });
$t->post_json('/accounts', { accountNumber => 'M2' });
for my $i (1 .. 5) {
    $t->post_json('/accounts/transactions', {
        transactionId => "m-$i", sourceAccountNumber => 'M1',
        destinationAccountNumber => 'M2', amount => '1.00' });
}
$t->post_json('/accounts/transactions', {
    transactionId => 'm-1', sourceAccountNumber => 'M1',
    destinationAccountNumber => 'M2', amount => '1.00' });     # replay
$t->post_json('/accounts/transactions', {
    transactionId => 'm-poor', sourceAccountNumber => 'M2',
    destinationAccountNumber => 'M1', amount => '999.00' });   # 422
$t->post_json('/accounts/transactions', {
    transactionId => 'm-bad', sourceAccountNumber => 'M1',
    destinationAccountNumber => 'M2', amount => '-1' });       # 400
$t->get('/accounts/M1/balance') for 1 .. 3;
$t->get('/accounts/M1/balance?consistency=strong');
$t->get('/accounts/NOPE');

# the gauges below describe the pool at rest: every connection up (the
# workers connect at start, in the background) and none still busy with
# the last request's query; a request is counted in its log phase, just
# after its answer went out: on a busy machine a worker may get there a
# little after the client has read the answer
RBCS::Test::wait_for(10, sub {
    my $x = metrics()->{body};
    (value($x, 'rbcs_mysql_connections{state="idle"}') // 0) == 16
        && (value($x, 'rbcs_redis_connected') // 0) == 2
        && (value($x, 'rbcs_transfer_duration_seconds_count') // 0) >= 8
        && (value($x, 'rbcs_balance_read_duration_seconds_count') // 0) >= 4
        && (value($x, 'rbcs_redis_subscribed') // 0) == 1
        && (value($x, 'rbcs_redis_publishes_total') // 0) >= 5;
});
my $text = metrics()->{body};

SKIP: {
    skip 'promtool not installed (Debian package prometheus)', 1
        unless $promtool;
    my $dir = tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/m.txt" or die;
    print $fh $text;
    close $fh;
    my $out = `$promtool check metrics < $dir/m.txt 2>&1`;
    is($?, 0, 'promtool check metrics accepts the exposition')
        or diag $out;
}

is(value($text, 'rbcs_http_requests_total{route="transfer",status="201"}'),
   5, 'requests by route and status: 5 transfers answered 201');
is(value($text, 'rbcs_http_requests_total{route="account",status="404"}'),
   1, 'an unknown account answered 404');
is(value($text, 'rbcs_transfers_total{outcome="completed"}'), 5,
   'transfer outcomes: 5 completed');
is(value($text, 'rbcs_transfers_total{outcome="replayed"}'), 1,
   '1 replayed');
is(value($text, 'rbcs_transfers_total{outcome="insufficient_funds"}'), 1,
   '1 insufficient_funds');
is(value($text, 'rbcs_transfers_total{outcome="invalid_amount"}'), 1,
   '1 invalid_amount');
is(value($text, 'rbcs_transfer_duration_seconds_count'), 8,
   'every transfer request is in the latency histogram');
is(value($text, 'rbcs_transfer_duration_seconds_bucket{le="+Inf"}'), 8,
   'whose +Inf bucket counts them all');
is(value($text, 'rbcs_balance_read_duration_seconds_count'), 4,
   'balance reads in their histogram');
is(value($text, 'rbcs_cache_hits_total{tier="zone"}'), 3,
   'three reads answered by the zone');
is(value($text, 'rbcs_database_balance_reads_total'), 1,
   'one (strong) read by the database');
ok(value($text, 'rbcs_mysql_batch_size_count') >= 7,
   'every transfer transaction is in the batch-size histogram');
is(value($text, 'rbcs_mysql_connections{state="idle"}'), 16,
   'the pool: 2 workers x 8 idle connections');
is(value($text, 'rbcs_mysql_waiting'), 0, 'nothing waiting');
is(value($text, 'rbcs_redis_connected'), 2, 'both workers reach Redis');
is(value($text, 'rbcs_workers'), 2, 'two workers');
is(value($text, 'rbcs_write_queue_limit'), 2 * 1024,
   'the write queues take 2 workers x rbcs_mysql_queue_size');
is(value($text, 'rbcs_redis_subscribed'), 1,
   'the subscription to the other pods\' changes is up');
ok(value($text, 'rbcs_redis_publishes_total') >= 5,
   'every committed transfer\'s balances were published through Redis');
my $zone = value($text, 'rbcs_cache_zone_size_bytes') // 0;
ok($zone > 15 * 1024 * 1024 && $zone <= 16 * 1024 * 1024,
   "the cache zone's pages: most of its 16m ($zone)");
my $free = value($text, 'rbcs_cache_zone_free_bytes') // -1;
ok($free > $zone / 2 && $free < $zone,
   "a few of them in use, the rest free ($free)");
is(value($text, 'rbcs_cache_zone_emptied_total'), 0, 'the zone never emptied');
is(value($text, 'rbcs_cache_evictions_total'), 0, 'nothing evicted');
is(value($text, 'rbcs_hold_expiry_lag_seconds'), '0.000',
   'no hold past its expiresAt');

# the counters are the pod's, whichever worker answers
my %seen;
for (1 .. 20) {
    my $x = metrics()->{body};
    $seen{ value($x, 'rbcs_transfers_total{outcome="completed"}') }++;
}
is_deeply([ keys %seen ], [ 5 ],
          'every worker reports the same pod-wide counters');

# a reload keeps the counters ($t->reload returns once the new workers
# are up and the old ones gone)
$t->reload;
ok(value(metrics()->{body}, 'rbcs_transfers_total{outcome="completed"}')
   >= 5, 'counters survive a reload');

# --- a hold past its expiresAt, not released -----------------------------

# its expiry waits for the lock on its source account, which a session of
# ours holds: the oldest overdue hold grows older on /metrics, whichever
# worker answers, and is gone once released
my $h = $t->post_json('/accounts/transactions', {
    transactionId => 'm-hold', sourceAccountNumber => 'M1',
    destinationAccountNumber => 'M2', amount => '1.00',
    hold => JSON::PP::true, expiresIn => 1 });
is($h->{status}, 201, 'a hold that expires in a second');
{
    my $dbh = $t->dbh;
    $dbh->begin_work;
    $dbh->selectall_arrayref(q{SELECT balance FROM accounts
                                WHERE account_number = 'M1' FOR UPDATE});
    my $lag = 0;
    RBCS::Test::wait_for(20, sub {
        $lag = value(metrics()->{body}, 'rbcs_hold_expiry_lag_seconds') // 0;
        $lag >= 2.5;
    });
    ok($lag >= 2.5, "its lag grows while it waits ($lag s)");
    $dbh->commit;
}
RBCS::Test::wait_for(20, sub {
    (value(metrics()->{body}, 'rbcs_hold_expiry_lag_seconds') // 1) == 0;
});
is(value(metrics()->{body}, 'rbcs_hold_expiry_lag_seconds'), '0.000',
   'and is 0 again once the hold is released');
is($t->dbh->selectrow_array(q{SELECT status FROM transactions
                               WHERE transaction_id = 'm-hold'}),
   'EXPIRED', 'by its expiry');

# --- a real Prometheus scrapes it ----------------------------------------

SKIP: {
    skip 'prometheus not installed (Debian package prometheus)', 4
        unless $prometheus;

    my $dir = tempdir(CLEANUP => 1);
    # prometheus binds it itself; the queries below wait for it
    my $pport = RBCS::Test::free_port();
    my $pid = RBCS::Test::prometheus($prometheus, $dir, $pport, <<"YML");
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: rbcs
    static_configs:
      - targets: ['127.0.0.1:${\ $t->port }']
YML

    my $query = sub {   # the first sample's value, or undef
        my $j = RBCS::Test::prometheus_api($pport, 'query', $_[0]) or return undef;
        my $res = $j->{data}{result} or return undef;
        return @$res ? $res->[0]{value}[1] : undef;
    };

    # up when it listens (it may also have lost its port, or not start)
    ok(RBCS::Test::wait_port($pport, 30), "Prometheus listens on 127.0.0.1:$pport")
        or diag(-s "$dir/prometheus.log"
                ? do { local (@ARGV, $/) = ("$dir/prometheus.log"); <> }
                : 'no prometheus.log');
    my ($up, $first, $later);
    my $t0 = time;
    while (time - $t0 < 30) {
        $up = $query->('up{job="rbcs"}');
        $first = $query->('rbcs_transfers_total{outcome="completed"}');
        last if defined $up && $up == 1 && defined $first;
        sleep 0.5;
    }
    is($up, 1, 'Prometheus scrapes the target: up == 1');

    for my $i (6 .. 8) {
        $t->post_json('/accounts/transactions', {
            transactionId => "m-$i", sourceAccountNumber => 'M1',
            destinationAccountNumber => 'M2', amount => '1.00' });
    }
    $t0 = time;
    while (time - $t0 < 20) {
        $later = $query->('rbcs_transfers_total{outcome="completed"}');
        last if defined $later && defined $first && $later > $first;
        sleep 0.5;
    }
    ok(defined $first && defined $later && $later > $first,
       'and sees the completed-transfers counter rise')
        or diag "first " . ($first // 'undef') . ', later '
              . ($later // 'undef');
    my $rate = $query->('rate(rbcs_http_requests_total[1m])');
    ok(defined $rate, 'PromQL over the scraped series works');

    kill 'TERM', $pid;
    waitpid($pid, 0);
}

done_testing();
