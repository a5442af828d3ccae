#!/usr/bin/perl
# The audit log: every state change (an account opened, a transfer applied
# or rejected) leaves one row saying who, what, when and how it ended,
# written in the same database transaction as the change; replays and
# validation errors change nothing and leave nothing.

use strict;
use warnings;

use Test::More;
use RBCS::Test;

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
my $dbh = $t->dbh;

sub audit {
    return $dbh->selectall_arrayref(
        q{SELECT actor, action, subject, outcome, http_status
            FROM audit_log ORDER BY id}, { Slice => {} });
}

is($t->post_json('/accounts', { accountNumber => 'AU1',
                                initialBalance => '10.00' })->{status},
   201, 'open AU1');
is($t->post_json('/accounts', { accountNumber => 'AU2' })->{status}, 201,
   'open AU2');
is($t->post_json('/accounts', { accountNumber => 'AU1',
                                initialBalance => '10.00' })->{status},
   200, 'opening AU1 again is a repeat');

my $xfer = sub {
    my ($id, $amount) = @_;
    return $t->post_json('/accounts/transactions', {
        transactionId => $id, sourceAccountNumber => 'AU1',
        destinationAccountNumber => 'AU2', amount => $amount })->{status};
};

is($xfer->('au-1', '4.00'), 201, 'a transfer applied');
is($xfer->('au-1', '4.00'), 200, 'its replay');
is($xfer->('au-2', '400.00'), 422, 'a transfer rejected for funds');
is($xfer->('au-2', '400.00'), 422, 'its replay');
is($xfer->('au-3', '-1'), 400, 'a validation error');
is($t->post_json('/accounts/transactions', {
       transactionId => 'au-4', sourceAccountNumber => 'AU1',
       destinationAccountNumber => 'NOBODY', amount => '1.00' })->{status},
   404, 'a transfer to an unknown account');

my $rows = audit();
is_deeply([ map { [ @$_{qw(action subject outcome http_status)} ] } @$rows ],
          [ [ 'account.open', 'AU1', 'created', 201 ],
            [ 'account.open', 'AU2', 'created', 201 ],
            [ 'transfer', 'au-1', 'completed', 201 ],
            [ 'transfer', 'au-2', 'insufficient_funds', 422 ],
            [ 'transfer', 'au-4', 'account_not_found', 404 ] ],
          'one row per state change, in order; none for repeats, replays '
          . 'or validation errors');
is(scalar(grep { defined $_->{actor} } @$rows), 0,
   'the actor is NULL with authentication off');

my ($at) = $dbh->selectrow_array(
    q{SELECT COUNT(*) FROM audit_log a JOIN transactions t
        ON a.subject = t.transaction_id AND a.at = t.created_at
       WHERE a.action = 'transfer'});
is($at, 3, 'each transfer row has the time of the transfer it records');

# Same transaction: a transfer rolled back leaves no audit row.  Hold the
# source's lock past the lock wait timeout and every retry: 503, nothing.
my $slow = RBCS::Test->new(allow_log => [ qr/rbcs: mysql/ ], conf => <<'EOF');
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
    rbcs_mysql_lock_wait_timeout 1s;
    rbcs_mysql_retries 0;

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
$slow->post_json('/accounts', { accountNumber => 'L1',
                                initialBalance => '5.00' });
$slow->post_json('/accounts', { accountNumber => 'L2' });
my $lock = DBI->connect('DBI:MariaDB:mariadb_socket='
        . $RBCS::Test::MYSQL_SOCK . ';database=' . $slow->dbname,
        scalar(getpwuid($>)), '', { RaiseError => 1, AutoCommit => 0 });
$lock->do(q{SELECT * FROM accounts WHERE account_number = 'L1'
            FOR UPDATE});
is($slow->post_json('/accounts/transactions', {
       transactionId => 'l-1', sourceAccountNumber => 'L1',
       destinationAccountNumber => 'L2', amount => '1.00' })->{status},
   503, 'a transfer that could not take its lock: 503');
$lock->rollback;
is($slow->dbh->selectrow_array(
       q{SELECT COUNT(*) FROM audit_log WHERE subject = 'l-1'}),
   0, 'and no audit row: it went with the rolled-back transaction');

done_testing();
