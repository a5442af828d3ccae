#!/usr/bin/perl
# Concurrency: one transaction id posted 50 times at once is applied once
# and answered alike; a few hundred concurrent random transfers among a few
# accounts (some overdrawing) conserve money, leave nothing negative, and
# agree with the database row by row.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
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

sub cents {
    my ($s) = @_;
    my ($i, $f) = $s =~ /^(\d+)\.(\d\d)$/ or die "not an amount: $s";
    return $i * 100 + $f;
}

sub open_account {
    my ($n, $balance) = @_;
    my $r = $t->post_json('/accounts',
        { accountNumber => $n, currency => 'USD', initialBalance => $balance });
    is($r->{status}, 201, "opened $n with $balance") or diag $r->{body};
}

# --- one id, fifty times at once ---------------------------------------

open_account('SRC', '1000.00');
open_account('DST', '0.00');

my @out = RBCS::Test::parallel(50, sub {
    my $r = $t->post_json('/accounts/transactions', {
        transactionId => 'same-id', sourceAccountNumber => 'SRC',
        destinationAccountNumber => 'DST', amount => '12.34' });
    return "$r->{status}\n$r->{body}";
});

my %status;
my %body;
for (@out) {
    my ($s, $b) = split /\n/, $_, 2;
    $status{$s}++;
    $body{$b // ''}++;
}

is($status{201} // 0, 1, 'exactly one of 50 identical posts answers 201')
    or diag explain \%status;
is($status{200} // 0, 49, 'the other 49 answer 200 (a replay)');
is(scalar keys %body, 1, 'all 50 answers carry the same body');

is($t->get('/accounts/SRC/balance')->json->{balance}, '987.66',
   'source debited once');
is($t->get('/accounts/DST/balance')->json->{balance}, '12.34',
   'destination credited once');

my $dbh = $t->dbh;
is($dbh->selectrow_array(
       q{SELECT COUNT(*) FROM transactions WHERE transaction_id = 'same-id'}),
   1, 'one transaction row');
is($dbh->selectrow_array(
       q{SELECT COUNT(*) FROM entries WHERE transaction_id = 'same-id'}),
   2, 'two ledger entries');

# --- random transfers among a few accounts ------------------------------

my @acc = map { "R$_" } 1 .. 5;
open_account($_, '100.00') for @acc;

my $clients = 10;
my $per_client = 30;

@out = RBCS::Test::parallel($clients, sub {
    my ($k) = @_;
    srand($k * 7919 + 17);
    my @lines;
    for my $i (1 .. $per_client) {
        my $s = $acc[int rand @acc];
        my $d;
        do { $d = $acc[int rand @acc] } while $d eq $s;
        my $c = 1 + int rand 6000;                  # 0.01 .. 60.00
        my $amount = sprintf '%d.%02d', int($c / 100), $c % 100;
        my $id = "rnd-$k-$i";
        my $r = $t->post_json('/accounts/transactions', {
            transactionId => $id, sourceAccountNumber => $s,
            destinationAccountNumber => $d, amount => $amount });
        my $code = $r->{status} == 422 ? $r->json->{code} : '';
        push @lines, join ' ', $id, $r->{status}, $s, $d, $amount, $code;
    }
    return join "\n", @lines;
});

my (%by_status, %outcome, $completed);
for my $line (map { split /\n/ } @out) {
    my ($id, $s, $src, $dst, $amount, $code) = split / /, $line;
    $by_status{$s}++;
    $outcome{$id} = [$s, $src, $dst, $amount, $code];
}

is(scalar keys %outcome, $clients * $per_client,
   'every random transfer got an answer');
is(($by_status{201} // 0) + ($by_status{422} // 0), $clients * $per_client,
   'each was applied (201) or refused for funds (422), nothing else')
    or diag explain \%by_status;
ok(($by_status{422} // 0) > 0, 'some transfers overdrew and were refused');
ok(($by_status{201} // 0) > 0, 'some transfers were applied');

my %api;
my $total = 0;
for my $a (@acc) {
    my $b = $t->get("/accounts/$a/balance")->json;
    $api{$a} = cents($b->{balance});
    $total += $api{$a};
    ok($api{$a} >= 0, "$a is not negative");
}
is($total, 500_00, 'the total of the five accounts is conserved');

# the answers given match the database, transfer by transfer
my $rows = $dbh->selectall_hashref(
    q{SELECT transaction_id, status, code FROM transactions
       WHERE transaction_id LIKE 'rnd-%'}, 'transaction_id');
my $mismatch = 0;
for my $id (keys %outcome) {
    my ($s, undef, undef, undef, $code) = @{ $outcome{$id} };
    my $row = $rows->{$id};
    my $ok = $row
        && ($s == 201 ? $row->{status} eq 'COMPLETED'
                      : $row->{status} eq 'REJECTED'
                        && $row->{code} eq 'insufficient_funds'
                        && $code eq 'insufficient_funds');
    $mismatch++ unless $ok;
}
is($mismatch, 0, 'every answer matches the recorded outcome');

# replaying the answers reproduces the balances exactly
my %expect = map { $_ => 100_00 } @acc;
for my $id (keys %outcome) {
    my ($s, $src, $dst, $amount) = @{ $outcome{$id} };
    next unless $s == 201;
    $expect{$src} -= cents($amount);
    $expect{$dst} += cents($amount);
}
is_deeply(\%api, \%expect, 'balances equal the sum of the applied transfers');

# the database agrees with the API, and the ledger with the balances
for my $a (@acc) {
    my ($bal, $ver) = $dbh->selectrow_array(
        'SELECT balance, version FROM accounts WHERE account_number = ?',
        undef, $a);
    my ($sum, $n, $last) = $dbh->selectrow_array(
        q{SELECT SUM(amount), COUNT(*),
                 (SELECT balance_after FROM entries e2
                   WHERE e2.account_number = e.account_number
                   ORDER BY version DESC LIMIT 1)
            FROM entries e WHERE account_number = ?}, undef, $a);
    my ($i, $f) = $bal =~ /^(\d+)\.(\d\d)0*$/;
    is(defined $i ? $i * 100 + $f : $bal, $api{$a}, "$a: database = API");
    is($sum, $bal, "$a: ledger entries add up to the balance");
    is($last, $bal, "$a: the newest entry's balanceAfter is the balance");
    is($n, $ver, "$a: one entry per version");
}

done_testing();
