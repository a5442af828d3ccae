#!/usr/bin/perl
# A database that answers rows of another shape than the module asked for
# (a module against a schema it was not built for, a proxy that mangles
# results) gets 500 and an alert, never a crashed worker.  MariaDB itself
# answers the module's named-column queries with exactly those columns or
# an error, so the server here is a fake: just enough of the MySQL client
# protocol (handshake, OK, text result sets) to answer every SELECT with
# one column.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);
use RBCS::Test;

# --- the fake server ------------------------------------------------------

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 64, ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
my $fake_port = $listen->sockport;

my $fake = fork // die "fork: $!";
if ($fake == 0) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $listen->accept) {
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            close $listen;
            serve($c);
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}
close $listen;
END { if ($fake) { local $?; kill 'TERM', $fake; waitpid($fake, 0) } }

sub packet {   # payload, sequence id
    my ($c, $payload, $seq) = @_;
    my $len = length $payload;
    print {$c} pack('C3', $len & 0xff, ($len >> 8) & 0xff, $len >> 16)
        . chr($seq & 0xff) . $payload;
}

sub read_packet {
    my ($c) = @_;
    my $head = '';
    while (length $head < 4) {
        my $n = sysread($c, $head, 4 - length $head, length $head);
        return undef unless $n;
    }
    my ($a, $b, $d, $seq) = unpack('C4', $head);
    my $len = $a | ($b << 8) | ($d << 16);
    my $body = '';
    while (length $body < $len) {
        my $n = sysread($c, $body, $len - length $body, length $body);
        return undef unless $n;
    }
    return ($body, $seq);
}

sub lenenc_str { my ($s) = @_; return chr(length $s) . $s }   # short strings only

use constant {
    STATUS_AUTOCOMMIT => 0x0002,
    MORE_RESULTS      => 0x0008,
};

sub ok_packet {
    my ($status) = @_;
    return "\x00\x00\x00" . pack('v v', $status, 0);
}

sub eof_packet {
    my ($status) = @_;
    return "\xfe" . pack('v v', 0, $status);
}

sub serve {
    my ($c) = @_;
    binmode $c;
    $c->autoflush(1);
    # Protocol::HandshakeV10, mysql_native_password, no TLS, no DEPRECATE_EOF
    my $caps = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000
             | 0x10000 | 0x20000 | 0x40000 | 0x80000;
    packet($c, "\x0a" . "5.5.5-10.11.0-MariaDB-fake\0" . pack('V', 7)
        . 'abcdefgh' . "\0" . pack('v', $caps & 0xffff) . chr(45)
        . pack('v', STATUS_AUTOCOMMIT) . pack('v', $caps >> 16) . chr(21)
        . ("\0" x 10) . 'ijklmnopqrst' . "\0" . "mysql_native_password\0", 0);
    my ($resp, $seq) = read_packet($c) or return;
    packet($c, ok_packet(STATUS_AUTOCOMMIT), $seq + 1);   # any password
    while (1) {
        my ($cmd) = read_packet($c) or return;
        my $op = ord $cmd;
        return if $op == 0x01;                             # COM_QUIT
        if ($op != 0x03) {                                 # COM_PING and the like
            packet($c, ok_packet(STATUS_AUTOCOMMIT), 1);
            next;
        }
        my @stmts = grep { /\S/ } split /;/, substr($cmd, 1);
        @stmts = ('') unless @stmts;
        my $s = 1;
        for my $i (0 .. $#stmts) {
            my $status = STATUS_AUTOCOMMIT | ($i < $#stmts ? MORE_RESULTS : 0);
            if ($stmts[$i] !~ /^\s*\(?\s*SELECT\b/i) {
                packet($c, ok_packet($status), $s++);
                next;
            }
            # one column "x" of type VAR_STRING, one row "1"
            packet($c, chr(1), $s++);
            packet($c, join('', map { lenenc_str($_) } 'def', '', 't', 't', 'x', 'x')
                . "\x0c" . pack('v V C v C', 45, 64, 0xfd, 0, 0) . "\0\0", $s++);
            packet($c, eof_packet($status), $s++);
            packet($c, lenenc_str('1'), $s++);
            packet($c, eof_packet($status), $s++);
        }
    }
}

# --- the module against it ------------------------------------------------

# the pool talks to the fake server; no cache, no Redis
my $t = RBCS::Test->new(vars => { FAKE_MYSQL_PORT => $fake_port },
    wait_healthz => 0,
    allow_log => [ qr/another shape than asked|rbcs: mysql|cache generation|hold/i ],
    conf => <<'EOF');
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

    rbcs_mysql_server 127.0.0.1:${FAKE_MYSQL_PORT};
    rbcs_mysql_user rbcs;
    rbcs_mysql_password rbcs;
    rbcs_mysql_database ${MYSQL_DATABASE};
    rbcs_mysql_pool_size 2;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 5s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;

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

ok(RBCS::Test::wait_for(10, sub {
       ($t->get('/readyz')->{status} // 0) == 200 }),
   'the pool connects to the fake server (/readyz 200)');

my @workers = $t->worker_pids;
is(scalar @workers, 1, 'one worker');

for my $path ('/accounts/S1/transactions', '/accounts/S1/holds',
              '/accounts/S1/balance?at=2026-01-01T00:00:00Z',
              '/accounts/S1/balance', '/accounts/S1') {
    my $r = $t->get($path);
    is($r->{status}, 500, "GET $path: 500") or diag($r->{body});
    is(eval { $r->json->{code} }, 'internal_error', '... as problem details');
}

like($t->error_log, qr/a query answered rows of another shape than asked/,
     'the wrong shape is logged');
is_deeply([ $t->worker_pids ], \@workers, 'the worker is still the same process');
unlike($t->error_log, qr/exited on signal/, 'no worker died');

$t->stop;
done_testing();
