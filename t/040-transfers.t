#!/usr/bin/perl
# Acceptance tests for transfers: POST /accounts/transactions and
# GET /accounts/transactions/{id}, as /work/shared/API.md describes them
# (status codes, bodies, idempotency, recorded rejections, the order in
# which errors win, timestamps) plus a look at the database.

use strict;
use warnings;

use Test::More;
use Math::BigFloat;
use POSIX ();
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

my $TS_RE = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/;
my %INITIAL;     # account => initial balance (text)

# ---------------------------------------------------------------- helpers --

sub open_account {
    my ($n, $cur, $init) = @_;
    my %b = (accountNumber => $n, currency => $cur);
    $b{initialBalance} = $init if defined $init;
    my $r = $t->post_json('/accounts', \%b);
    is($r->{status}, 201, "open account $n ($cur " . ($init // '0') . ')')
        or diag($r->{raw});
    $INITIAL{$n} = $init // '0';
    return $r;
}

sub xfer {
    my ($id, $src, $dst, $amount, %more) = @_;
    my %b = (transactionId => $id, sourceAccountNumber => $src,
             destinationAccountNumber => $dst, amount => $amount, %more);
    delete @b{ grep { !defined $b{$_} && !exists $more{$_} } keys %b };
    return $t->post_json('/accounts/transactions', \%b);
}

# a body given as raw JSON text (JSON numbers with their exact text)
sub post_raw {
    my ($json) = @_;
    return $t->request('POST', '/accounts/transactions', body => $json,
        headers => { 'Content-Type' => 'application/json' });
}

sub jdecode { my $d = eval { JSON::PP->new->decode($_[0]) }; $d }

# status + problem document with the code
sub problem {
    my ($r, $status, $code, $name) = @_;
    my $ok = is($r->{status}, $status, "$name: status $status");
    my $j = jdecode($r->{body}) // {};
    $ok &= is($j->{code}, $code, "$name: code $code");
    like($r->{headers}{'content-type'} // '', qr{^application/problem\+json}i,
        "$name: problem+json");
    diag("response: $r->{raw}") unless $ok;
    return $r;
}

sub balance {
    my ($n) = @_;
    my $r = $t->get("/accounts/$n/balance");
    return $r->{status} == 200 ? $r->json : { status => $r->{status} };
}

# "balance@version" of each account, to tell that nothing changed
sub state_of {
    return join ' ', map { my $b = balance($_); "$_=" . ($b->{balance} // 'none')
        . '@' . ($b->{version} // 'none') } @_;
}

sub norm {   # exact decimal text without trailing fractional zeros
    my ($s) = @_;
    return undef unless defined $s;
    $s =~ s/(\.\d*?)0+\z/$1/;
    $s =~ s/\.\z//;
    return $s;
}

sub check_balance {
    my ($n, $bal, $ver, $name) = @_;
    my $b = balance($n);
    is($b->{balance}, $bal, "$name: $n balance $bal");
    is($b->{version}, $ver, "$name: $n version $ver") if defined $ver;
}

# ------------------------------------------------------------------ setup --

open_account('A', 'USD', '1000.00');
open_account('B', 'USD');
open_account('C', 'USD', '50.00');
open_account('EMPTY', 'USD');
open_account('E1', 'EUR', '100.00');
open_account('E2', 'EUR');
open_account('J1', 'JPY', '5000');
open_account('J2', 'JPY');
open_account('BT1', 'BTC', '2');
open_account('BT2', 'BTC');

# ------------------------------------------------------------ 201 applied --

my $r = xfer('tx1', 'A', 'B', '10.50');
is($r->{status}, 201, 'transfer: 201') or diag($r->{raw});
like($r->{headers}{'content-type'} // '', qr{^application/json}i, 'transfer: application/json');
my $tx1_body = $r->{body};
my $tx1 = jdecode($tx1_body) // {};
is($tx1->{transactionId}, 'tx1', 'transfer: transactionId');
is($tx1->{sourceAccountNumber}, 'A', 'transfer: sourceAccountNumber');
is($tx1->{destinationAccountNumber}, 'B', 'transfer: destinationAccountNumber');
is($tx1->{amount}, '10.50', 'transfer: amount formatted to the scale');
is($tx1->{currency}, 'USD', 'transfer: currency (omitted: the accounts\')');
is($tx1->{status}, 'COMPLETED', 'transfer: status COMPLETED');
like($tx1->{createdAt} // '', $TS_RE, 'transfer: createdAt is UTC with milliseconds');
is($tx1->{sourceBalance}, '989.50', 'transfer: sourceBalance');
is($tx1->{destinationBalance}, '10.50', 'transfer: destinationBalance');
check_balance('A', '989.50', 2, 'after tx1');
check_balance('B', '10.50', 2, 'after tx1');

$r = $t->get('/accounts/transactions/tx1');
is($r->{status}, 200, 'GET tx1: 200');
my $g = jdecode($r->{body}) // {};
for my $k (qw(transactionId sourceAccountNumber destinationAccountNumber amount
              currency status createdAt)) {
    is($g->{$k}, $tx1->{$k}, "GET tx1: $k as in the 201");
}

# other scales
$r = xfer('tx-jpy', 'J1', 'J2', '1000');
is($r->{status}, 201, 'JPY transfer: 201') or diag($r->{raw});
$g = jdecode($r->{body}) // {};
is($g->{amount}, '1000', 'JPY amount has no decimals');
is($g->{currency}, 'JPY', 'JPY currency');
is($g->{sourceBalance}, '4000', 'JPY sourceBalance');
is($g->{destinationBalance}, '1000', 'JPY destinationBalance');

$r = xfer('tx-btc', 'BT1', 'BT2', '0.5');
is($r->{status}, 201, 'BTC transfer: 201') or diag($r->{raw});
$g = jdecode($r->{body}) // {};
is($g->{amount}, '0.50000000', 'BTC amount has 8 decimals');
is($g->{sourceBalance}, '1.50000000', 'BTC sourceBalance');
is($g->{destinationBalance}, '0.50000000', 'BTC destinationBalance');

# the whole balance may be moved (never below zero, but down to zero)
$r = xfer('tx-all', 'C', 'B', '50');
is($r->{status}, 201, 'moving the whole balance: 201') or diag($r->{raw});
is((jdecode($r->{body}) // {})->{sourceBalance}, '0.00', 'source balance down to 0.00');
check_balance('C', '0.00', 2, 'after tx-all');
check_balance('B', '60.50', 3, 'after tx-all');

# a JSON number amount is read from its text
$r = post_raw('{"transactionId":"tx-num","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":0.5}');
is($r->{status}, 201, 'JSON number amount: 201') or diag($r->{raw});
is((jdecode($r->{body}) // {})->{amount}, '0.50', 'JSON number amount: "0.50"');
is($t->post_json('/accounts/transactions', { transactionId => 'tx-back',
    sourceAccountNumber => 'B', destinationAccountNumber => 'A', amount => '0.50' })->{status},
   201, 'and back');

# ids with the other allowed characters; account numbers byte for byte
$r = xfer('Tx:1.2_3-4', 'A', 'B', '0.01');
is($r->{status}, 201, 'transaction id with : . _ -: 201') or diag($r->{raw});
is($t->get('/accounts/transactions/Tx:1.2_3-4')->{status}, 200, 'GET it: 200');
problem(xfer('tx-lc', 'a', 'B', '0.01'), 404, 'account_not_found',
        'source "a" when only "A" exists');

# 64-character ids and account numbers are fine
my $id64 = 'i' x 63 . 'Z';
my $acc64 = 'a' . ('_.:-' x 15) . 'xyz';
is(length $acc64, 64, '64-char account number');
open_account($acc64, 'USD');
$r = xfer($id64, 'A', $acc64, '1');
is($r->{status}, 201, '64-char transaction id and account number: 201') or diag($r->{raw});
is($t->get("/accounts/transactions/$id64")->{status}, 200, 'GET with 64-char id: 200');

# ---------------------------------------------------------- idempotency --

my $before = state_of(qw(A B C));
$r = xfer('tx1', 'A', 'B', '10.50');
is($r->{status}, 200, 'replay: 200');
is($r->{body}, $tx1_body, 'replay: original body byte for byte');
like($r->{headers}{'content-type'} // '', qr{^application/json}i, 'replay: application/json');

$r = xfer('tx1', 'A', 'B', '10.5');
is($r->{status}, 200, 'replay with "10.5": 200');
is($r->{body}, $tx1_body, 'replay with "10.5": original body');

$r = post_raw('{"transactionId":"tx1","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":10.5}');
is($r->{status}, 200, 'replay with JSON number 10.5: 200');
is($r->{body}, $tx1_body, 'replay with JSON number 10.5: original body');

$r = post_raw('{"transactionId":"tx1","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":10.50}');
is($r->{status}, 200, 'replay with JSON number 10.50: 200');
is($r->{body}, $tx1_body, 'replay with JSON number 10.50: original body');

$r = xfer('tx1', 'A', 'B', '10.50', currency => 'USD');
is($r->{status}, 200, 'replay with currency USD given (omitted at first): 200');
is($r->{body}, $tx1_body, 'replay with currency USD given: original body');

$r = xfer('tx1', 'A', 'B', '10.50', timestamp => '2030-01-01T00:00:00Z');
is($r->{status}, 200, 'replay with a timestamp (none at first): 200');
is($r->{body}, $tx1_body, 'replay with a timestamp: original body');
is(state_of(qw(A B C)), $before, 'replays changed nothing');

# a transfer first given with currency and a timestamp
$r = xfer('tx2', 'A', 'C', '1.25', currency => 'USD',
          timestamp => '2026-11-20T10:00:00.000Z');
is($r->{status}, 201, 'tx2 with currency and timestamp: 201') or diag($r->{raw});
my $tx2_body = $r->{body};
is((jdecode($tx2_body) // {})->{timestamp}, '2026-11-20T10:00:00.000Z', 'tx2 timestamp');
$before = state_of(qw(A B C));
$r = xfer('tx2', 'A', 'C', '1.25');
is($r->{status}, 200, 'replay with currency omitted (USD at first): 200');
is($r->{body}, $tx2_body, 'replay with currency omitted: original body');
$r = xfer('tx2', 'A', 'C', '1.250', currency => 'USD',
          timestamp => '2026-11-21T11:11:11.111Z');
# "1.250" has more decimals than USD allows: 400 wins over the replay
problem($r, 400, 'invalid_amount', 'replay with "1.250" (3 decimals for USD)');
$r = xfer('tx2', 'A', 'C', '1.25', currency => 'USD',
          timestamp => '2026-11-21T11:11:11.111Z');
is($r->{status}, 200, 'replay with another timestamp: 200');
is($r->{body}, $tx2_body, 'replay with another timestamp: original body and timestamp');
is(state_of(qw(A B C)), $before, 'replays of tx2 changed nothing');

# later transfers change the balances; a replay still tells the old ones
$r = xfer('tx3', 'A', 'B', '100');
is($r->{status}, 201, 'tx3: 201') or diag($r->{raw});
$before = state_of(qw(A B C));
$r = xfer('tx1', 'A', 'B', '10.50');
is($r->{status}, 200, 'replay of tx1 after tx3: 200');
is($r->{body}, $tx1_body, 'replay of tx1 after tx3: balances as they were then');
is(state_of(qw(A B C)), $before, 'replay after tx3 changed nothing');

# same id, other fields: 409
my @conflicts = (
    [ 'other amount',              [ 'tx1', 'A', 'B', '10.51' ] ],
    [ 'other amount (number)',     'raw:{"transactionId":"tx1","sourceAccountNumber":"A","destinationAccountNumber":"B","amount":11}' ],
    [ 'other destination',         [ 'tx1', 'A', 'C', '10.50' ] ],
    [ 'other source',              [ 'tx1', 'C', 'B', '10.50' ] ],
    [ 'swapped accounts',          [ 'tx1', 'B', 'A', '10.50' ] ],
    [ 'currency EUR vs USD accounts', [ 'tx1', 'A', 'B', '10.50', currency => 'EUR' ] ],
    [ 'currency EUR, tx2 had USD', [ 'tx2', 'A', 'C', '1.25', currency => 'EUR' ] ],
    [ 'new fields would be 404',   [ 'tx1', 'NOPE-S', 'B', '10.50' ] ],
    [ 'new destination missing',   [ 'tx1', 'A', 'NOPE-D', '10.50' ] ],
    [ 'new fields would be currency_mismatch', [ 'tx1', 'A', 'E2', '10.50' ] ],
    [ 'new fields would be insufficient_funds', [ 'tx1', 'EMPTY', 'B', '10.50' ] ],
);
$before = state_of(qw(A B C EMPTY E2));
for my $c (@conflicts) {
    my ($name, $req) = @$c;
    $r = ref $req ? xfer(@$req) : post_raw(substr($req, 4));
    problem($r, 409, 'transaction_id_conflict', "same id, $name");
}
is(state_of(qw(A B C EMPTY E2)), $before, 'conflicts changed nothing');
is($t->get('/accounts/transactions/tx1')->{status}, 200, 'tx1 still there');
is((jdecode($t->get('/accounts/transactions/tx1')->{body}) // {})->{amount}, '10.50',
   'tx1 unchanged by the conflicts');
$r = $t->get('/accounts/transactions/NOPE-S');
is($r->{status}, 404, 'no transaction made of a conflict');

# ------------------------------------------------------------ rejections --

$before = state_of(qw(A B C EMPTY E1 E2));

problem(xfer('rj-same', 'A', 'A', '1.00'), 400, 'same_account', 'source == destination');
problem(xfer('rj-src', 'NOPE1', 'B', '1.00'), 404, 'account_not_found', 'source missing');
problem(xfer('rj-dst', 'A', 'NOPE2', '1.00'), 404, 'account_not_found', 'destination missing');
problem(xfer('rj-cur', 'A', 'E2', '1.00'), 422, 'currency_mismatch', 'USD -> EUR accounts');
problem(xfer('rj-cur2', 'A', 'B', '1.00', currency => 'EUR'), 422, 'currency_mismatch',
        'currency EUR between two USD accounts');
problem(xfer('rj-cur3', 'E1', 'E2', '1.00', currency => 'USD'), 422, 'currency_mismatch',
        'currency USD between two EUR accounts');
problem(xfer('rj-funds', 'EMPTY', 'B', '0.01'), 422, 'insufficient_funds', 'empty source');
problem(xfer('rj-funds2', 'E1', 'E2', '100.01'), 422, 'insufficient_funds',
        'a cent more than the balance');
problem(xfer('rj-usd', 'A', 'B', '1.00', currency => 'usd'), 400, 'unsupported_currency',
        'currency "usd"');
problem(xfer('rj-xxx', 'A', 'B', '1.00', currency => 'XXX'), 400, 'unsupported_currency',
        'currency "XXX"');

is(state_of(qw(A B C EMPTY E1 E2)), $before, 'rejections changed nothing');

# balance overflow
open_account('OV', 'USD', '999999999999999999.00');
$before = state_of(qw(A OV));
problem(xfer('rj-ov', 'A', 'OV', '1.00'), 422, 'balance_overflow',
        'credit of 1.00 onto 999999999999999999.00');
is(state_of(qw(A OV)), $before, 'overflow changed nothing');

# invalid_request
my %base = (transactionId => 'iv', sourceAccountNumber => 'A',
            destinationAccountNumber => 'B', amount => '1.00');
my @invalid = (
    [ 'empty transactionId',       { transactionId => '' } ],
    [ 'transactionId "-x"',        { transactionId => '-x' } ],
    [ 'transactionId "a b"',       { transactionId => 'a b' } ],
    [ 'transactionId of 65 chars', { transactionId => 'x' x 65 } ],
    [ 'transactionId "é"',         { transactionId => "\x{e9}" } ],
    [ 'transactionId a number',    { transactionId => 42 } ],
    [ 'source "transactions"',     { sourceAccountNumber => 'transactions' } ],
    [ 'destination "transactions"', { destinationAccountNumber => 'transactions' } ],
    [ 'empty source',              { sourceAccountNumber => '' } ],
    [ 'destination "a b"',         { destinationAccountNumber => 'a b' } ],
    [ 'source "-x"',               { sourceAccountNumber => '-x' } ],
    [ 'destination of 65 chars',   { destinationAccountNumber => 'D' x 65 } ],
    [ 'missing transactionId',     { transactionId => undef } ],
    [ 'missing sourceAccountNumber', { sourceAccountNumber => undef } ],
    [ 'missing destinationAccountNumber', { destinationAccountNumber => undef } ],
    [ 'missing amount',            { amount => undef } ],
    [ 'unknown field',             { memo => 'hello' } ],
    [ 'currency a number',         { currency => 840 } ],
);
$before = state_of(qw(A B));
for my $c (@invalid) {
    my ($name, $over) = @$c;
    my %b = (%base, %$over);
    delete @b{ grep { !defined $b{$_} } keys %b };
    problem($t->post_json('/accounts/transactions', \%b), 400, 'invalid_request', $name);
}
problem(post_raw('{"transactionId":"iv","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":"1.00","currency":null}'),
    400, 'invalid_request', 'currency null');
is(state_of(qw(A B)), $before, 'invalid requests changed nothing');
is($t->get('/accounts/transactions/iv')->{status}, 404, 'invalid requests not recorded');

# ------------------------------------------------- recorded rejections --

# 404, then the missing account is opened: the id keeps its 404
my $rj_dst = xfer('rec-404', 'A', 'LATER', '5.00');
problem($rj_dst, 404, 'account_not_found', 'rec-404 first');
my $rj_src = xfer('rec-404s', 'LATERSRC', 'B', '5.00');
problem($rj_src, 404, 'account_not_found', 'rec-404s first');
open_account('LATER', 'USD');
open_account('LATERSRC', 'USD', '100.00');
$before = state_of(qw(A B LATER LATERSRC));
$r = xfer('rec-404', 'A', 'LATER', '5.00');
is($r->{status}, 404, 'rec-404 replayed after the account is opened: still 404');
is($r->{body}, $rj_dst->{body}, 'rec-404 replay: byte-identical body');
$r = xfer('rec-404', 'A', 'LATER', '5', currency => 'USD');
is($r->{status}, 404, 'rec-404 replayed with "5" and currency USD: still 404');
is($r->{body}, $rj_dst->{body}, 'rec-404 replay with "5": byte-identical body');
$r = xfer('rec-404s', 'LATERSRC', 'B', '5.00');
is($r->{status}, 404, 'rec-404s replayed after the source is opened: still 404');
is($r->{body}, $rj_src->{body}, 'rec-404s replay: byte-identical body');
problem(xfer('rec-404', 'A', 'LATER', '6.00'), 409, 'transaction_id_conflict',
        'rec-404 with another amount');
is(state_of(qw(A B LATER LATERSRC)), $before, 'replays of 404s changed nothing');

# A 404 recorded while neither account existed was judged on the amount's
# grammar only; once the accounts are opened the same request is still a
# replay of that 404, though "10.505" is now too precise for USD.
problem(xfer('rec-unk', 'NEWS', 'NEWD', '10.505'), 404, 'account_not_found',
        'rec-unk first (no scale known)');
my $rj_unk = xfer('rec-unk', 'NEWS', 'NEWD', '10.505');
open_account('NEWS', 'USD', '50.00');
open_account('NEWD', 'USD');
$r = xfer('rec-unk', 'NEWS', 'NEWD', '10.5050');
is($r->{status}, 404, 'rec-unk replayed after both accounts opened: still 404');
is($r->{body}, $rj_unk->{body}, 'rec-unk replay: byte-identical body');
problem(xfer('rec-unk', 'NEWS', 'NEWD', '10.506'), 400, 'invalid_amount',
        'rec-unk with another too precise amount: the 400 comes first');
problem(xfer('rec-unk2', 'NEWS', 'NEWD', '10.505'), 400, 'invalid_amount',
        'a new id with that amount, now that the scale is known');
is(balance('NEWS')->{balance}, '50.00', 'nothing applied');

# 422 insufficient funds, then the source is funded: the id keeps its 422
open_account('POOR', 'USD');
my $rj_funds = xfer('rec-422', 'POOR', 'B', '5.00');
problem($rj_funds, 422, 'insufficient_funds', 'rec-422 first');
is(xfer('fund-poor', 'A', 'POOR', '20.00')->{status}, 201, 'fund POOR');
$before = state_of(qw(POOR B));
$r = xfer('rec-422', 'POOR', 'B', '5.00');
is($r->{status}, 422, 'rec-422 replayed after funding: still 422');
is($r->{body}, $rj_funds->{body}, 'rec-422 replay: byte-identical body');
is(state_of(qw(POOR B)), $before, 'replay of the 422 changed nothing');
check_balance('POOR', '20.00', 2, 'POOR funded, not debited');

# 422 currency mismatch and overflow are recorded as well
my $rj_cur = xfer('rec-cur', 'A', 'E2', '1.00');
problem($rj_cur, 422, 'currency_mismatch', 'rec-cur first');
$r = xfer('rec-cur', 'A', 'E2', '1');
is($r->{status}, 422, 'rec-cur replay: 422');
is($r->{body}, $rj_cur->{body}, 'rec-cur replay: byte-identical body');
$r = xfer('rj-ov', 'A', 'OV', '1.00');
is($r->{status}, 422, 'overflow replay: 422');
is((jdecode($r->{body}) // {})->{code}, 'balance_overflow', 'overflow replay: code');

# 400s are not recorded: the id stays free
my @free = (
    [ 'free-ir',  [ 'free-ir', 'A', 'B', '1.00', memo => 'x' ], 'invalid_request' ],
    [ 'free-uc',  [ 'free-uc', 'A', 'B', '1.00', currency => 'usd' ], 'unsupported_currency' ],
    [ 'free-ia',  [ 'free-ia', 'A', 'B', '1.001' ], 'invalid_amount' ],
    [ 'free-ia0', [ 'free-ia0', 'A', 'B', '0' ], 'invalid_amount' ],
    [ 'free-sa',  [ 'free-sa', 'A', 'A', '1.00' ], 'same_account' ],
    [ 'free-ts',  [ 'free-ts', 'A', 'B', '1.00', timestamp => '2026-02-30T00:00:00Z' ],
      'invalid_request' ],
);
for my $c (@free) {
    my ($id, $req, $code) = @$c;
    problem(xfer(@$req), 400, $code, "$id first ($code)");
    is($t->get("/accounts/transactions/$id")->{status}, 404, "$id: not recorded");
    my $b = balance('B')->{balance};
    $r = xfer($id, 'A', 'B', '2.00');
    is($r->{status}, 201, "$id: a later valid request with the id gets 201")
        or diag($r->{raw});
    is((jdecode($r->{body}) // {})->{amount}, '2.00', "$id: the later request's amount");
}

# ------------------------------------------------------------ precedence --

$before = state_of(qw(A B C EMPTY E2 POOR OV));
problem(xfer('p1', 'A', 'B', '-1', currency => 'XXX'), 400, 'unsupported_currency',
        'unsupported currency + bad amount');
problem(xfer('-p2', 'A', 'B', '1.00', currency => 'usd'), 400, 'invalid_request',
        'bad id + unsupported currency');
problem(xfer('p2b', 'A', 'B', '1.00', currency => 'usd', memo => 1), 400, 'invalid_request',
        'unknown field + unsupported currency');
problem(xfer('p3', 'A', 'A', '1.001'), 400, 'invalid_amount', 'bad amount + same account');
problem(xfer('p3b', 'A', 'A', '0'), 400, 'invalid_amount', 'zero amount + same account');
problem(xfer('p3c', 'A', 'A', '1', currency => 'usd'), 400, 'unsupported_currency',
        'unsupported currency + same account');
problem(xfer('p4', 'GHOST', 'GHOST', '10.505'), 400, 'same_account',
        'same non-existent account, unknown scale: same_account');
problem(xfer('p4b', 'GHOST', 'GHOST', '10.505', currency => 'USD'), 400, 'invalid_amount',
        'same non-existent account, USD scale: invalid_amount');
problem(xfer('p4c', 'GHOST', 'GHOST', '1e3'), 400, 'invalid_amount',
        'same non-existent account, exponent: invalid_amount');
problem(xfer('p5', 'GH1', 'GH2', '10.505'), 404, 'account_not_found',
        'unknown accounts, no currency: only the grammar, then 404');
problem(xfer('p5b', 'GH1', 'GH2', '10.505', currency => 'USD'), 400, 'invalid_amount',
        'unknown accounts, currency USD: invalid_amount');
problem(xfer('p5c', 'GH1', 'B', '10.505'), 400, 'invalid_amount',
        'unknown source, USD destination: invalid_amount');
problem(xfer('p5d', 'A', 'GH2', '10.505'), 400, 'invalid_amount',
        'USD source, unknown destination: invalid_amount');
problem(xfer('p5e', 'GH1', 'GH2', '01.5'), 400, 'invalid_amount',
        'unknown accounts, leading zero: invalid_amount');
problem(xfer('p5f', 'GH1', 'GH2', '-1'), 400, 'invalid_amount',
        'unknown accounts, negative: invalid_amount');
problem(xfer('p5g', 'A', 'GH2', '0'), 400, 'invalid_amount',
        'USD source, unknown destination, zero: invalid_amount');
# 400s come before the replay / 409
problem(xfer('tx1', 'A', 'B', '10.505'), 400, 'invalid_amount',
        'reused id with a bad amount: 400 before the replay');
problem(xfer('tx1', 'A', 'A', '10.50'), 400, 'same_account',
        'reused id with same account: 400 before the 409');
problem(xfer('tx1', 'A', 'B', '10.50', currency => 'XXX'), 400, 'unsupported_currency',
        'reused id with an unknown currency: 400 before the 409');
# the 409 before 404 / 422
problem(xfer('tx1', 'GH1', 'GH2', '10.50'), 409, 'transaction_id_conflict',
        'reused id, new fields would be 404: 409');
problem(xfer('rec-422', 'POOR', 'E2', '5.00'), 409, 'transaction_id_conflict',
        'reused rejected id, new fields would be 422: 409');
# 404 before 422
problem(xfer('p6', 'A', 'GH2', '1.00', currency => 'EUR'), 404, 'account_not_found',
        'missing destination + currency EUR vs USD source: 404');
problem(xfer('p6b', 'GH1', 'E2', '1.00', currency => 'USD'), 404, 'account_not_found',
        'missing source + currency USD vs EUR destination: 404');
problem(xfer('p6c', 'GH1', 'B', '1000000.00'), 404, 'account_not_found',
        'missing source, any amount: 404');
# currency_mismatch before insufficient_funds, and that before overflow
problem(xfer('p7', 'EMPTY', 'E2', '5.00'), 422, 'currency_mismatch',
        'empty USD source -> EUR: currency_mismatch');
problem(xfer('p7b', 'EMPTY', 'B', '5.00', currency => 'EUR'), 422, 'currency_mismatch',
        'empty USD source, currency EUR: currency_mismatch');
problem(xfer('p8', 'EMPTY', 'OV', '1.00'), 422, 'insufficient_funds',
        'empty source -> full destination: insufficient_funds');
is(state_of(qw(A B C EMPTY E2 POOR OV)), $before, 'precedence cases changed nothing');

# ------------------------------------------------------------- timestamps --

my @ts_ok = (
    [ '2026-11-20T10:00:00.1239+01:00', '2026-11-20T09:00:00.123Z' ],
    [ '2026-11-20T10:00:00Z',           '2026-11-20T10:00:00.000Z' ],
    [ '2026-11-20t10:00:00z',           '2026-11-20T10:00:00.000Z' ],
    [ '2026-11-20T10:00:00.9999999Z',   '2026-11-20T10:00:00.999Z' ],
    [ '2026-11-20T10:00:00.5-05:30',    '2026-11-20T15:30:00.500Z' ],
    [ '2026-01-01T00:30:00+01:00',      '2025-12-31T23:30:00.000Z' ],
    [ '2028-02-29T23:59:59.999-00:01',  '2028-03-01T00:00:59.999Z' ],
    [ '2026-11-20T10:00:00.12+00:00',   '2026-11-20T10:00:00.120Z' ],
    [ '2026-11-20T10:00:00-00:00',      '2026-11-20T10:00:00.000Z' ],
    [ '2026-11-20T00:00:00+23:59',      '2026-11-19T00:01:00.000Z' ],
    [ '2026-12-31T23:59:59.999Z',       '2026-12-31T23:59:59.999Z' ],
    [ '2026-11-20T10:00:00.' . ('1234567890' x 6) . 'Z', '2026-11-20T10:00:00.123Z' ],
    [ '1969-07-20T20:17:40Z',           '1969-07-20T20:17:40.000Z' ],
    [ '2000-02-29T00:00:00Z',           '2000-02-29T00:00:00.000Z' ],
    [ '9999-12-31T23:59:59.999Z',       '9999-12-31T23:59:59.999Z' ],
    [ '0001-01-01T00:00:00Z',           '0001-01-01T00:00:00.000Z' ],
    # RFC 3339's date-fullyear is any 4DIGIT, 0000 included
    [ '0000-01-01T00:00:00Z',           '0000-01-01T00:00:00.000Z' ],
);
my $n = 0;
for my $c (@ts_ok) {
    my ($in, $out) = @$c;
    my $id = 'ts-ok-' . ++$n;
    $r = xfer($id, 'A', 'B', '0.01', timestamp => $in);
    is($r->{status}, 201, "timestamp $in accepted") or diag($r->{raw});
    is((jdecode($r->{body}) // {})->{timestamp}, $out, "timestamp $in -> $out");
    is((jdecode($t->get("/accounts/transactions/$id")->{body}) // {})->{timestamp}, $out,
       "GET: timestamp $out");
}

my @ts_bad = (
    [ 'leap second :60',     '2026-12-31T23:59:60Z' ],
    [ 'February 30',         '2026-02-30T00:00:00Z' ],
    [ 'February 29, 2027',   '2027-02-29T00:00:00Z' ],
    [ 'February 29, 1900',   '1900-02-29T00:00:00Z' ],
    [ 'leap second :60 on June 30', '2026-06-30T23:59:60Z' ],
    [ 'no offset',           '2026-11-20T10:00:00' ],
    [ 'date only',           '2026-11-20' ],
    [ 'hour 24',             '2026-11-20T24:00:00Z' ],
    [ 'space for T',         '2026-11-20 10:00:00Z' ],
    [ 'empty string',        '' ],
    [ 'not a date',          'yesterday' ],
    [ 'dot without digits',  '2026-11-20T10:00:00.Z' ],
    [ 'offset without minutes', '2026-11-20T10:00:00+01' ],
    [ 'offset hour 24',      '2026-11-20T10:00:00+24:00' ],
    [ 'month 13',            '2026-13-01T00:00:00Z' ],
    [ 'minute 60',           '2026-11-20T10:60:00Z' ],
    [ 'trailing space',      '2026-11-20T10:00:00Z ' ],
);
$before = state_of(qw(A B));
$n = 0;
for my $c (@ts_bad) {
    my ($name, $in) = @$c;
    problem(xfer('ts-bad-' . ++$n, 'A', 'B', '0.01', timestamp => $in), 400,
            'invalid_request', "timestamp: $name ($in)");
}
problem(post_raw('{"transactionId":"ts-bad-num","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":"0.01","timestamp":1763632800}'),
    400, 'invalid_request', 'timestamp: a number');
problem(post_raw('{"transactionId":"ts-bad-null","sourceAccountNumber":"A",'
    . '"destinationAccountNumber":"B","amount":"0.01","timestamp":null}'),
    400, 'invalid_request', 'timestamp: null');
is(state_of(qw(A B)), $before, 'bad timestamps changed nothing');

# -------------------------------------------- GET /accounts/transactions/ --

sub get_tx {
    my ($id) = @_;
    my $r = $t->get("/accounts/transactions/$id");
    is($r->{status}, 200, "GET $id: 200") or diag($r->{raw});
    return jdecode($r->{body}) // {};
}

$g = get_tx('rec-404');
is($g->{status}, 'REJECTED', 'rec-404: REJECTED');
is($g->{code}, 'account_not_found', 'rec-404: code');
is($g->{transactionId}, 'rec-404', 'rec-404: transactionId');
is($g->{sourceAccountNumber}, 'A', 'rec-404: source');
is($g->{destinationAccountNumber}, 'LATER', 'rec-404: destination');
is($g->{currency}, 'USD', "rec-404: currency is the source's");
is($g->{amount}, '5.00', 'rec-404: amount');
like($g->{createdAt} // '', $TS_RE, 'rec-404: createdAt');

$g = get_tx('rec-404s');
is($g->{currency}, 'USD', "rec-404s (source missing then): the destination's currency");
is($g->{code}, 'account_not_found', 'rec-404s: code');

problem(xfer('rj-e', 'GH1', 'E2', '7'), 404, 'account_not_found', 'missing source -> EUR');
$g = get_tx('rj-e');
is($g->{currency}, 'EUR', "missing source: the destination's currency");
is($g->{amount}, '7.00', 'missing source: amount to the EUR scale');

problem(xfer('rj-j', 'GH1', 'GH2', '7', currency => 'JPY'), 404, 'account_not_found',
        'unknown accounts, currency JPY');
$g = get_tx('rj-j');
is($g->{currency}, 'JPY', "unknown accounts: the request's currency");
is($g->{amount}, '7', 'unknown accounts: amount to the JPY scale');

$g = get_tx('p5');
is($g->{status}, 'REJECTED', 'p5: REJECTED');
is($g->{code}, 'account_not_found', 'p5: code');
ok(exists $g->{currency} && !defined $g->{currency}, 'unknown accounts, no currency: currency null');
is($g->{amount}, '10.505', 'unknown accounts, no currency: amount as given');

problem(post_raw('{"transactionId":"rj-num","sourceAccountNumber":"GH1",'
    . '"destinationAccountNumber":"GH2","amount":10.5000}'), 404, 'account_not_found',
    'unknown accounts, JSON number amount');
$g = get_tx('rj-num');
ok(exists $g->{currency} && !defined $g->{currency}, 'rj-num: currency null');
is($g->{amount}, '10.5000', 'rj-num: amount as given (JSON number text)');

$g = get_tx('rec-cur');
is($g->{code}, 'currency_mismatch', 'rec-cur: code');
is($g->{currency}, 'USD', "currency_mismatch: the source's currency");
is($g->{amount}, '1.00', 'rec-cur: amount');

$g = get_tx('rj-cur3');
is($g->{currency}, 'EUR', "currency USD between EUR accounts: the source's currency");

$g = get_tx('rec-422');
is($g->{code}, 'insufficient_funds', 'rec-422: code');
is($g->{status}, 'REJECTED', 'rec-422: REJECTED');
is($g->{currency}, 'USD', 'rec-422: currency');

$g = get_tx('rj-ov');
is($g->{code}, 'balance_overflow', 'rj-ov: code');

$g = get_tx('tx2');
is($g->{status}, 'COMPLETED', 'tx2: COMPLETED');
is($g->{timestamp}, '2026-11-20T10:00:00.000Z', 'tx2: the first timestamp kept');
is($g->{amount}, '1.25', 'tx2: amount');

problem($t->get('/accounts/transactions/never-seen'), 404, 'transaction_not_found',
        'unknown id');
problem($t->get('/accounts/transactions/-x'), 404, 'transaction_not_found',
        'id "-x" in the path');
problem($t->get('/accounts/transactions/' . ('x' x 65)), 404, 'transaction_not_found',
        'id of 65 chars in the path');
problem($t->get('/accounts/transactions/a%20b'), 404, 'transaction_not_found',
        'id "a b" in the path');
problem($t->get('/accounts/transactions/TX1'), 404, 'transaction_not_found',
        'ids are compared byte for byte (TX1 vs tx1)');

$r = $t->get('/accounts/transactions');
problem($r, 405, 'method_not_allowed', 'GET /accounts/transactions');
is($r->{headers}{allow}, 'POST', 'GET /accounts/transactions: Allow: POST');

# ------------------------------------------------------------ concurrency --

# run the requests in parallel child processes; [status, body] of each
sub parallel {
    my @reqs = @_;
    my @kids;
    for my $req (@reqs) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $res = eval { xfer(@$req) };
            print $wr ($res ? ($res->{status} // 0) . "\n" . $res->{body} : "0\n$@");
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    my @out;
    for my $k (@kids) {
        my ($pid, $rd) = @$k;
        my $data = do { local $/; <$rd> } // '';
        close $rd;
        waitpid($pid, 0);
        my ($st, $body) = split /\n/, $data, 2;
        push @out, [ $st + 0, $body // '' ];
    }
    return @out;
}

# the same id from many clients at once: applied exactly once
open_account('RACE', 'USD');
my @res = parallel(map { [ 'race-1', 'A', 'RACE', '1.00' ] } 1 .. 10);
is(scalar(grep { $_->[0] == 201 } @res), 1, 'same id in parallel: exactly one 201');
is(scalar(grep { $_->[0] == 200 } @res), 9, 'same id in parallel: the others 200');
my %bodies = map { $_->[1] => 1 } @res;
is(scalar keys %bodies, 1, 'same id in parallel: one body for all');
check_balance('RACE', '1.00', 2, 'same id in parallel');

# many debits at once: never below zero
open_account('FIVE', 'USD', '5.00');
@res = parallel(map { [ "five-$_", 'FIVE', 'B', '1.00' ] } 1 .. 12);
is(scalar(grep { $_->[0] == 201 } @res), 5, 'parallel debits: exactly 5 applied');
my @rest = grep { $_->[0] != 201 } @res;
is(scalar(grep { $_->[0] == 422 && (jdecode($_->[1]) // {})->{code} eq 'insufficient_funds' }
       @rest), 7, 'parallel debits: the other 7 are insufficient_funds')
    or diag(join "\n", map { "$_->[0] $_->[1]" } @rest);
check_balance('FIVE', '0.00', 6, 'parallel debits');

# crosswise transfers at once: all applied, nothing lost
open_account('X1', 'USD', '100.00');
open_account('X2', 'USD', '100.00');
@res = parallel(map { [ "cross-a$_", 'X1', 'X2', '1.00' ], [ "cross-b$_", 'X2', 'X1', '2.00' ] }
                1 .. 8);
is(scalar(grep { $_->[0] == 201 } @res), 16, 'crosswise transfers: all 16 applied')
    or diag(join "\n", map { "$_->[0] $_->[1]" } grep { $_->[0] != 201 } @res);
check_balance('X1', '108.00', 17, 'crosswise transfers');
check_balance('X2', '92.00', 17, 'crosswise transfers');

# --------------------------------------------------------------- database --

my $dbh = $t->dbh;
my $rows = $dbh->selectall_arrayref(
    'SELECT account_number, balance, version FROM accounts ORDER BY account_number');
is(scalar @$rows, scalar keys %INITIAL, 'database: one row per opened account');
for my $row (@$rows) {
    my ($acc, $bal, $ver) = @$row;
    my $api = balance($acc);
    is(norm($bal), norm($api->{balance}), "database: $acc balance equals the API's");
    is($ver, $api->{version}, "database: $acc version equals the API's");
}
my $sum_initial = Math::BigFloat->new(0);
$sum_initial->badd($_) for values %INITIAL;
my ($sum_db) = $dbh->selectrow_array('SELECT CAST(SUM(balance) AS CHAR) FROM accounts');
is(norm($sum_db), norm($sum_initial->bstr), 'database: transfers conserve the sum of balances');

# a few more transfers: the sum stays the same
for my $i (1 .. 5) {
    is(xfer("sum-$i", ($i % 2 ? ('A', 'B') : ('B', 'A')), "$i.0$i")->{status}, 201,
       "sum-$i: 201");
}
($sum_db) = $dbh->selectrow_array('SELECT CAST(SUM(balance) AS CHAR) FROM accounts');
is(norm($sum_db), norm($sum_initial->bstr), 'database: sum still conserved');

# the API's own view of the sum agrees
my $sum_api = Math::BigFloat->new(0);
$sum_api->badd(balance($_)->{balance}) for keys %INITIAL;
is(norm($sum_api->bstr), norm($sum_initial->bstr), 'API balances add up to the initial total');

done_testing();
