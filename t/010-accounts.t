#!/usr/bin/perl
# Acceptance tests (black box, /work/shared/API.md): opening accounts
# (POST /accounts), reading them (GET /accounts/{n}, GET /accounts/{n}/balance),
# account number rules, currencies and their scales, initialBalance,
# idempotent repeats, 409 account_exists, timestamps, 404s and the order in
# which errors are decided.

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

my $TS = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/;

# ---------------------------------------------------------------- helpers --

# A problem details document (RFC 9457) with the given status and code.
sub is_problem {
    my ($r, $status, $code, $name) = @_;
    subtest "$name -> $status $code" => sub {
        is($r->{status}, $status, "status $status")
            or diag("body: $r->{body}");
        like($r->{headers}{'content-type'} // '', qr{^application/problem\+json\s*(;|\z)}i,
             'Content-Type application/problem+json');
        my $j = eval { $r->json };
        ok(ref $j eq 'HASH', 'body is a JSON object') or return;
        is($j->{code}, $code, "code $code");
        is($j->{status}, $status, 'status member equals the HTTP status');
        like($r->{body}, qr/"status"\s*:\s*\Q$status\E\s*[,}]/, 'status member is a JSON number');
        for my $m (qw(type title detail)) {
            ok(defined $j->{$m} && !ref $j->{$m} && length $j->{$m}, "member $m");
        }
        ok(!exists $j->{instance}, 'no instance member');
    };
}

# POST with an exact raw JSON body (to send JSON numbers with their text).
sub post_raw {
    my ($path, $body) = @_;
    return $t->request('POST', $path, body => $body,
                       headers => { 'Content-Type' => 'application/json' });
}

sub open_account { $t->post_json('/accounts', {@_}) }

sub account_count {
    return scalar $t->dbh->selectrow_array('SELECT COUNT(*) FROM accounts');
}

# A full account resource check.
sub is_account {
    my ($r, $status, $want, $name) = @_;
    subtest $name => sub {
        is($r->{status}, $status, "status $status") or diag("body: $r->{body}");
        like($r->{headers}{'content-type'} // '', qr{^application/json\s*(;|\z)}i,
             'Content-Type application/json');
        my $j = eval { $r->json };
        ok(ref $j eq 'HASH', 'body is a JSON object') or return;
        for my $k (sort keys %$want) {
            is($j->{$k}, $want->{$k}, "$k is " . ($want->{$k} // 'null'));
        }
        like($r->{body}, qr/"balance"\s*:\s*"/, 'balance is a JSON string');
        like($r->{body}, qr/"version"\s*:\s*\d+\s*[,}]/, 'version is a JSON number');
        like($j->{createdAt} // '', $TS, 'createdAt is RFC 3339 UTC with milliseconds');
        like($j->{updatedAt} // '', $TS, 'updatedAt is RFC 3339 UTC with milliseconds');
    };
}

# ------------------------------------------------------- open, read, 201 --

my $r = open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '100.00');
is_account($r, 201, { accountNumber => 'ACC-1', currency => 'USD', balance => '100.00',
                      version => 1 }, 'POST /accounts opens ACC-1: 201');
my $created = eval { $r->json } // {};

$r = $t->get('/accounts/ACC-1');
is_account($r, 200, { accountNumber => 'ACC-1', currency => 'USD', balance => '100.00',
                      version => 1, createdAt => $created->{createdAt},
                      updatedAt => $created->{updatedAt} },
           'GET /accounts/ACC-1 gives the same resource');

for my $q ('', '?consistency=strong') {
    $r = $t->get("/accounts/ACC-1/balance$q");
    subtest "GET /accounts/ACC-1/balance$q" => sub {
        is($r->{status}, 200, 'status 200') or diag("body: $r->{body}");
        like($r->{headers}{'content-type'} // '', qr{^application/json\s*(;|\z)}i, 'JSON');
        my $j = eval { $r->json } // {};
        is($j->{accountNumber}, 'ACC-1', 'accountNumber');
        is($j->{currency}, 'USD', 'currency');
        is($j->{balance}, '100.00', 'balance "100.00"');
        is($j->{version}, 1, 'version 1');
        like($r->{body}, qr/"version"\s*:\s*1\s*[,}]/, 'version is a JSON number');
    };
}

for my $bad ('bogus', 'strong2', '') {
    is_problem($t->get("/accounts/ACC-1/balance?consistency=$bad"), 400, 'invalid_request',
               "balance with consistency=$bad");
}

# ---------------------------------------------------- currencies, scales --

my %scale_cases = (
    'C-USD'  => [ 'USD', '100',  '100.00' ],
    'C-EUR'  => [ 'EUR', '5.5',  '5.50' ],
    'C-CNY'  => [ 'CNY', '7',    '7.00' ],
    'C-JPY'  => [ 'JPY', '1000', '1000' ],
    'C-BTC'  => [ 'BTC', '1',    '1.00000000' ],
    'C-ETH'  => [ 'ETH', '2.5',  '2.500000000000000000' ],
);
for my $n (sort keys %scale_cases) {
    my ($cur, $init, $want) = @{ $scale_cases{$n} };
    $r = open_account(accountNumber => $n, currency => $cur, initialBalance => $init);
    is_account($r, 201, { accountNumber => $n, currency => $cur, balance => $want, version => 1 },
               "$cur initialBalance \"$init\" shows \"$want\"");
    is($t->get("/accounts/$n")->json->{balance}, $want, "GET $n: balance $want");
    is($t->get("/accounts/$n/balance")->json->{balance}, $want, "GET $n/balance: $want");
    is($t->get("/accounts/$n/balance?consistency=strong")->json->{balance}, $want,
       "GET $n/balance strong: $want");
}

$r = open_account(accountNumber => 'DEF-1');
is_account($r, 201, { accountNumber => 'DEF-1', currency => 'USD', balance => '0.00', version => 1 },
           'no currency, no initialBalance: USD, balance "0.00"');

$r = open_account(accountNumber => 'ZERO-1', initialBalance => '0');
is_account($r, 201, { accountNumber => 'ZERO-1', currency => 'USD', balance => '0.00', version => 1 },
           'initialBalance "0" allowed');

$r = open_account(accountNumber => 'JPY-0', currency => 'JPY');
is_account($r, 201, { currency => 'JPY', balance => '0' }, 'JPY zero balance is "0"');

$r = open_account(accountNumber => 'ETH-0', currency => 'ETH');
is_account($r, 201, { currency => 'ETH', balance => '0.000000000000000000' },
           'ETH zero balance has 18 decimals');

$r = post_raw('/accounts', '{"accountNumber":"NUM-1","initialBalance":100}');
is_account($r, 201, { balance => '100.00' }, 'initialBalance as a JSON number 100');

$r = post_raw('/accounts', '{"accountNumber":"NUM-2","initialBalance":12.3}');
is_account($r, 201, { balance => '12.30' }, 'initialBalance as a JSON number 12.3');

my $before = account_count();
for my $cur ('usd', 'Usd', 'XXX', 'US', 'USDX', 'EUR ', ' EUR') {
    is_problem(open_account(accountNumber => 'CUR-BAD', currency => $cur), 400,
               'unsupported_currency', "currency \"$cur\"");
}
is_problem(post_raw('/accounts', '{"accountNumber":"CUR-BAD","currency":1}'), 400,
           'invalid_request', 'currency as a JSON number');
is_problem(open_account(accountNumber => 'AMT-BAD', initialBalance => '10.555'), 400,
           'invalid_amount', 'initialBalance "10.555" (USD scale 2)');
is_problem(open_account(accountNumber => 'AMT-BAD', currency => 'JPY', initialBalance => '1.5'),
           400, 'invalid_amount', 'initialBalance "1.5" for JPY');
is_problem(open_account(accountNumber => 'AMT-BAD', currency => 'BTC',
                        initialBalance => '0.000000001'),
           400, 'invalid_amount', 'initialBalance with 9 decimals for BTC');
is_problem(open_account(accountNumber => 'AMT-BAD', initialBalance => '-5'), 400,
           'invalid_amount', 'initialBalance "-5"');
is(account_count(), $before, 'no account created by the rejected openings');
is_problem($t->get('/accounts/CUR-BAD'), 404, 'account_not_found', 'CUR-BAD was not opened');

# ------------------------------------------------------- account numbers --

$r = open_account(accountNumber => 'ACC1', currency => 'USD', initialBalance => '1');
is_account($r, 201, { accountNumber => 'ACC1', currency => 'USD', balance => '1.00' }, 'open ACC1');
$r = open_account(accountNumber => 'acc1', currency => 'JPY', initialBalance => '2');
is_account($r, 201, { accountNumber => 'acc1', currency => 'JPY', balance => '2' },
           'open acc1 (another account than ACC1)');
$r = $t->get('/accounts/ACC1');
is_account($r, 200, { accountNumber => 'ACC1', currency => 'USD', balance => '1.00' },
           'GET /accounts/ACC1');
$r = $t->get('/accounts/acc1');
is_account($r, 200, { accountNumber => 'acc1', currency => 'JPY', balance => '2' },
           'GET /accounts/acc1');
is($t->get('/accounts/acc1/balance')->json->{currency}, 'JPY', 'acc1/balance is JPY');
is($t->get('/accounts/ACC1/balance')->json->{currency}, 'USD', 'ACC1/balance is USD');
is_problem($t->get('/accounts/Acc1'), 404, 'account_not_found', 'GET /accounts/Acc1');

my $n64 = substr('A' . ('b9_.:-' x 20), 0, 64);
is(length $n64, 64, '64-character number');
for my $n ('9', 'a_b.c:d-e', $n64, 'Transactions', 'transactions1', 'TRANSACTIONS', 'x-transactions') {
    $r = open_account(accountNumber => $n);
    is_account($r, 201, { accountNumber => $n, currency => 'USD', balance => '0.00' },
               "valid account number \"$n\"");
    is($t->get("/accounts/$n")->{status}, 200, "GET /accounts/$n");
}

$before = account_count();
my @bad_numbers = ('ACC1 ', ' ACC1', 'AC C1', '', '-A', '_A', '.A', ':A', 'A/B', 'A@B',
                   'A+B', "A\tB", 'transactions', $n64 . 'c', "caf\x{e9}", 'A%31');
for my $n (@bad_numbers) {
    (my $shown = $n) =~ s/([^\x21-\x7e])/sprintf('\\x{%x}', ord $1)/ge;
    is_problem(open_account(accountNumber => $n), 400, 'invalid_request',
               "POST /accounts with accountNumber \"$shown\"");
}
is_problem(post_raw('/accounts', '{"accountNumber":12}'), 400, 'invalid_request',
           'accountNumber as a JSON number');
is_problem(post_raw('/accounts', '{"currency":"USD"}'), 400, 'invalid_request',
           'accountNumber missing');
is(account_count(), $before, 'no account created by invalid account numbers');

$r = $t->get('/accounts/transactions');
is_problem($r, 405, 'method_not_allowed', 'GET /accounts/transactions');
is($r->{headers}{allow}, 'POST', 'GET /accounts/transactions: Allow: POST');

# ----------------------------------------------------- 404 for unknown ids --

for my $p ('/accounts/NOPE', '/accounts/NOPE/balance', '/accounts/NOPE/balance?consistency=strong',
           '/accounts/-x', '/accounts/-x/balance', '/accounts/_ACC1', '/accounts/ACC1%20',
           '/accounts/%20ACC1', '/accounts/' . $n64 . 'c', '/accounts/' . $n64 . 'c/balance',
           '/accounts/caf%C3%A9') {
    is_problem($t->get($p), 404, 'account_not_found', "GET $p");
}

# ------------------------------------------------ idempotent repeats, 409 --

$r = open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '100.00');
is_account($r, 200, { accountNumber => 'ACC-1', currency => 'USD', balance => '100.00', version => 1,
                      createdAt => $created->{createdAt} }, 'same request again: 200');
$r = open_account(accountNumber => 'ACC-1', initialBalance => '100');
is_account($r, 200, { accountNumber => 'ACC-1', currency => 'USD', balance => '100.00', version => 1 },
           '"100" equals "100.00", omitted currency equals USD: 200');
$r = post_raw('/accounts', '{"accountNumber":"ACC-1","initialBalance":100.0,"currency":"USD"}');
is_account($r, 200, { accountNumber => 'ACC-1', balance => '100.00' },
           'initialBalance 100.0 as a JSON number: 200');
$r = open_account(accountNumber => 'DEF-1', currency => 'USD', initialBalance => '0.00');
is_account($r, 200, { accountNumber => 'DEF-1', currency => 'USD', balance => '0.00' },
           'omitted initialBalance equals "0.00": 200');
$r = open_account(accountNumber => 'C-JPY', currency => 'JPY', initialBalance => '1000');
is_account($r, 200, { accountNumber => 'C-JPY', currency => 'JPY', balance => '1000' },
           'JPY repeat: 200');

$before = account_count();
for my $c ([ { currency => 'EUR', initialBalance => '100.00' }, 'other currency' ],
           [ { currency => 'USD', initialBalance => '100.01' }, 'other initial balance' ],
           [ { initialBalance => '0' },                         'initial balance 0' ],
           [ {},                                                'no initialBalance (0)' ],
           [ { currency => 'JPY', initialBalance => '100' },    'JPY 100' ]) {
    is_problem(open_account(accountNumber => 'ACC-1', %{ $c->[0] }), 409, 'account_exists',
               "ACC-1 again with $c->[1]");
}
is_problem(open_account(accountNumber => 'acc1', currency => 'USD', initialBalance => '1'),
           409, 'account_exists', 'acc1 with ACC1\'s fields');
is(account_count(), $before, 'nothing created by the 409s');
is($t->get('/accounts/ACC-1')->json->{balance}, '100.00', 'ACC-1 unchanged');

# The repeat answers the *current* resource: move money, repeat the opening.
$r = $t->post_json('/accounts/transactions', { transactionId => 'tx-1',
    sourceAccountNumber => 'ACC-1', destinationAccountNumber => 'DEF-1', amount => '10.00' });
is($r->{status}, 201, 'transfer ACC-1 -> DEF-1 10.00: 201') or diag($r->{body});
$r = open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '100.00');
is_account($r, 200, { accountNumber => 'ACC-1', currency => 'USD', balance => '90.00', version => 2,
                      createdAt => $created->{createdAt} },
           'repeat after a transfer: 200 with the current balance and version');
is_problem(open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '90.00'),
           409, 'account_exists', 'the current balance is not the initial balance: 409');
$r = $t->get('/accounts/ACC-1');
is_account($r, 200, { balance => '90.00', version => 2, createdAt => $created->{createdAt} },
           'GET after the transfer');
my $j = eval { $r->json } // {};
ok(($j->{updatedAt} // '') ge ($created->{updatedAt} // ''), 'updatedAt did not go backwards');
$r = $t->get('/accounts/ACC-1/balance?consistency=strong');
is_deeply([ @{ $r->json }{qw(balance version)} ], [ '90.00', 2 ], 'strong balance: 90.00 v2');
$r = $t->get('/accounts/ACC-1/balance');
is_deeply([ @{ $r->json }{qw(balance version)} ], [ '90.00', 2 ], 'cached balance: 90.00 v2');
$r = open_account(accountNumber => 'DEF-1');
is_account($r, 200, { accountNumber => 'DEF-1', balance => '10.00', version => 2 },
           'DEF-1 repeat: 200 with balance 10.00');

# -------------------------------------------------------------- ordering --

$before = account_count();
is_problem(post_raw('/accounts', '{"accountNumber":"P1","currency":"XXX","bogus":1}'), 400,
           'invalid_request', 'unknown field + bad currency -> invalid_request');
is_problem(open_account(accountNumber => 'P 1', currency => 'XXX', initialBalance => '-1'), 400,
           'invalid_request', 'bad number + bad currency + bad amount -> invalid_request');
is_problem(open_account(accountNumber => 'P1', currency => 'XXX', initialBalance => '-1'), 400,
           'unsupported_currency', 'bad currency + bad amount -> unsupported_currency');
is_problem(open_account(accountNumber => 'P1', currency => 'usd', initialBalance => '1.234'), 400,
           'unsupported_currency', 'usd + too many decimals -> unsupported_currency');
is_problem(open_account(accountNumber => 'ACC-1', currency => 'XXX', initialBalance => '100.00'),
           400, 'unsupported_currency', 'existing number + bad currency -> 400 before 409');
is_problem(open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '100.001'),
           400, 'invalid_amount', 'existing number + bad amount -> 400 before 409');
is_problem(open_account(accountNumber => 'ACC-1', currency => 'USD', initialBalance => '90.00',
                        extra => 1),
           400, 'invalid_request', 'existing number + unknown field -> 400 before 409');
is_problem($t->request('POST', '/accounts', body => '{"accountNumber":"ACC-1"',
                       headers => { 'Content-Type' => 'text/plain' }),
           415, 'unsupported_media_type', 'text/plain + bad JSON -> 415 first');
is(account_count(), $before, 'nothing created by these rejections');

done_testing();
