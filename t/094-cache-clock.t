#!/usr/bin/perl
# Cache ages are measured on the monotonic clock.  A pod without Redis
# trusts an entry for ttl (2 s) only; its wall clock is set back an hour
# (libfaketime: only CLOCK_REALTIME moves, as with an NTP step or an
# operator's date) while it holds an entry that another pod has made
# stale.  The entry must still go stale after ttl: an age taken from the
# wall clock would make it an hour younger and serve it for an hour.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use RBCS::Test;

my $lib = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
plan skip_all => "no $lib (Debian package libfaketime; conf/stack.sh deps installs it)"
    unless -f $lib;

# read by the workers too, which run as nobody when the tests run as root:
# in /tmp, not under a checkout that may sit in a directory only root enters
my $clock = "/tmp/rbcs-t094-clock-$$";
sub set_clock {
    my ($spec) = @_;
    open my $fh, '>', "$clock.tmp" or die "$clock.tmp: $!";
    print $fh "$spec\n";
    close $fh;
    chmod 0644, "$clock.tmp";
    rename "$clock.tmp", $clock or die "$clock: $!";
}
set_clock('+0');
END { unlink $clock if $clock }

# pod 1 runs on the clock of $clock (libfaketime, kept for the workers by
# env); neither pod has Redis
my $p1 = RBCS::Test->new(
    env => { LD_PRELOAD => $lib, FAKETIME_TIMESTAMP_FILE => $clock,
             FAKETIME_DONT_FAKE_MONOTONIC => 1, FAKETIME_NO_CACHE => 1 },
    conf => <<'EOF');
${TEST_GLOBALS}
worker_processes 1;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log warn;

env FAKETIME_DONT_FAKE_MONOTONIC;
env FAKETIME_NO_CACHE;
env FAKETIME_TIMESTAMP_FILE;
env LD_PRELOAD;

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

    rbcs_cache_zone zone=rbcs_balances:1m ttl=2s;
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
my $p2 = RBCS::Test->new(pod_of => $p1, conf => <<'EOF');
${TEST_GLOBALS}
worker_processes 1;
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

# "Fri, 04 Dec 2026 17:20:00 GMT" -> epoch seconds
my %MON = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
           Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
sub http_date {
    my ($d, $m, $y, $H, $M, $S) = ($_[0] // '') =~ /(\d+) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d)/
        or return undef;
    return timegm($S, $M, $H, $d, $MON{$m}, $y);
}

sub balance {
    my ($t, $n) = @_;
    my $r = $t->get("/accounts/$n/balance");
    return { status => $r->{status} } unless ($r->{status} // 0) == 200;
    my $j = $r->json;
    $j->{tier} = $r->{headers}{'x-rbcs-cache'};
    $j->{date} = http_date($r->{headers}{date});
    return $j;
}

is($p1->post_json('/accounts', { accountNumber => 'C1', initialBalance => '100.00' })->{status},
   201, 'opened C1');
is($p1->post_json('/accounts', { accountNumber => 'C2' })->{status}, 201, 'opened C2');

my $x = balance($p1, 'C1');
is($x->{balance}, '100.00', 'pod 1 reads C1');
$x = balance($p1, 'C1');
is($x->{tier}, 'zone', '... and holds it in its zone');
cmp_ok(abs($x->{date} - time), '<', 5, 'pod 1\'s wall clock is ours before the step');

# pod 2 moves money; pod 1 hears nothing of it (no Redis)
my $r = $p2->post_json('/accounts/transactions', { transactionId => 'clk-1',
    sourceAccountNumber => 'C1', destinationAccountNumber => 'C2', amount => '10.00' });
is($r->{status}, 201, 'a transfer on pod 2');

set_clock('-1h');
ok(RBCS::Test::wait_for(5, sub { (time - (balance($p1, 'C2')->{date} // time)) > 3000 }),
   'pod 1\'s wall clock is now an hour behind')
    or diag('libfaketime did not move the workers\' clock: Date ' . ($p1->get('/healthz')->{headers}{date} // '?'));

sleep 2.5;   # past ttl on any clock that runs forward

$x = balance($p1, 'C1');
is($x->{balance}, '90.00', 'after ttl pod 1 serves the current C1, not the entry from before');
isnt($x->{tier}, 'zone', '... read again, not from the zone');

# a zone entry made after the step ages normally too
$x = balance($p1, 'C1');
is($x->{tier}, 'zone', 'the new entry is in the zone');
$r = $p2->post_json('/accounts/transactions', { transactionId => 'clk-2',
    sourceAccountNumber => 'C1', destinationAccountNumber => 'C2', amount => '5.00' });
is($r->{status}, 201, 'another transfer on pod 2');
set_clock('+0');   # and the clock jumps forward again
sleep 2.5;
is(balance($p1, 'C1')->{balance}, '85.00', 'after the forward step and ttl: current again');

$p1->stop;
$p2->stop;
done_testing();
