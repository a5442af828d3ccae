#!/usr/bin/perl
# Acceptance tests (black box, /work/shared/API.md, "Account kinds, overdraft
# limits, holds, balance at a time"): STANDARD and EXTERNAL accounts, the
# overdraft limit given at opening and set by PATCH /accounts/{n}, the new
# members of the account resource and the balance read (kind,
# overdraftLimit, heldBalance, availableBalance), negative amounts, deposits
# and withdrawals through EXTERNAL accounts, conservation of the sum of the
# balances, the order in which errors win, the cache after a PATCH, the
# audit row of a limit change and the admin scope of the PATCH.
# Holds, captures, voids and ?at= are not covered here: heldBalance is zero
# throughout.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use File::Temp qw(tempdir);
use JSON::PP ();
use Math::BigFloat;
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
my %SCALE = (USD => 2, EUR => 2, CNY => 2, JPY => 0, BTC => 8, ETH => 18);
my %INITIAL;     # account => initial balance (text), for the sum of balances

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
    };
}

# any request with an exact raw body and media type
sub raw {
    my ($method, $path, $body, $ctype) = @_;
    return $t->request($method, $path, body => $body,
                       headers => { 'Content-Type' => $ctype // 'application/json' });
}

sub open_account {
    my (%b) = @_;
    my $r = $t->post_json('/accounts', \%b);
    $INITIAL{ $b{accountNumber} } = $b{initialBalance} // '0' if ($r->{status} // 0) == 201;
    return $r;
}

sub open_raw {
    my ($n, $json) = @_;
    my $r = raw('POST', '/accounts', $json);
    if (($r->{status} // 0) == 201) {
        my $init = eval { $r->json->{balance} } // '0';
        $INITIAL{$n} = $init;
    }
    return $r;
}

sub patch_limit {
    my ($n, $limit, $ctype) = @_;
    my $body = ref $limit ? JSON::PP->new->canonical->encode($limit)
             : defined $limit ? JSON::PP->new->encode({ overdraftLimit => $limit })
             : '{"overdraftLimit":null}';
    return raw('PATCH', "/accounts/$n", $body, $ctype);
}

sub xfer {
    my ($id, $src, $dst, $amount) = @_;
    return $t->post_json('/accounts/transactions', { transactionId => $id,
        sourceAccountNumber => $src, destinationAccountNumber => $dst, amount => $amount });
}

sub account_count {
    return scalar $t->dbh->selectrow_array('SELECT COUNT(*) FROM accounts');
}

sub norm {   # exact decimal text without trailing fractional zeros
    my ($s) = @_;
    return undef unless defined $s;
    $s =~ s/(\.\d*?)0+\z/$1/;
    $s =~ s/\.\z//;
    $s = '0' if $s eq '-0';
    return $s;
}

# Structural checks shared by the account resource and the balance read:
# amounts are strings at the currency's scale, never "-0", overdraftLimit
# only on STANDARD accounts, availableBalance = balance - heldBalance.
sub check_shape {
    my ($r, $j, @extra) = @_;
    my $scale = $SCALE{ $j->{currency} // '' };
    ok(defined $scale, 'currency is known') or return;
    for my $m (qw(accountNumber currency kind balance heldBalance availableBalance version),
               @extra) {
        ok(exists $j->{$m}, "member $m present");
    }
    like($j->{kind} // '', qr/^(STANDARD|EXTERNAL)\z/, 'kind is STANDARD or EXTERNAL');
    if (($j->{kind} // '') eq 'EXTERNAL') {
        ok(!exists $j->{overdraftLimit}, 'no overdraftLimit on an EXTERNAL account');
    } else {
        ok(exists $j->{overdraftLimit}, 'overdraftLimit on a STANDARD account');
    }
    my $amt = $scale ? qr/^-?(0|[1-9][0-9]*)\.[0-9]{$scale}\z/ : qr/^-?(0|[1-9][0-9]*)\z/;
    for my $m (qw(balance heldBalance availableBalance overdraftLimit)) {
        next unless exists $j->{$m};
        like($r->{body}, qr/"\Q$m\E"\s*:\s*"/, "$m is a JSON string");
        like($j->{$m} // '', $amt, "$m has the currency's scale");
        unlike($j->{$m} // '', qr/^-0(\.0*)?\z/, "$m is not negative zero");
    }
    unlike($j->{heldBalance} // '', qr/^-/, 'heldBalance not negative');
    unlike($j->{overdraftLimit} // '', qr/^-/, 'overdraftLimit not negative');
    like($r->{body}, qr/"version"\s*:\s*\d+\s*[,}]/, 'version is a JSON number');
    if (defined $j->{balance} && defined $j->{heldBalance} && defined $j->{availableBalance}) {
        my $av = Math::BigFloat->new($j->{balance})->bsub($j->{heldBalance});
        is(norm($av->bstr), norm($j->{availableBalance}), 'availableBalance = balance - heldBalance');
    }
}

# A full account resource check; a want value of undef means "absent".
sub is_account {
    my ($r, $status, $want, $name) = @_;
    subtest $name => sub {
        is($r->{status}, $status, "status $status") or diag("body: $r->{body}");
        like($r->{headers}{'content-type'} // '', qr{^application/json\s*(;|\z)}i,
             'Content-Type application/json');
        my $j = eval { $r->json };
        ok(ref $j eq 'HASH', 'body is a JSON object') or return;
        for my $k (sort keys %$want) {
            if (defined $want->{$k}) {
                is($j->{$k}, $want->{$k}, "$k is $want->{$k}");
            } else {
                ok(!exists $j->{$k}, "no member $k");
            }
        }
        check_shape($r, $j, qw(createdAt updatedAt));
        like($j->{createdAt} // '', $TS, 'createdAt is RFC 3339 UTC with milliseconds');
        like($j->{updatedAt} // '', $TS, 'updatedAt is RFC 3339 UTC with milliseconds');
    };
}

# The balance read (default and strong) and the account resource agree.
my @VIEW = qw(accountNumber currency kind balance heldBalance availableBalance
              overdraftLimit version);
sub same_views {
    my ($n, $want, $name) = @_;
    subtest "$name: $n, GET account = balance = strong balance" => sub {
        my $ra = $t->get("/accounts/$n");
        is($ra->{status}, 200, 'GET account: 200') or return diag($ra->{body});
        my $a = $ra->json;
        for my $k (sort keys %{ $want // {} }) {
            if (defined $want->{$k}) {
                is($a->{$k}, $want->{$k}, "$k is $want->{$k}");
            } else {
                ok(!exists $a->{$k}, "no member $k");
            }
        }
        for my $q ('', '?consistency=strong') {
            my $rb = $t->get("/accounts/$n/balance$q");
            is($rb->{status}, 200, "balance$q: 200") or next;
            my $b = $rb->json;
            check_shape($rb, $b);
            for my $k (@VIEW) {
                is(exists $b->{$k} ? 1 : 0, exists $a->{$k} ? 1 : 0,
                   "balance$q: $k present iff in the account resource");
                is($b->{$k}, $a->{$k}, "balance$q: $k as in the account resource");
            }
        }
    };
}

sub get_json {
    my ($path) = @_;
    my $r = $t->get($path);
    return ($r->{status} // 0) == 200 ? $r->json : { status => $r->{status} };
}

sub state_of {   # "balance@version limit" of each account
    return join ' ', map {
        my $j = get_json("/accounts/$_");
        "$_=" . ($j->{balance} // 'none') . '@' . ($j->{version} // 'none')
            . '/' . ($j->{overdraftLimit} // '-')
    } @_;
}

# ------------------------------------------------------ opening: kinds --

my $r = open_account(accountNumber => 'K-STD1', currency => 'USD', initialBalance => '10.00');
is_account($r, 201, { accountNumber => 'K-STD1', kind => 'STANDARD', balance => '10.00',
                      heldBalance => '0.00', availableBalance => '10.00',
                      overdraftLimit => '0.00', version => 1 },
           'no kind, no overdraftLimit: STANDARD with limit 0.00');

$r = open_account(accountNumber => 'K-STD2', kind => 'STANDARD', initialBalance => '100',
                  overdraftLimit => '100');
is_account($r, 201, { kind => 'STANDARD', currency => 'USD', balance => '100.00',
                      overdraftLimit => '100.00', availableBalance => '100.00', version => 1 },
           'kind STANDARD with overdraftLimit "100": "100.00"');

$r = open_raw('K-STD3', '{"accountNumber":"K-STD3","overdraftLimit":50.5}');
is_account($r, 201, { kind => 'STANDARD', balance => '0.00', overdraftLimit => '50.50' },
           'overdraftLimit as a JSON number 50.5');

$r = open_account(accountNumber => 'K-STD4', overdraftLimit => '0');
is_account($r, 201, { kind => 'STANDARD', overdraftLimit => '0.00' }, 'overdraftLimit "0" allowed');

$r = open_account(accountNumber => 'K-BANK', kind => 'EXTERNAL');
is_account($r, 201, { accountNumber => 'K-BANK', kind => 'EXTERNAL', currency => 'USD',
                      balance => '0.00', heldBalance => '0.00', availableBalance => '0.00',
                      overdraftLimit => undef, version => 1 },
           'kind EXTERNAL: no overdraftLimit member');

$r = open_account(accountNumber => 'K-JPY', currency => 'JPY', overdraftLimit => '500');
is_account($r, 201, { currency => 'JPY', balance => '0', heldBalance => '0',
                      availableBalance => '0', overdraftLimit => '500' },
           'JPY: amounts without decimals');

$r = open_account(accountNumber => 'K-BTC', currency => 'BTC', overdraftLimit => '0.5');
is_account($r, 201, { currency => 'BTC', balance => '0.00000000', heldBalance => '0.00000000',
                      overdraftLimit => '0.50000000' }, 'BTC: amounts with 8 decimals');

$r = $t->get('/accounts/K-BANK');
is_account($r, 200, { kind => 'EXTERNAL', overdraftLimit => undef, version => 1 },
           'GET an EXTERNAL account');
same_views('K-BANK', { kind => 'EXTERNAL', overdraftLimit => undef }, 'opened');
same_views('K-STD2', { kind => 'STANDARD', overdraftLimit => '100.00' }, 'opened');

# ---------------------------------------------- opening: rejected fields --

my $before = account_count();
for my $c ([ '"standard"', 'kind "standard" (lower case)' ],
           [ '"External"', 'kind "External"' ],
           [ '"OTHER"',    'kind "OTHER"' ],
           [ '""',         'kind ""' ],
           [ '1',          'kind a number' ],
           [ 'true',       'kind true' ],
           [ '["EXTERNAL"]', 'kind an array' ],
           [ 'null',       'kind null' ]) {
    is_problem(open_raw('K-BADK', qq({"accountNumber":"K-BADK","kind":$c->[0]})), 400,
               'invalid_request', $c->[1]);
}
is_problem(open_account(accountNumber => 'K-BADK', kind => 'EXTERNAL', overdraftLimit => '0'),
           400, 'invalid_request', 'EXTERNAL with overdraftLimit "0"');
is_problem(open_account(accountNumber => 'K-BADK', kind => 'EXTERNAL', overdraftLimit => '10.00'),
           400, 'invalid_request', 'EXTERNAL with overdraftLimit "10.00"');
for my $c ([ '"-1"', 'negative' ], [ '"1.234"', 'three decimals for USD' ],
           [ '"01"', 'leading zero' ], [ '"1e3"', 'exponent' ], [ '""', 'empty string' ],
           [ '" 1"', 'leading space' ], [ '"abc"', 'not a number' ], [ '-1', 'JSON number -1' ],
           [ '1.5e2', 'JSON number with exponent' ], [ 'true', 'true' ], [ '{}', 'an object' ],
           [ 'null', 'null' ]) {
    is_problem(open_raw('K-BADL', qq({"accountNumber":"K-BADL","overdraftLimit":$c->[0]})),
               400, 'invalid_amount', "overdraftLimit $c->[1]");
}
is_problem(open_account(accountNumber => 'K-BADL', currency => 'JPY', overdraftLimit => '1.5'),
           400, 'invalid_amount', 'overdraftLimit "1.5" for JPY');

# the order: invalid_request, unsupported_currency, invalid_amount, then 409
is_problem(open_account(accountNumber => 'K-ORD', kind => 'bogus', currency => 'XXX',
                        overdraftLimit => '-1'),
           400, 'invalid_request', 'bad kind + bad currency + bad limit');
is_problem(open_account(accountNumber => 'K-ORD', kind => 'EXTERNAL', currency => 'XXX',
                        overdraftLimit => '1'),
           400, 'invalid_request', 'EXTERNAL + overdraftLimit + bad currency');
is_problem(open_account(accountNumber => 'K-ORD', kind => 'EXTERNAL', overdraftLimit => '-1'),
           400, 'invalid_request', 'EXTERNAL + bad overdraftLimit');
is_problem(open_account(accountNumber => 'K-ORD', currency => 'XXX', overdraftLimit => '-1'),
           400, 'unsupported_currency', 'bad currency + bad limit');
is_problem(open_account(accountNumber => 'K-STD2', kind => 'EXTERNAL', initialBalance => '100',
                        overdraftLimit => '100'),
           400, 'invalid_request', 'existing number + EXTERNAL with a limit: 400 before 409');
is_problem(open_account(accountNumber => 'K-STD2', initialBalance => '100',
                        overdraftLimit => '100.001'),
           400, 'invalid_amount', 'existing number + bad limit: 400 before 409');
is(account_count(), $before, 'no account created by the rejected openings');

# ------------------------------------------------------ opening: repeats --

$r = open_account(accountNumber => 'K-STD2', kind => 'STANDARD', initialBalance => '100',
                  overdraftLimit => '100');
is_account($r, 200, { kind => 'STANDARD', overdraftLimit => '100.00', version => 1 },
           'repeat with the same kind and limit: 200');
$r = open_raw('K-STD2', '{"accountNumber":"K-STD2","initialBalance":"100.00","overdraftLimit":100.00}');
is_account($r, 200, { overdraftLimit => '100.00' },
           'repeat, kind omitted, limit 100.00 as a JSON number: 200');
$r = open_account(accountNumber => 'K-STD1', currency => 'USD', initialBalance => '10',
                  overdraftLimit => '0.00');
is_account($r, 200, { kind => 'STANDARD', overdraftLimit => '0.00' },
           'repeat with limit "0.00" of an account opened without one: 200');
$r = open_account(accountNumber => 'K-BANK', kind => 'EXTERNAL', initialBalance => '0');
is_account($r, 200, { kind => 'EXTERNAL', overdraftLimit => undef }, 'EXTERNAL repeat: 200');

$before = account_count();
for my $c ([ 'K-STD2', { initialBalance => '100' },                      'limit omitted (0)' ],
           [ 'K-STD2', { initialBalance => '100', overdraftLimit => '100.01' }, 'other limit' ],
           [ 'K-STD2', { initialBalance => '100', kind => 'EXTERNAL' }, 'kind EXTERNAL' ],
           [ 'K-STD1', { initialBalance => '10', overdraftLimit => '1' }, 'a limit, none at opening' ],
           [ 'K-STD1', { initialBalance => '10', kind => 'EXTERNAL' },  'kind EXTERNAL' ],
           [ 'K-BANK', {},                                              'kind omitted (STANDARD)' ],
           [ 'K-BANK', { kind => 'STANDARD' },                          'kind STANDARD' ]) {
    is_problem(open_account(accountNumber => $c->[0], %{ $c->[1] }), 409, 'account_exists',
               "$c->[0] again with $c->[2]");
}
is(account_count(), $before, 'nothing created by the 409s');

# ---------------------------------------------- overdraft on transfers --

open_account(accountNumber => 'K-FUND', initialBalance => '10000.00');
open_account(accountNumber => 'K-SINK');
$r = open_account(accountNumber => 'K-OD1', initialBalance => '100.00', overdraftLimit => '50.00');
is($r->{status}, 201, 'open K-OD1: 100.00, limit 50.00') or diag($r->{body});

my $od_rej = xfer('k-od-1', 'K-OD1', 'K-SINK', '150.01');
is_problem($od_rej, 422, 'insufficient_funds', 'balance + limit + 0.01');
$r = xfer('k-od-1', 'K-OD1', 'K-SINK', '150.01');
is_deeply([ $r->{status}, $r->{body} ], [ 422, $od_rej->{body} ],
          'the 422 is recorded: its replay is the same 422 and body');
is(get_json('/accounts/transactions/k-od-1')->{code}, 'insufficient_funds',
   'GET the rejected transaction: insufficient_funds');

$r = xfer('k-od-2', 'K-OD1', 'K-SINK', '150.00');
is($r->{status}, 201, 'balance + limit exactly: 201') or diag($r->{body});
my $j = eval { $r->json } // {};
is_deeply([ $j->{sourceBalance}, $j->{destinationBalance} ], [ '-50.00', '150.00' ],
          'sourceBalance "-50.00", destinationBalance "150.00"');
is_account($t->get('/accounts/K-OD1'), 200,
           { balance => '-50.00', availableBalance => '-50.00', heldBalance => '0.00',
             overdraftLimit => '50.00', version => 2 }, 'K-OD1 at its floor');
is_problem(xfer('k-od-3', 'K-OD1', 'K-SINK', '0.01'), 422, 'insufficient_funds',
           'one cent below the floor');
$j = get_json('/accounts/K-OD1/transactions');
is_deeply([ @{ $j->{entries}[0] // {} }{qw(type amount balanceAfter)} ],
          [ 'TRANSFER', '-150.00', '-50.00' ], 'history: the debit with balanceAfter "-50.00"');
$r = xfer('k-od-4', 'K-FUND', 'K-OD1', '20.00');
is(eval { $r->json->{destinationBalance} }, '-30.00', 'a credit: destinationBalance "-30.00"');
same_views('K-OD1', { balance => '-30.00', availableBalance => '-30.00', version => 3 },
           'after transfers');

# no negative zero on the way back up
open_account(accountNumber => 'K-Z1', overdraftLimit => '1.00');
$r = xfer('k-z-1', 'K-Z1', 'K-SINK', '0.50');
is(eval { $r->json->{sourceBalance} }, '-0.50', 'sourceBalance "-0.50"');
$r = xfer('k-z-2', 'K-FUND', 'K-Z1', '0.50');
is(eval { $r->json->{destinationBalance} }, '0.00', 'back to "0.00"');
unlike($r->{body} . $t->get('/accounts/K-Z1')->{body} . $t->get('/accounts/K-Z1/balance')->{body}
       . $t->get('/accounts/K-Z1/transactions')->{body},
       qr/"-0(\.0+)?"/, 'never "-0.00" in the reply, the account, the balance or history');

# other scales
open_account(accountNumber => 'K-JPY2', currency => 'JPY');
$r = xfer('k-jpy-1', 'K-JPY', 'K-JPY2', '500');
is(eval { $r->json->{sourceBalance} }, '-500', 'JPY: down to "-500"');
is_problem(xfer('k-jpy-2', 'K-JPY', 'K-JPY2', '1'), 422, 'insufficient_funds', 'JPY: 1 more');
open_account(accountNumber => 'K-BTC2', currency => 'BTC');
$r = xfer('k-btc-1', 'K-BTC', 'K-BTC2', '0.00000001');
is(eval { $r->json->{sourceBalance} }, '-0.00000001', 'BTC: "-0.00000001"');
same_views('K-BTC', { balance => '-0.00000001', availableBalance => '-0.00000001' },
           'BTC overdraft');

# ------------------------------------- EXTERNAL: deposits, withdrawals --

open_account(accountNumber => 'K-CUST');
$r = xfer('k-dep-1', 'K-BANK', 'K-CUST', '1000.00');
is($r->{status}, 201, 'deposit from an EXTERNAL account with balance 0: 201') or diag($r->{body});
$j = eval { $r->json } // {};
is_deeply([ $j->{sourceBalance}, $j->{destinationBalance} ], [ '-1000.00', '1000.00' ],
          'deposit: EXTERNAL source "-1000.00", customer "1000.00"');
$r = xfer('k-wd-1', 'K-CUST', 'K-BANK', '250.00');
is($r->{status}, 201, 'withdrawal to the EXTERNAL account: 201') or diag($r->{body});
$j = eval { $r->json } // {};
is_deeply([ $j->{sourceBalance}, $j->{destinationBalance} ], [ '750.00', '-750.00' ],
          'withdrawal credits the EXTERNAL account: "-750.00"');
is_problem(xfer('k-wd-2', 'K-CUST', 'K-BANK', '750.01'), 422, 'insufficient_funds',
           'a withdrawal beyond the STANDARD source\'s balance');
is_account($t->get('/accounts/K-BANK'), 200,
           { kind => 'EXTERNAL', balance => '-750.00', availableBalance => '-750.00',
             heldBalance => '0.00', overdraftLimit => undef, version => 3 },
           'the EXTERNAL account after a deposit and a withdrawal');
same_views('K-BANK', { balance => '-750.00' }, 'EXTERNAL after transfers');
$j = get_json('/accounts/K-BANK/transactions');
is_deeply([ map { $_->{balanceAfter} } @{ $j->{entries} // [] } ],
          [ '-750.00', '-1000.00', '0.00' ], 'EXTERNAL history: negative balanceAfter');

open_account(accountNumber => 'K-BANK-EUR', currency => 'EUR', kind => 'EXTERNAL');
is_problem(xfer('k-dep-eur', 'K-BANK-EUR', 'K-CUST', '1.00'), 422, 'currency_mismatch',
           'deposit from an EUR EXTERNAL account to a USD account');

# the floor of an EXTERNAL account is DECIMAL(36,18)
open_account(accountNumber => 'K-XBIG', kind => 'EXTERNAL');
open_account(accountNumber => 'K-XS1');
open_account(accountNumber => 'K-XS2');
$r = xfer('k-big-1', 'K-XBIG', 'K-XS1', '999999999999999999.99');
is(eval { $r->json->{sourceBalance} }, '-999999999999999999.99',
   'EXTERNAL down to -999999999999999999.99') or diag($r->{body});
$before = state_of(qw(K-XBIG K-XS2));
my $ov = xfer('k-big-2', 'K-XBIG', 'K-XS2', '0.01');
is_problem($ov, 422, 'balance_overflow', 'a debit beyond DECIMAL(36,18) on an EXTERNAL account');
$r = xfer('k-big-2', 'K-XBIG', 'K-XS2', '0.01');
is_deeply([ $r->{status}, $r->{body} ], [ 422, $ov->{body} ], 'balance_overflow replay');
is(state_of(qw(K-XBIG K-XS2)), $before, 'the overflow changed nothing');

# ------------------------------------------------------------ PATCH limit --

open_account(accountNumber => 'K-P1', initialBalance => '100.00');
my $p1 = get_json('/accounts/K-P1');
is($t->get('/accounts/K-P1/balance')->{status}, 200, 'K-P1 balance read (cached)');

$r = patch_limit('K-P1', '250.00');
is_account($r, 200, { accountNumber => 'K-P1', kind => 'STANDARD', balance => '100.00',
                      availableBalance => '100.00', overdraftLimit => '250.00', version => 2,
                      createdAt => $p1->{createdAt} },
           'PATCH overdraftLimit "250.00": 200, version + 1, balance unchanged');
ok((eval { $r->json->{updatedAt} } // '') ge ($p1->{updatedAt} // ''), 'updatedAt not earlier');
same_views('K-P1', { overdraftLimit => '250.00', version => 2 }, 'after a PATCH');

$r = patch_limit('K-P1', '250');
is_account($r, 200, { overdraftLimit => '250.00', version => 2 },
           'PATCH to the same value: 200, version unchanged');

$r = raw('PATCH', '/accounts/K-P1', '{"overdraftLimit":300}', 'application/merge-patch+json');
is_account($r, 200, { overdraftLimit => '300.00', version => 3, balance => '100.00' },
           'application/merge-patch+json, JSON number 300');
$r = patch_limit('K-P1', '275.50', 'Application/JSON; charset=utf-8');
is_account($r, 200, { overdraftLimit => '275.50', version => 4 },
           'application/json with charset, case-insensitive');

$before = state_of('K-P1');
for my $ct ('text/plain', 'application/x-www-form-urlencoded', 'application/json-patch+json') {
    is_problem(patch_limit('K-P1', '1.00', $ct), 415, 'unsupported_media_type', "PATCH as $ct");
}
is_problem($t->request('PATCH', '/accounts/K-P1', body => '{"overdraftLimit":"1.00"}'),
           415, 'unsupported_media_type', 'PATCH without Content-Type');
for my $c ([ '{}', 'an empty object' ],
           [ '{"overdraftLimit":"1.00","kind":"STANDARD"}', 'another field besides' ],
           [ '{"balance":"1.00"}', 'only another field' ],
           [ '{"overdraftLimit":"1.00","overdraftLimit":"2.00"}', 'a duplicate key' ],
           [ '[{"overdraftLimit":"1.00"}]', 'an array' ],
           [ '"1.00"', 'a string' ],
           [ '{"overdraftLimit":"1.00"', 'broken JSON' ],
           [ '', 'an empty body' ]) {
    is_problem(raw('PATCH', '/accounts/K-P1', $c->[0]), 400, 'invalid_request',
               "PATCH with $c->[1]");
}
for my $c ([ 'null', 'null' ], [ '"-1.00"', 'negative' ], [ '-1', 'JSON number -1' ],
           [ '"1.234"', 'three decimals for USD' ], [ '"1e2"', 'exponent' ],
           [ '"01"', 'leading zero' ], [ '"abc"', 'not a number' ], [ 'true', 'true' ],
           [ '"1000000000000000000"', 'beyond DECIMAL(36,18)' ]) {
    is_problem(raw('PATCH', '/accounts/K-P1', qq({"overdraftLimit":$c->[0]})), 400,
               'invalid_amount', "PATCH overdraftLimit $c->[1]");
}
is(state_of('K-P1'), $before, 'rejected PATCHes changed nothing');

is_problem(patch_limit('K-NOPE', '1.00'), 404, 'account_not_found', 'PATCH an unknown account');
is_problem(patch_limit('-bad', '1.00'), 404, 'account_not_found', 'PATCH an invalid account number');
is_problem(raw('PATCH', '/accounts/K-NOPE', '{"kind":"EXTERNAL"}'), 400, 'invalid_request',
           'unknown account + bad body: 400 before 404');
is_problem(patch_limit('K-NOPE', '-1'), 400, 'invalid_amount',
           'unknown account + negative limit: 400 before 404');
is_problem(patch_limit('K-NOPE', '1', 'text/plain'), 415, 'unsupported_media_type',
           'unknown account + text/plain: 415 first');

$before = state_of('K-BANK');
is_problem(patch_limit('K-BANK', '10.00'), 409, 'account_kind_conflict', 'PATCH an EXTERNAL account');
is_problem(patch_limit('K-BANK', '0'), 409, 'account_kind_conflict', 'PATCH an EXTERNAL account to 0');
is_problem(patch_limit('K-BANK', '-1'), 400, 'invalid_amount',
           'EXTERNAL + negative limit: 400 before 409');
is(state_of('K-BANK'), $before, 'the EXTERNAL account is unchanged');

is_problem(patch_limit('K-JPY', '1.5'), 400, 'invalid_amount', 'PATCH "1.5" on a JPY account');
$r = patch_limit('K-JPY', '1000');
is_account($r, 200, { currency => 'JPY', overdraftLimit => '1000', balance => '-500' },
           'PATCH a JPY account: "1000"');
is(eval { xfer('k-jpy-3', 'K-JPY', 'K-JPY2', '1')->json->{sourceBalance} }, '-501',
   'JPY: the raised limit allows a further debit');

for my $m ('PUT', 'DELETE', 'POST') {
    $r = $m eq 'DELETE' ? $t->request($m, '/accounts/K-P1')
                        : raw($m, '/accounts/K-P1', '{"overdraftLimit":"1.00"}');
    is_problem($r, 405, 'method_not_allowed', "$m /accounts/K-P1");
    is_deeply([ sort split /\s*,\s*/, $r->{headers}{allow} // '' ], [ qw(GET HEAD PATCH) ],
              "$m /accounts/K-P1: Allow GET, HEAD, PATCH");
}

# the raised limit is used by transfers: balance 100.00 + limit 275.50
is_problem(xfer('k-p1-1', 'K-P1', 'K-SINK', '375.51'), 422, 'insufficient_funds',
           'K-P1: balance + new limit + 0.01');
$r = xfer('k-p1-2', 'K-P1', 'K-SINK', '375.50');
is(eval { $r->json->{sourceBalance} }, '-275.50', 'K-P1: down to the new limit');
same_views('K-P1', { balance => '-275.50', availableBalance => '-275.50',
                     overdraftLimit => '275.50', version => 5 }, 'PATCH then transfer');

# the repeat of an opening compares the limit given at opening, not the current one
$r = open_account(accountNumber => 'K-P1', initialBalance => '100.00');
is_account($r, 200, { overdraftLimit => '275.50', balance => '-275.50', version => 5 },
           'repeat of the opening (no limit) after a PATCH: 200 with the current limit');
is_problem(open_account(accountNumber => 'K-P1', initialBalance => '100.00',
                        overdraftLimit => '275.50'),
           409, 'account_exists', 'repeat with the PATCHed limit: 409');

# ------------------------------------- lowering the limit below its use --

open_account(accountNumber => 'K-P2', overdraftLimit => '100');
is(eval { xfer('k-p2-1', 'K-P2', 'K-SINK', '80.00')->json->{sourceBalance} }, '-80.00',
   'K-P2 uses 80.00 of its 100.00 limit');
$r = patch_limit('K-P2', '50.00');
is_account($r, 200, { balance => '-80.00', availableBalance => '-80.00',
                      overdraftLimit => '50.00', version => 3 },
           'lowering the limit below what is used: 200, balance unchanged');
same_views('K-P2', { overdraftLimit => '50.00', balance => '-80.00' }, 'after lowering');
is_problem(xfer('k-p2-2', 'K-P2', 'K-SINK', '0.01'), 422, 'insufficient_funds',
           'below the lowered limit: debits refused');
is(eval { xfer('k-p2-3', 'K-FUND', 'K-P2', '10.00')->json->{destinationBalance} }, '-70.00',
   'credits still work');
is_problem(xfer('k-p2-4', 'K-P2', 'K-SINK', '0.01'), 422, 'insufficient_funds',
           'still below the limit after a credit');
is(eval { xfer('k-p2-5', 'K-FUND', 'K-P2', '20.01')->json->{destinationBalance} }, '-49.99',
   'credited back above the floor');
is_problem(xfer('k-p2-6', 'K-P2', 'K-SINK', '0.02'), 422, 'insufficient_funds',
           'a debit below the lowered floor');
is(eval { xfer('k-p2-7', 'K-P2', 'K-SINK', '0.01')->json->{sourceBalance} }, '-50.00',
   'a debit down to the lowered floor: 201');
$r = patch_limit('K-P2', '0');
is_account($r, 200, { overdraftLimit => '0.00', balance => '-50.00', version => 7 },
           'limit 0 on a negative account: 200');
is_problem(xfer('k-p2-8', 'K-P2', 'K-SINK', '0.01'), 422, 'insufficient_funds',
           'limit 0 and negative: debits refused');
$r = open_account(accountNumber => 'K-P2', overdraftLimit => '100.00');
is_account($r, 200, { overdraftLimit => '0.00', balance => '-50.00' },
           'repeat with the opening limit after a PATCH: 200 with the current limit');
is_problem(open_account(accountNumber => 'K-P2'), 409, 'account_exists',
           'repeat without the opening limit: 409');
same_views('K-P2', { overdraftLimit => '0.00', balance => '-50.00', version => 7 },
           'after PATCHes and transfers');

# --------------------------------------------------- sum of the balances --

my $dbh = $t->dbh;
my $sum_initial = Math::BigFloat->new(0);
my $sum_api = Math::BigFloat->new(0);
my $rows = $dbh->selectall_arrayref(
    'SELECT account_number, currency FROM accounts ORDER BY account_number');
is_deeply([ sort map { $_->[0] } @$rows ], [ sort keys %INITIAL ],
          'database: one row per opened account');
for my $row (grep { $_->[1] eq 'USD' } @$rows) {
    $sum_initial->badd($INITIAL{ $row->[0] } // 0);
    $sum_api->badd(get_json("/accounts/$row->[0]")->{balance} // 'NaN');
}
my ($sum_db) = $dbh->selectrow_array(
    q{SELECT CAST(SUM(balance) AS CHAR) FROM accounts WHERE currency = 'USD'});
is(norm($sum_db), norm($sum_initial->bstr), 'database: USD balances add up to the initial total');
is(norm($sum_api->bstr), norm($sum_initial->bstr), 'API: USD balances add up to the initial total');

# ------------------------------------------------------------------ audit --

my $audit = $dbh->selectall_arrayref(
    q{SELECT subject, actor, http_status, outcome FROM audit_log
       WHERE action = 'account.limit' ORDER BY id}, { Slice => {} });
is_deeply([ map { [ $_->{subject}, $_->{http_status} ] } @$audit ],
          [ [ 'K-P1', 200 ], [ 'K-P1', 200 ], [ 'K-P1', 200 ], [ 'K-JPY', 200 ],
            [ 'K-P2', 200 ], [ 'K-P2', 200 ] ],
          'one account.limit row per PATCH that changed a limit, in order');
ok(!grep({ defined $_->{actor} } @$audit), 'actor NULL with authentication off');
ok(!grep({ !defined $_->{outcome} || $_->{outcome} eq '' } @$audit), 'each row has an outcome');

# ------------------------------------------------------- scope: admin --

my $dir = tempdir('rbcs-kinds-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my %SECRET = (
    admin  => 'test-only-kinds-admin-secret-0123456789ab',
    teller => 'test-only-kinds-teller-secret-0123456789a',
);
{
    open my $fh, '>', "$dir/keys" or die "$dir/keys: $!";
    print $fh "admin  $SECRET{admin}  admin,read\n", "teller $SECRET{teller} read,transfer\n";
    close $fh or die "$dir/keys: $!";
}
# signed requests: the keys file is the test's own
my $ta = RBCS::Test->new(vars => { KEYS_FILE => "$dir/keys" }, conf => <<'EOF');
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

    rbcs_auth on;
    rbcs_auth_keys ${KEYS_FILE};

    server {
        listen 127.0.0.1:${HTTP_PORT};

        error_page 413 @rbcs_problem;
        location @rbcs_problem { rbcs_problem; }

        location / { rbcs; }
    }
}
EOF

sub sreq {
    my ($key, $method, $target, $body, $ctype) = @_;
    my ($path, $query) = split /\?/, $target, 2;
    my $ts = time;
    my $sts = join "\n", $method, $path, $query // '', $ts, sha256_hex($body // '');
    my %h = defined $key ? ('X-RBCS-Key-Id' => $key, 'X-RBCS-Timestamp' => $ts,
                            'X-RBCS-Signature' => hmac_sha256_hex($sts, $SECRET{$key}))
                         : ();
    $h{'Content-Type'} = $ctype // 'application/json' if defined $body;
    return $ta->request($method, $target, headers => \%h,
                        defined $body ? (body => $body) : ());
}

is(sreq('admin', 'POST', '/accounts', '{"accountNumber":"K-AUTH","initialBalance":"5.00"}')
       ->{status}, 201, 'auth on: admin opens K-AUTH');
$r = sreq('teller', 'PATCH', '/accounts/K-AUTH', '{"overdraftLimit":"10.00"}');
is($r->{status}, 403, 'a key without admin: 403') or diag($r->{raw});
is(sreq(undef, 'PATCH', '/accounts/K-AUTH', '{"overdraftLimit":"10.00"}')->{status}, 401,
   'no key: 401');
is(sreq('teller', 'PATCH', '/accounts/K-AUTH', '{"overdraftLimit":"-1"}', 'text/plain')
       ->{status}, 403, '403 before 415');
$r = sreq('admin', 'PATCH', '/accounts/K-AUTH', '{"overdraftLimit":"10.00"}');
is($r->{status}, 200, 'the admin key: 200') or diag($r->{raw});
$j = eval { sreq('teller', 'GET', '/accounts/K-AUTH/balance')->json } // {};
is_deeply([ @$j{qw(balance overdraftLimit availableBalance version)} ],
          [ '5.00', '10.00', '5.00', 2 ], 'the new limit in the balance read');
is_deeply($ta->dbh->selectall_arrayref(
              q{SELECT actor, subject, http_status FROM audit_log
                 WHERE action = 'account.limit' ORDER BY id}),
          [ [ 'admin', 'K-AUTH', 200 ] ], 'audit: one account.limit row, actor the key id');

done_testing();
