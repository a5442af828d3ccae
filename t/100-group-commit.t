#!/usr/bin/perl
# The write path's batches: operations that queue up while the worker's
# batch is running go together as the next one, one database transaction,
# each judged on its own and in order of arrival; a lone transfer goes at
# once, alone; the queue is bounded; and batches keep the lock order, so
# they never deadlock.

use strict;
use warnings;

use Test::More;
use DBI;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);

# one worker with one connection: anything sent while it is busy queues
# (and stays queued until the test lets it go: queue_timeout well above
# the time the test holds the connection, on a slow machine too)
my $t = RBCS::Test->new(conf => <<'EOF');
${TEST_GLOBALS}
worker_processes 1;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log debug;

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
    rbcs_mysql_pool_size 1;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 10s;
    rbcs_mysql_queue_size 20;
    rbcs_mysql_queue_timeout 10s;
    rbcs_mysql_lock_wait_timeout 8s;

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

sub open_account {
    my ($n, $balance) = @_;
    is($t->post_json('/accounts', { accountNumber => $n,
                                    initialBalance => $balance })->{status},
       201, "opened $n");
}

sub transfer_async {
    my ($name, $body) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = eval { $t->post_json('/accounts/transactions', $body) };
        # written aside and renamed: a file that exists is complete (the
        # test counts the answers by the files there)
        open my $fh, '>', "$dir/$name.tmp" or POSIX::_exit(1);
        print $fh $r ? "$r->{status}\n$r->{body}" : "0\n$@";
        close $fh;
        rename "$dir/$name.tmp", "$dir/$name" or POSIX::_exit(1);
        POSIX::_exit(0);
    }
    return $pid;
}

sub result {
    my ($name) = @_;
    open my $fh, '<', "$dir/$name" or return (0, '');
    local $/;
    my ($status, $body) = split /\n/, <$fh>, 2;
    return ($status, $body);
}

sub batches {
    my @n = $t->error_log =~ /rbcs: write batch of (\d+) operations/g;
    return @n;
}

sub balance {
    return $t->get("/accounts/$_[0]/balance?consistency=strong")
             ->json->{balance};
}

# operations waiting for the worker's next batch: the writer's gauge
sub waiting {
    my ($m) = $t->get('/metrics')->{body} =~ /^rbcs_write_queue (\d+)$/m;
    return $m // -1;
}

# wait until $n transfers wait for the next batch (at most 10 s)
sub queued {
    my ($n) = @_;
    return RBCS::Test::wait_for(10, sub { waiting() == $n });
}

open_account('G-BUSY', '100.00');
open_account('G-A', '10.00');
open_account('G-B', '0.00');
open_account('G-C', '0.00');

# --- a lone transfer goes at once, alone --------------------------------

my $t0 = time;
my $r = $t->post_json('/accounts/transactions', {
    transactionId => 'g-lone', sourceAccountNumber => 'G-BUSY',
    destinationAccountNumber => 'G-C', amount => '1.00' });
my $lone = time - $t0;
is($r->{status}, 201, 'a lone transfer is applied');
my @lone = batches();
is_deeply(\@lone, [ (1) x 5 ],
          'it went at once, alone (as did the four openings before it)')
    or diag "batches: @lone";
diag(sprintf 'lone transfer answered in %.1f ms', 1000 * $lone);

# --- a batch: each transfer judged on its own, in order -----------------

# Hold the only connection: a transfer on G-BUSY waits for this lock.
my $lock = DBI->connect('DBI:MariaDB:mariadb_socket='
        . $RBCS::Test::MYSQL_SOCK . ';database=' . $t->dbname,
        scalar(getpwuid($>)), '', { RaiseError => 1, AutoCommit => 0,
        PrintError => 0 });
$lock->do(q{SELECT * FROM accounts WHERE account_number = 'G-BUSY'
            FOR UPDATE});

my @pids = (transfer_async('busy', {
    transactionId => 'g-busy', sourceAccountNumber => 'G-BUSY',
    destinationAccountNumber => 'G-C', amount => '1.00' }));
ok(RBCS::Test::wait_for(10, sub { $t->lock_waits >= 1 }),
   'the transfer on G-BUSY holds the connection, waiting for the lock');

# these queue behind it, in this order
my @batch = (
    [ 'first-7',   { transactionId => 'g-1', sourceAccountNumber => 'G-A',
                     destinationAccountNumber => 'G-B', amount => '7.00' } ],
    [ 'second-7',  { transactionId => 'g-2', sourceAccountNumber => 'G-A',
                     destinationAccountNumber => 'G-B', amount => '7.00' } ],
    [ 'same-1',    { transactionId => 'g-dup', sourceAccountNumber => 'G-B',
                     destinationAccountNumber => 'G-C', amount => '2.00' } ],
    [ 'same-2',    { transactionId => 'g-dup', sourceAccountNumber => 'G-B',
                     destinationAccountNumber => 'G-C', amount => '2.00' } ],
    [ 'conflict',  { transactionId => 'g-dup', sourceAccountNumber => 'G-B',
                     destinationAccountNumber => 'G-C', amount => '3.00' } ],
    [ 'missing',   { transactionId => 'g-404', sourceAccountNumber => 'G-A',
                     destinationAccountNumber => 'G-NONE',
                     amount => '1.00' } ],
    [ 'back',      { transactionId => 'g-3', sourceAccountNumber => 'G-B',
                     destinationAccountNumber => 'G-A', amount => '1.00' } ],
);
# the order of arrival is the order of the queue: each transfer is sent
# once the one before is queued
my $n = 0;
for my $b (@batch) {
    push @pids, transfer_async($b->[0], $b->[1]);
    ok(queued(++$n), "$b->[0] queued, number $n");
}
$lock->commit;
waitpid($_, 0) for @pids;

my %st = map { $_->[0] => [ result($_->[0]) ] } @batch;
is((result('busy'))[0], 201, 'the transfer that held the connection: 201');
is($st{'first-7'}[0], 201, 'first of two 7.00 debits from 10.00: applied');
is($st{'second-7'}[0], 422, 'the second: insufficient funds, in order');
like($st{'second-7'}[1], qr/insufficient_funds/, 'with its own code');
is($st{'same-1'}[0], 201, 'an id first seen in the batch: applied');
is($st{'same-2'}[0], 200, 'the same request again in the batch: a replay');
is($st{'same-2'}[1], $st{'same-1'}[1], 'with the same body');
is($st{'conflict'}[0], 409, 'the id with other fields: 409');
is($st{'missing'}[0], 404, 'an unknown account: 404, recorded');
is($st{'back'}[0], 201, 'a transfer after the rejections: applied');

my @sizes = batches();
ok((grep { $_ >= 5 } @sizes), 'they went as one batch')
    or diag "batches: @sizes";

is(balance('G-A'), '4.00', 'G-A: 10 - 7 + 1');
is(balance('G-B'), '4.00', 'G-B: 7 - 2 - 1');
is(balance('G-C'), '4.00', 'G-C: 1 + 1 + 2');
my $dbh = $t->dbh;
is($dbh->selectrow_array(q{SELECT COUNT(*) FROM transactions
                            WHERE transaction_id LIKE 'g-%'}),
   7, 'seven transaction ids recorded, each once');
is($dbh->selectrow_array(q{SELECT code FROM transactions
                            WHERE transaction_id = 'g-404'}),
   'account_not_found', 'the 404 is recorded');
is($dbh->selectrow_array(q{SELECT code FROM transactions
                            WHERE transaction_id = 'g-2'}),
   'insufficient_funds', 'the 422 is recorded');

# --- the queue is bounded: over it, 503 at once -------------------------

$lock->do(q{SELECT * FROM accounts WHERE account_number = 'G-BUSY'
            FOR UPDATE});
@pids = (transfer_async('hold', {
    transactionId => 'g-hold', sourceAccountNumber => 'G-BUSY',
    destinationAccountNumber => 'G-C', amount => '1.00' }));
ok(RBCS::Test::wait_for(10, sub { $t->lock_waits >= 1 }),
   'the transfer on G-BUSY holds the connection again');
for my $i (1 .. 30) {
    push @pids, transfer_async("q-$i", {
        transactionId => "g-q-$i", sourceAccountNumber => 'G-BUSY',
        destinationAccountNumber => 'G-C', amount => '0.01' });
}
# every one of the 30 has arrived: 20 wait in the queue and the others
# have their answer (a child writes its file once it has the answer)
my $answered = sub { scalar grep { -e "$dir/q-$_" } 1 .. 30 };
RBCS::Test::wait_for(10, sub { waiting() == 20 && $answered->() >= 10 });
my @early = grep { -e "$dir/q-$_" } 1 .. 30;
my @full = grep { (result("q-$_"))[0] == 503 } @early;
is(scalar @early, 10, 'with 20 waiting, 10 more are answered at once')
    or diag "answered early: @early";
is(scalar @full, 10, 'with 503');
like((result("q-$early[0]"))[1] // '', qr/unavailable/, 'code unavailable')
    if @early;
$lock->commit;
waitpid($_, 0) for @pids;
is(scalar(grep { (result("q-$_"))[0] == 201 } 1 .. 30), 20,
   'the 20 that waited are applied once the connection is free');

# --- one id, two pods, no account in common ----------------------------
#
# Each pod's batch reads the id as unused in its round trip 1 (they lock
# different accounts, so neither waits for the other there).  A gap lock
# at the end of audit_log holds both round trips 2: the first to insert
# the id waits at its audit row, holding the id's key; the other waits for
# that key.  When the gap lock goes, the first commits and the other fails
# with a duplicate key: that batch runs again and finds the id recorded
# with other fields: 409, and nothing applied twice.

my $pod2 = RBCS::Test->new(pod_of => $t, conf => <<'EOF');
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
    rbcs_mysql_pool_size 1;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 10s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;
    rbcs_mysql_lock_wait_timeout 8s;

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
open_account($_, '10.00') for qw(D-A D-B D-C D-D);

my $gap = DBI->connect('DBI:MariaDB:mariadb_socket='
        . $RBCS::Test::MYSQL_SOCK . ';database=' . $t->dbname,
        scalar(getpwuid($>)), '', { RaiseError => 1, AutoCommit => 1,
        PrintError => 0 });
$gap->do('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
$gap->begin_work;
my ($last) = $gap->selectrow_array('SELECT COALESCE(MAX(id), 0) FROM audit_log');
$gap->do("SELECT id FROM audit_log WHERE id > $last FOR UPDATE");

@pids = (transfer_async('dup-1', { transactionId => 'g-dup-pods',
    sourceAccountNumber => 'D-A', destinationAccountNumber => 'D-B',
    amount => '1.00' }));
{
    # the same id with other accounts, on the other pod
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = eval { $pod2->post_json('/accounts/transactions', {
            transactionId => 'g-dup-pods', sourceAccountNumber => 'D-C',
            destinationAccountNumber => 'D-D', amount => '1.00' }) };
        open my $fh, '>', "$dir/dup-2.tmp" or POSIX::_exit(1);
        print $fh $r ? "$r->{status}\n$r->{body}" : "0\n$@";
        close $fh;
        rename "$dir/dup-2.tmp", "$dir/dup-2" or POSIX::_exit(1);
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
ok(RBCS::Test::wait_for(10, sub { $t->lock_waits >= 2 }),
   'both pods\' round trips 2 wait: one at its audit row, one for the id');
$gap->commit;
waitpid($_, 0) for @pids;
$gap->disconnect;
my @dup = sort { $a <=> $b } map { (result($_))[0] } qw(dup-1 dup-2);
is("@dup", '201 409', 'one pod applies the id, the other answers 409');
like((result((result('dup-1'))[0] == 409 ? 'dup-1' : 'dup-2'))[1],
     qr/transaction_id_conflict/, '... transaction_id_conflict');
like($t->error_log . $pod2->error_log, qr/mysql error 1062, retrying/,
     'the duplicate key ran the losing batch again');
is($t->dbh->selectrow_array(q{SELECT COUNT(*) FROM transactions
                               WHERE transaction_id = 'g-dup-pods'}),
   1, 'the id is recorded once');
is($t->dbh->selectrow_array(q{SELECT SUM(balance) FROM accounts
                               WHERE account_number LIKE 'D-%'}),
   '40.000000000000000000', 'money is conserved');
is(scalar(grep { balance($_) ne '10.00' } qw(D-A D-B D-C D-D)), 2,
   'only the winner\'s two accounts changed');
$pod2->stop;

# --- many workers, crossing transfers: no deadlock ----------------------

# two batches in flight per worker as well: four at once
my $x = RBCS::Test->new(conf => <<'EOF');
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
    rbcs_mysql_pool_size 2;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 5s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;
    rbcs_mysql_writers 2;

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
for my $n (map { "X$_" } 1 .. 6) {
    $x->post_json('/accounts', { accountNumber => $n,
                                 initialBalance => '1000.00' });
}
@pids = ();
for my $k (0 .. 11) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $bad = 0;
        for my $i (1 .. 25) {
            my $s = 'X' . (1 + ($k + $i) % 6);
            my $d = 'X' . (1 + ($k * 5 + $i * 7 + 1) % 6);
            next if $s eq $d;
            my $r = $x->post_json('/accounts/transactions', {
                transactionId => "x-$k-$i", sourceAccountNumber => $s,
                destinationAccountNumber => $d, amount => '1.00' });
            $bad++ unless $r->{status} == 201;
        }
        POSIX::_exit($bad ? 1 : 0);
    }
    push @pids, $pid;
}
my $failed = 0;
for (@pids) { waitpid($_, 0); $failed++ if $? }
is($failed, 0, '300 crossing transfers from 12 clients all applied');
like(do { local (@ARGV, $/) = ($x->conf_file); <> },
     qr/^\s*rbcs_mysql_writers 2;/m,
     'with two write batches in flight per worker');
unlike($x->error_log, qr/mysql error 1213/,
       'no deadlock between batches and single transfers');
my $sum = 0;
for my $n (map { "X$_" } 1 .. 6) {
    my ($i) = $x->get("/accounts/$n/balance?consistency=strong")
                ->json->{balance} =~ /^(\d+)\.00$/;
    $sum += $i // 0;
}
is($sum, 6000, 'the total is conserved');

# --- a second batch in flight only for a quarter of a full one -----------
#
# Two writers, batches of at most 8: while one batch is in flight, another
# starts once 2 operations wait, not for one alone (which the next batch
# carries for less).

my $w = RBCS::Test->new(conf => <<'EOF');
${TEST_GLOBALS}
worker_processes 1;
worker_rlimit_nofile 16384;
error_log ${PREFIX}/error.log debug;

events {
    worker_connections 4096;
}

http {
    access_log ${PREFIX}/access.log;

    ${TEST_GLOBALS_HTTP}

    rbcs_mysql_server 127.0.0.1:${MYSQL_PORT};
    rbcs_mysql_user rbcs;
    rbcs_mysql_password rbcs;
    rbcs_mysql_database ${MYSQL_DATABASE};
    rbcs_mysql_pool_size 3;
    rbcs_mysql_query_timeout 10s;
    rbcs_mysql_queue_timeout 10s;
    rbcs_mysql_lock_wait_timeout 8s;
    rbcs_mysql_writers 2;
    rbcs_mysql_batch_size 8;

    server {
        listen 127.0.0.1:${HTTP_PORT};

        location / { rbcs; }
    }
}
EOF
for my $n (qw(W-BUSY W-A W-B W-C)) {
    is($w->post_json('/accounts', { accountNumber => $n,
                                    initialBalance => '10.00' })->{status},
       201, "opened $n");
}
my $wsent = sub {
    my ($name, $src, $dst) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = eval { $w->post_json('/accounts/transactions', {
            transactionId => "w-$name", sourceAccountNumber => $src,
            destinationAccountNumber => $dst, amount => '1.00' }) };
        open my $fh, '>', "$dir/w-$name.tmp" or POSIX::_exit(1);
        print $fh $r ? $r->{status} : 0;
        close $fh;
        rename "$dir/w-$name.tmp", "$dir/w-$name" or POSIX::_exit(1);
        POSIX::_exit(0);
    }
    return $pid;
};
my $wqueued = sub {
    my ($m) = $w->get('/metrics')->{body} =~ /^rbcs_write_queue (\d+)$/m;
    return $m // -1;
};
my $wstatus = sub {
    open my $fh, '<', "$dir/w-$_[0]" or return undef;
    return scalar <$fh>;
};

my $wlock = DBI->connect('DBI:MariaDB:mariadb_socket='
        . $RBCS::Test::MYSQL_SOCK . ';database=' . $w->dbname,
        scalar(getpwuid($>)), '', { RaiseError => 1, AutoCommit => 0,
        PrintError => 0 });
$wlock->do(q{SELECT * FROM accounts WHERE account_number = 'W-BUSY'
             FOR UPDATE});
# W-BUSY sorts before W-C: the batch waits holding no other lock
@pids = ($wsent->('busy', 'W-BUSY', 'W-C'));
ok(RBCS::Test::wait_for(10, sub { $w->lock_waits >= 1 }),
   'a batch is in flight, waiting for a lock');
push @pids, $wsent->('one', 'W-A', 'W-B');
ok(RBCS::Test::wait_for(10, sub { $wqueued->() == 1 }),
   'one transfer on other accounts queues');
sleep 1;
ok($wqueued->() == 1 && !defined $wstatus->('one'),
   'and stays queued while the free writer waits for more')
    or diag('queued: ' . $wqueued->());
push @pids, $wsent->('two', 'W-B', 'W-A');
ok(RBCS::Test::wait_for(10, sub {
       defined $wstatus->('one') && defined $wstatus->('two') }),
   'a second one starts the second batch, the first still in flight');
is(($wstatus->('one') // '') . ' ' . ($wstatus->('two') // ''), '201 201',
   'both applied');
ok(!defined $wstatus->('busy'), 'while the first batch still waits');
like($w->error_log, qr/rbcs: write batch of 2 operations/,
     'the two went as one batch');
$wlock->commit;
waitpid($_, 0) for @pids;
is($wstatus->('busy'), 201, 'the first batch is applied once the lock goes');

done_testing();
