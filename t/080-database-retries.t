#!/usr/bin/perl
# Inside the service: a lock wait timeout (1205) and a deadlock (1213) are
# rolled back and retried a bounded number of times; a connection lost in
# the middle of a transfer, or after its COMMIT reached the server, is
# settled by running the (idempotent) transfer again, so the client gets
# the real outcome and the transfer is applied exactly once.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);

my $t = RBCS::Test->new(allow_log => [ qr/rbcs: mysql/ ], conf => <<'EOF');
${TEST_GLOBALS}
worker_processes 1;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log info;

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
    rbcs_mysql_lock_wait_timeout 1s;
    rbcs_mysql_retries 3;

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

sub open_accounts {
    my ($t) = @_;
    is($t->post_json('/accounts', { accountNumber => 'A',
                                    initialBalance => '100.00' })->{status},
       201, 'account A');
    is($t->post_json('/accounts', { accountNumber => 'B' })->{status}, 201,
       'account B');
}

sub transfer {
    my ($t, $id, $amount) = @_;
    return $t->post_json('/accounts/transactions', {
        transactionId => $id, sourceAccountNumber => 'A',
        destinationAccountNumber => 'B', amount => $amount });
}

# a transfer in a child process; returns a handle to collect its answer
sub transfer_async {
    my ($t, $id, $amount) = @_;
    my $file = "$dir/$id";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $t0 = time;
        my $r = eval { transfer($t, $id, $amount) };
        open my $fh, '>', $file or POSIX::_exit(1);
        printf $fh "%s %.3f\n%s", $r ? $r->{status} : 0, time - $t0,
               $r ? $r->{body} : $@;
        close $fh;
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}

sub collect {
    my ($h) = @_;
    waitpid($h->{pid}, 0);
    open my $fh, '<', $h->{file} or return (0, 0, '');
    local $/;
    my ($head, $body) = split /\n/, <$fh>, 2;
    my ($status, $elapsed) = split / /, $head;
    return ($status, $elapsed, $body);
}

sub balance {
    my ($t, $n) = @_;
    return $t->get("/accounts/$n/balance")->json->{balance};
}

sub tx_rows {
    my ($t, $id) = @_;
    return $t->dbh->selectrow_array(
        'SELECT COUNT(*) FROM transactions WHERE transaction_id = ?',
        undef, $id);
}

open_accounts($t);

# --- lock wait timeout, released during the retries ---------------------

my $lock = DBI->connect('DBI:MariaDB:mariadb_socket='
        . $RBCS::Test::MYSQL_SOCK . ';database=' . $t->dbname,
        scalar(getpwuid($>)), '', { RaiseError => 1, AutoCommit => 0,
        PrintError => 0 });

$lock->do(q{SELECT * FROM accounts WHERE account_number = 'A' FOR UPDATE});
my $h = transfer_async($t, 'lw-1', '1.00');
# counted from when the transfer waits for the lock, not from the fork
ok(RBCS::Test::wait_for(10, sub { $t->lock_waits >= 1 }),
   'the transfer waits for the lock');
sleep 1.6;                                   # at least one 1 s lock wait
$lock->commit;
my ($status, $elapsed) = collect($h);
is($status, 201, 'a transfer that hit a lock wait timeout is retried: 201');
cmp_ok($elapsed, '>', 1.0, 'it did wait for the lock');
like($t->error_log, qr/mysql error 1205, retrying/,
     'the lock wait timeout was retried inside the service');
is(balance($t, 'A'), '99.00', 'applied once');
is($t->dbh->selectrow_array(
       q{SELECT COUNT(*) FROM entries WHERE transaction_id = 'lw-1'}),
   2, 'with its two ledger entries, nothing half-applied');

# --- lock held beyond every retry: 503, nothing applied -----------------

$lock->do(q{SELECT * FROM accounts WHERE account_number = 'A' FOR UPDATE});
$h = transfer_async($t, 'lw-2', '1.00');
($status, $elapsed) = collect($h);
$lock->commit;
is($status, 503, 'a lock held beyond every retry answers 503');
cmp_ok($elapsed, '<', 4 * 1.0 + 2, 'after a bounded number of retries');
is(tx_rows($t, 'lw-2'), 0, 'nothing recorded');
is(balance($t, 'A'), '99.00', 'nothing applied');
is(transfer($t, 'lw-2', '1.00')->{status}, 201,
   'retrying the same id afterwards applies it');
is(balance($t, 'A'), '98.00', 'once');

# --- deadlock -----------------------------------------------------------

# The other transaction is made heavier (more undo) so that InnoDB picks
# the transfer as the deadlock victim.
$t->dbh->do('CREATE TABLE scratch (id INT PRIMARY KEY)');
$lock->do('INSERT INTO scratch VALUES ' . join ',', map { "($_)" } 1 .. 50);
$lock->do(q{SELECT * FROM accounts WHERE account_number = 'B' FOR UPDATE});
$h = transfer_async($t, 'dl-1', '1.00');     # locks A, then waits for B
# only once the transfer holds A and waits for B does the lock on A below
# make a deadlock (before, it would just make the transfer wait)
ok(RBCS::Test::wait_for(10, sub { $t->lock_waits >= 1 }),
   'the transfer holds A and waits for B');
my $ok = eval {
    $lock->do(q{SELECT * FROM accounts WHERE account_number = 'A'
                FOR UPDATE});
    1;
};
ok($ok, 'the other side of the deadlock survived')
    or diag $@;
sleep 0.2;
$lock->rollback;
($status) = collect($h);
is($status, 201, 'the transfer chosen as deadlock victim is retried: 201');
like($t->error_log, qr/mysql error 1213, retrying/,
     'the deadlock was retried inside the service');
is(balance($t, 'A'), '97.00', 'applied once');

# --- connection killed in the middle of a transfer ----------------------

$lock->do(q{SELECT * FROM accounts WHERE account_number = 'A' FOR UPDATE});
$h = transfer_async($t, 'kill-1', '1.00');
# the transfer's connection, waiting for the lock inside the procedure
my $victim = RBCS::Test::wait_for(10, sub {
    scalar $lock->selectrow_array(
        q{SELECT id FROM information_schema.processlist
           WHERE db = ? AND id <> CONNECTION_ID() AND command = 'Query'
             AND info LIKE '%FOR UPDATE%'}, undef, $t->dbname);
});
ok($victim, 'found the connection running the transfer');
if ($victim) {
    $lock->do("KILL CONNECTION $victim");
    # the lock goes only once that connection is gone: released earlier,
    # the transfer could still finish on it and the loss not happen
    ok(RBCS::Test::wait_for(10, sub {
           !$lock->selectrow_array(q{SELECT COUNT(*) FROM
               information_schema.processlist WHERE id = ?}, undef, $victim) }),
       'the killed connection is gone');
}
$lock->commit;
($status) = collect($h);
is($status, 201, 'a transfer whose connection was killed still answers 201');
like($t->error_log, qr/mysql connection lost/, 'the loss was seen');
is(balance($t, 'A'), '96.00', 'applied once');
is(tx_rows($t, 'kill-1'), 1, 'recorded once');

$lock->disconnect;

# --- connection lost after COMMIT reached the server --------------------
#
# A real server cannot be made to commit and then lose the reply on
# demand, so a relay between nginx and MariaDB forwards the transfer's
# query, lets the server commit it, and then cuts both sides without
# passing the reply on.

# The relay's socket is bound and listening here, before the fork: nginx
# and the harness connect to its port as soon as RBCS::Test->new starts,
# and a port the child would bind later may not be listening yet (or be
# someone else's by then).
my $relay_sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => 0, Listen => 64, ReuseAddr => 1, Proto => 'tcp')
    or die "relay: $!";
my $relay_port = $relay_sock->sockport;
my $relay = fork // die "fork: $!";
if ($relay == 0) {
    relay($relay_sock, $RBCS::Test::MYSQL_PORT, "('lost-1','A','B',");
    POSIX::_exit(0);
}
close $relay_sock;   # the child's now: killing it refuses new connections

# a test that dies on the way must not leave the relay running (it holds
# prove's pipe)
END { if ($relay) { local $?; kill 'TERM', $relay; waitpid($relay, 0) } }

my $t2 = RBCS::Test->new(
    mysql_port   => $relay_port,
    mysql_socket => $RBCS::Test::MYSQL_SOCK,
    allow_log    => [ qr/rbcs: mysql/ ],
    conf         => <<'EOF');
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
open_accounts($t2);
my $r = transfer($t2, 'lost-1', '5.00');
is($r->{status}, 201, 'a commit whose reply was lost answers 201');
is(eval { $r->json->{status} }, 'COMPLETED', 'with the completed transfer');
is(eval { $r->json->{sourceBalance} }, '95.00', 'and its resulting balance');
like($t2->error_log, qr/mysql connection lost/, 'the loss was seen');
is(balance($t2, 'A'), '95.00', 'applied exactly once');
is(tx_rows($t2, 'lost-1'), 1, 'recorded once');
is(transfer($t2, 'lost-1', '5.00')->{status}, 200,
   'a later retry by the client is a replay');

kill 'TERM', $relay;
waitpid($relay, 0);
$relay = undef;

done_testing();


# A TCP relay that cuts the first connection whose client sends $marker,
# after giving the server time to execute what it was sent.  $l is the
# relay's listening socket, already bound and listening (see above).
sub relay {
    my ($l, $upstream, $marker) = @_;
    my $sel = IO::Select->new($l);
    my (%peer, %cut);
    my $fired = 0;
    my $deadline = time + 120;

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
            next if $cut{$fh} || !defined fileno($fh);
            my $n = sysread($fh, my $buf, 65536);
            my $to = $peer{$fh};
            if (!$n) {
                $sel->remove($fh, $to);
                close $fh;
                close $to;
                next;
            }
            if (!$fired && index($buf, $marker) >= 0) {
                $fired = 1;
                syswrite($to, $buf);
                $cut{$fh} = $cut{$to} = [ time + 0.5, $fh, $to ];
                next;
            }
            syswrite($to, $buf);
        }
        for my $k (keys %cut) {
            my ($when, $a, $b) = @{ $cut{$k} };
            next if time < $when;
            delete $cut{$k};
            $sel->remove($a, $b);
            close $a;
            close $b;
        }
    }
}
