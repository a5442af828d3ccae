#!/usr/bin/perl
# Acceptance tests (black box, /work/shared/API.md): the amount grammar
# ^(0|[1-9][0-9]*)(\.[0-9]+)?$, the currency's scale, DECIMAL(36,18) bounds
# and JSON types, through initialBalance (zero allowed) and the transfer
# amount (positive needed); exact decimal arithmetic; 400s leave the
# transaction id free; the grammar-only check when the scale is unknown.

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

# ---------------------------------------------------------------- helpers --

sub shown {
    my ($s) = @_;
    $s = substr($s, 0, 50) . '...' if length $s > 50;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

sub is_problem {
    my ($r, $status, $code, $name) = @_;
    subtest "$name -> $status $code" => sub {
        is($r->{status}, $status, "status $status") or diag('body: ' . shown($r->{body} // ''));
        like($r->{headers}{'content-type'} // '', qr{^application/problem\+json\s*(;|\z)}i,
             'Content-Type application/problem+json');
        my $j = eval { $r->json };
        ok(ref $j eq 'HASH', 'body is a JSON object') or return;
        is($j->{code}, $code, "code $code");
        is($j->{status}, $status, 'status member');
        ok(!exists $j->{instance}, 'no instance member');
    };
}

sub post_raw {
    my ($path, $body) = @_;
    return $t->request('POST', $path, body => $body,
                       headers => { 'Content-Type' => 'application/json' });
}

sub jstr { my ($s) = @_; $s =~ s/(["\\])/\\$1/g; return qq("$s") }

# An amount given as JSON text: 'S:10.5' is the string "10.5", anything
# else is the raw JSON value text (10.5, 1e2, true, [], null...).
sub amount_json {
    my ($a) = @_;
    return $a =~ /^S:(.*)\z/s ? jstr($1) : $a;
}

sub open_raw {
    my ($n, $amount_json, $currency) = @_;
    my $b = '{"accountNumber":' . jstr($n)
          . (defined $currency ? ',"currency":' . jstr($currency) : '')
          . (defined $amount_json ? ',"initialBalance":' . $amount_json : '') . '}';
    return post_raw('/accounts', $b);
}

sub transfer_raw {
    my ($id, $src, $dst, $amount_json, %o) = @_;
    my $b = '{"transactionId":' . jstr($id) . ',"sourceAccountNumber":' . jstr($src)
          . ',"destinationAccountNumber":' . jstr($dst) . ',"amount":' . $amount_json
          . (defined $o{currency} ? ',"currency":' . jstr($o{currency}) : '') . '}';
    return post_raw('/accounts/transactions', $b);
}

sub balance {
    my ($n) = @_;
    my $r = $t->get("/accounts/$n/balance?consistency=strong");
    return $r->{status} == 200 ? $r->json->{balance} : "status $r->{status}";
}

sub counts {
    my $dbh = $t->dbh;
    return join '/', map { scalar $dbh->selectrow_array("SELECT COUNT(*) FROM $_") }
        qw(accounts transactions entries);
}

my $SEQ = 0;

# ------------------------------------------- initialBalance: accepted --

for my $c ([ 'S:0',                      'USD', '0.00' ],
           [ '0',                        'USD', '0.00' ],
           [ 'S:10',                     'USD', '10.00' ],
           [ 'S:10.5',                   'USD', '10.50' ],
           [ 'S:10.50',                  'USD', '10.50' ],
           [ '10.50',                    'USD', '10.50' ],
           [ '10.5',                     'USD', '10.50' ],
           [ '0.5',                      'USD', '0.50' ],
           [ '0.29',                     'USD', '0.29' ],
           [ 'S:0.01',                   'USD', '0.01' ],
           [ 'S:999999999999999999.99',  'USD', '999999999999999999.99' ],
           [ '999999999999999999.99',    'USD', '999999999999999999.99' ],
           [ '9007199254740993',         'USD', '9007199254740993.00' ],
           [ 'S:1000',                   'JPY', '1000' ],
           [ 'S:999999999999999999',     'JPY', '999999999999999999' ],
           [ 'S:0.00000001',             'BTC', '0.00000001' ],
           [ 'S:21000000.12345678',      'BTC', '21000000.12345678' ],
           [ 'S:0.000000000000000001',   'ETH', '0.000000000000000001' ],
           [ '0.000000000000000001',     'ETH', '0.000000000000000001' ],
           [ 'S:999999999999999999.999999999999999999', 'ETH',
             '999999999999999999.999999999999999999' ],
           [ 'S:1.1',                    'ETH', '1.100000000000000000' ]) {
    my ($a, $cur, $want) = @$c;
    my $n = 'IB-' . ++$SEQ;
    my $r = open_raw($n, amount_json($a), $cur);
    is($r->{status}, 201, "initialBalance " . shown(amount_json($a)) . " $cur: 201")
        or diag('body: ' . shown($r->{body}));
    is(eval { $r->json->{balance} }, $want, "... balance \"$want\" in the 201");
    is(balance($n), $want, "... balance \"$want\" from the database");
    is($t->get("/accounts/$n")->json->{balance}, $want, "... balance \"$want\" from GET");
}

# ------------------------------------------- initialBalance: rejected --

my @bad_common = ('S:-1', 'S:-0', 'S:-0.00', 'S:+1', 'S:1e5', 'S:1E5', '1e2', '1E2', '1e-2', '1.0e1',
                  'S:.5', 'S:5.', 'S:05', 'S:00', 'S:00.5', 'S: 5', 'S:5 ', 'S:1,5', 'S:', 'S:abc',
                  'S:0x10', 'S:1.2.3', 'S:1_000', 'S:NaN', 'S:Infinity', 'S:-', 'S:.',
                  "S:\x{661}", '"5\n"', 'S:10.500', 'S:1.001', '10.500', '-1', '-0', '-0.5',
                  'S:1000000000000000000', '1000000000000000000', 'S:10000000000000000000.5',
                  'S:' . ('9' x 40), 'S:1' . ('0' x 600), 'true', 'false', '[]', '["1"]', '{}',
                  '{"value":"1"}', 'null');
my $before = counts();
for my $a (@bad_common) {
    is_problem(open_raw('IBX-' . ++$SEQ, amount_json($a), 'USD'), 400, 'invalid_amount',
               'initialBalance ' . shown(amount_json($a)) . ' USD');
}
for my $c ([ 'S:1.5', 'JPY' ], [ 'S:1.0', 'JPY' ], [ '1.5', 'JPY' ], [ 'S:1000000000000000000', 'JPY' ],
           [ 'S:0.000000001', 'BTC' ], [ 'S:0.0000000000000000001', 'ETH' ],
           [ 'S:1000000000000000000', 'ETH' ], [ 'S:10.500', 'EUR' ], [ 'S:1.001', 'CNY' ]) {
    my ($a, $cur) = @$c;
    is_problem(open_raw('IBX-' . ++$SEQ, amount_json($a), $cur), 400, 'invalid_amount',
               'initialBalance ' . shown(amount_json($a)) . " $cur");
}
is_problem(open_raw('IBX-' . ++$SEQ, '"10.500"'), 400, 'invalid_amount',
           'initialBalance "10.500" with the default currency (USD)');
is(counts(), $before, 'no account opened by an invalid initialBalance');

# -------------------------------------------------- transfers: setup --

for my $c ([ 'U1', 'USD', '1000.00' ], [ 'U2', 'USD', '0' ], [ 'J1', 'JPY', '1000' ],
           [ 'J2', 'JPY', '0' ], [ 'E1', 'ETH', '0.000000000000000001' ], [ 'E2', 'ETH', '0' ],
           [ 'B1', 'BTC', '1' ], [ 'B2', 'BTC', '0' ],
           [ 'BIG', 'USD', '999999999999999999.99' ], [ 'BIGDST', 'USD', '0' ]) {
    my $r = $t->post_json('/accounts', { accountNumber => $c->[0], currency => $c->[1],
                                         initialBalance => $c->[2] });
    is($r->{status}, 201, "open $c->[0] $c->[1] $c->[2]") or diag($r->{body});
}
is(balance('E1'), '0.000000000000000001', 'ETH initialBalance "0.000000000000000001" exactly');

# ------------------------------------------------ transfers: accepted --

{
    my $src_cents = 100000;
    for my $c ([ 'S:10',    '10.00', 1000 ],
               [ 'S:10.5',  '10.50', 1050 ],
               [ 'S:10.50', '10.50', 1050 ],
               [ '10.50',   '10.50', 1050 ],
               [ '10.5',    '10.50', 1050 ],
               [ '7',       '7.00',  700 ],
               [ 'S:0.01',  '0.01',  1 ]) {
        my ($a, $want, $cents) = @$c;
        my $id = 'tx-ok-' . ++$SEQ;
        my $r = transfer_raw($id, 'U1', 'U2', amount_json($a));
        is($r->{status}, 201, 'transfer amount ' . shown(amount_json($a)) . ': 201')
            or diag('body: ' . shown($r->{body}));
        my $j = eval { $r->json } // {};
        is($j->{status}, 'COMPLETED', '... COMPLETED');
        is($j->{amount}, $want, "... amount \"$want\"");
        $src_cents -= $cents;
        my $dst_cents = 100000 - $src_cents;
        is($j->{sourceBalance}, sprintf('%d.%02d', $src_cents / 100, $src_cents % 100),
           '... sourceBalance');
        is($j->{destinationBalance}, sprintf('%d.%02d', $dst_cents / 100, $dst_cents % 100),
           '... destinationBalance');
        is($t->get("/accounts/transactions/$id")->json->{amount}, $want,
           "... GET transaction: amount \"$want\"");
    }
    is(balance('U1'), '940.99', 'U1 balance exactly 940.99');
    is(balance('U2'), '59.01', 'U2 balance exactly 59.01');

    my $r = transfer_raw('tx-big', 'BIG', 'BIGDST', '"999999999999999999.99"');
    is($r->{status}, 201, 'transfer "999999999999999999.99" (18 integer digits): 201')
        or diag($r->{body});
    is(balance('BIGDST'), '999999999999999999.99', 'BIGDST has 999999999999999999.99');
    is(balance('BIG'), '0.00', 'BIG has 0.00');
    $r = transfer_raw('tx-big-back', 'BIGDST', 'BIG', '999999999999999999.98');
    is($r->{status}, 201, 'transfer 999999999999999999.98 as a JSON number: 201') or diag($r->{body});
    is(balance('BIG'), '999999999999999999.98', 'BIG has exactly 999999999999999999.98');
    is(balance('BIGDST'), '0.01', 'BIGDST has exactly 0.01');

    $r = transfer_raw('tx-jpy', 'J1', 'J2', '"10"');
    is($r->{status}, 201, 'JPY transfer "10": 201') or diag($r->{body});
    is(eval { $r->json->{amount} }, '10', '... amount "10"');
    is(balance('J2'), '10', 'J2 has "10"');

    $r = transfer_raw('tx-eth', 'E1', 'E2', '"0.000000000000000001"');
    is($r->{status}, 201, 'ETH transfer "0.000000000000000001": 201') or diag($r->{body});
    is(eval { $r->json->{amount} }, '0.000000000000000001', '... amount exact');
    is(balance('E2'), '0.000000000000000001', 'E2 has exactly 1e-18');
    is(balance('E1'), '0.000000000000000000', 'E1 has exactly zero (18 decimals)');

    $r = transfer_raw('tx-btc', 'B1', 'B2', '0.00000001');
    is($r->{status}, 201, 'BTC transfer 0.00000001 as a JSON number: 201') or diag($r->{body});
    is(balance('B2'), '0.00000001', 'B2 has 0.00000001');
    is(balance('B1'), '0.99999999', 'B1 has 0.99999999');

    # the amount's value, not its text, is compared on a replay
    my $first = transfer_raw('tx-val', 'U1', 'U2', '"10.5"');
    is($first->{status}, 201, 'tx-val "10.5": 201');
    for my $a ('10.5', '"10.50"', '10.50') {
        $r = transfer_raw('tx-val', 'U1', 'U2', $a);
        is($r->{status}, 200, "tx-val replayed with amount $a: 200") or diag($r->{body});
        is($r->{body}, $first->{body}, '... the original body');
    }
    is_problem(transfer_raw('tx-val', 'U1', 'U2', '"10.51"'), 409, 'transaction_id_conflict',
               'tx-val with "10.51"');
    is(balance('U1'), '930.49', 'U1 debited once for tx-val');
}

# ------------------------------------------------ transfers: rejected --

{
    my $before = counts();
    my ($u1, $u2) = (balance('U1'), balance('U2'));
    for my $a (@bad_common, 'S:0', 'S:0.00', 'S:0.0', '0', '0.00', '0.0') {
        is_problem(transfer_raw('tx-free', 'U1', 'U2', amount_json($a)), 400, 'invalid_amount',
                   'transfer amount ' . shown(amount_json($a)) . ' USD');
    }
    is_problem(transfer_raw('tx-free', 'U1', 'U2', '"10.500"', currency => 'USD'), 400,
               'invalid_amount', 'transfer "10.500" with currency USD');
    for my $a ('"1.5"', '1.5', '"1.0"', '"0"') {
        is_problem(transfer_raw('tx-free', 'J1', 'J2', $a), 400, 'invalid_amount',
                   "JPY transfer amount $a");
    }
    is_problem(transfer_raw('tx-free', 'E2', 'E1', '"0.0000000000000000001"'), 400,
               'invalid_amount', 'ETH transfer with 19 decimals');
    is_problem(transfer_raw('tx-free', 'B1', 'B2', '"0.000000001"'), 400, 'invalid_amount',
               'BTC transfer with 9 decimals');
    # precedence around invalid_amount
    is_problem(transfer_raw('tx-free', 'U1', 'U1', '"-1"'), 400, 'invalid_amount',
               'same account + bad amount -> invalid_amount');
    is_problem(transfer_raw('tx-free', 'U1', 'U1', '"1"'), 400, 'same_account',
               'same account + good amount -> same_account');
    is_problem(transfer_raw('tx-free', 'U1', 'U2', '"-1"', currency => 'usd'), 400,
               'unsupported_currency', 'bad currency + bad amount -> unsupported_currency');
    is_problem(transfer_raw('tx-free', 'U1', 'NOPE', '"10.505"'), 400, 'invalid_amount',
               'source known (USD), destination unknown: "10.505" -> invalid_amount');
    is_problem(transfer_raw('tx-free', 'NOPE', 'U2', '"10.505"'), 400, 'invalid_amount',
               'source unknown, destination known (USD): "10.505" -> invalid_amount');

    is(counts(), $before, 'no rejected amount changed or recorded anything');
    is(balance('U1'), $u1, 'U1 unchanged');
    is(balance('U2'), $u2, 'U2 unchanged');
    is($t->get('/accounts/transactions/tx-free')->{status}, 404, 'tx-free is unknown');

    my $r = transfer_raw('tx-free', 'U1', 'U2', '"1.25"');
    is($r->{status}, 201, 'tx-free with a valid amount: 201 (the 400s left the id free)')
        or diag($r->{body});
    is(eval { $r->json->{amount} }, '1.25', '... amount 1.25');
}

# ----------------------------------------------------------- exactness --

{
    is($t->post_json('/accounts', { accountNumber => 'X1', initialBalance => '1.00' })->{status},
       201, 'open X1 with 1.00');
    is($t->post_json('/accounts', { accountNumber => 'X2' })->{status}, 201, 'open X2');
    for my $i (1 .. 10) {
        my $r = $t->post_json('/accounts/transactions', { transactionId => "tx-dime-$i",
            sourceAccountNumber => 'X1', destinationAccountNumber => 'X2', amount => '0.10' });
        is($r->{status}, 201, "dime $i: 201") or diag($r->{body});
    }
    is(balance('X1'), '0.00', 'X1: 1.00 - 10 x 0.10 is exactly 0.00');
    is(balance('X2'), '1.00', 'X2: 10 x 0.10 is exactly 1.00');
    is($t->get('/accounts/X1/balance')->json->{balance}, '0.00', 'X1 from the cache: 0.00');
    is($t->get('/accounts/X1')->json->{version}, 11, 'X1 version 11');
    is_problem($t->post_json('/accounts/transactions', { transactionId => 'tx-dime-11',
        sourceAccountNumber => 'X1', destinationAccountNumber => 'X2', amount => '0.10' }),
        422, 'insufficient_funds', '11th dime');
    is(balance('X1'), '0.00', 'X1 still 0.00');

    is($t->post_json('/accounts', { accountNumber => 'Y1' })->{status}, 201, 'open Y1');
    my $r = transfer_raw('tx-y1', 'U1', 'Y1', '0.1');
    is($r->{status}, 201, 'transfer 0.1 (JSON number): 201');
    $r = transfer_raw('tx-y2', 'U1', 'Y1', '0.2');
    is($r->{status}, 201, 'transfer 0.2 (JSON number): 201');
    is(eval { $r->json->{destinationBalance} }, '0.30', '0.1 + 0.2 is exactly 0.30');
    is(balance('Y1'), '0.30', 'Y1 balance exactly 0.30');
    $r = transfer_raw('tx-y3', 'Y1', 'U2', '"0.30"');
    is($r->{status}, 201, 'Y1 sends "0.30" back: 201');
    is(balance('Y1'), '0.00', 'Y1 exactly 0.00');
}

# ------------------------------------------ scale unknown: grammar only --

{
    my $r = transfer_raw('tx-nx-1', 'NX1', 'NX2', '"10.505"');
    is_problem($r, 404, 'account_not_found', 'neither account exists, "10.505", no currency');
    $r = transfer_raw('tx-nx-2', 'NX1', 'NX2', '10.505');
    is_problem($r, 404, 'account_not_found', 'neither account exists, 10.505 as a number');
    $r = transfer_raw('tx-nx-3', 'NX1', 'NX2', '"1.5"');
    is_problem($r, 404, 'account_not_found', 'neither account exists, "1.5"');
    $r = transfer_raw('tx-nx-4', 'NX1', 'NX2', '"1.5"', currency => 'BTC');
    is_problem($r, 404, 'account_not_found', 'neither account exists, "1.5" BTC');
    for my $a ('"-1"', '"1e5"', '1e2', '"05"', '".5"', '"5."', '" 5"', '"abc"', 'true', 'null', '[]') {
        is_problem(transfer_raw('tx-nx-g', 'NX1', 'NX2', $a), 400, 'invalid_amount',
                   "neither account exists, bad grammar $a");
    }
    is_problem(transfer_raw('tx-nx-g', 'NX1', 'NX2', '"10.505"', currency => 'USD'), 400,
               'invalid_amount', 'neither account exists, "10.505" with currency USD');
    is_problem(transfer_raw('tx-nx-g', 'NX1', 'NX2', '"1.5"', currency => 'JPY'), 400,
               'invalid_amount', 'neither account exists, "1.5" with currency JPY');
    is($t->get('/accounts/transactions/tx-nx-g')->{status}, 404, 'the 400s were not recorded');
    $r = $t->get('/accounts/transactions/tx-nx-1');
    is($r->{status}, 200, 'the 404 was recorded');
    my $j = eval { $r->json } // {};
    is($j->{status}, 'REJECTED', '... REJECTED');
    is($j->{code}, 'account_not_found', '... account_not_found');
    ok(exists $j->{currency} && !defined $j->{currency}, '... currency null');
    is($j->{amount}, '10.505', '... amount as given');
}

done_testing();
