#!/usr/bin/perl
# Acceptance tests (black box, /work/shared/API.md, "Holds (two-phase
# transfers)"): a hold reserves the source's funds and moves nothing; its
# capture (whole or partial) moves the money and releases the rest; a void
# releases it; an expiry releases it by itself within a second of
# expiresAt; a capture at or after expiresAt is refused; a hold is resolved
# once (replays answer the same body, anything else 409); every debit is
# checked against the available balance; the pending holds are listed by
# account, with paging; audit rows, history and the conservation of money.

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $conf = <<'EOF';
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
my $t = RBCS::Test->new(allow_log => [qr/the database refused a write batch/],
                        conf => $conf);
my $TS = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/;

# ---------------------------------------------------------------- helpers --

sub is_problem {
    my ($r, $status, $code, $name) = @_;
    subtest "$name -> $status $code" => sub {
        is($r->{status}, $status, "status $status") or diag("body: $r->{body}");
        my $j = eval { $r->json } // {};
        is($j->{code}, $code, "code $code");
    };
}

sub open_account {
    my (%b) = @_;
    my $r = $t->post_json('/accounts', \%b);
    is($r->{status}, 201, "account $b{accountNumber} opened") or diag($r->{body});
}

sub xfer {
    my ($id, $src, $dst, $amount, %x) = @_;
    return $t->post_json('/accounts/transactions', { transactionId => $id,
        sourceAccountNumber => $src, destinationAccountNumber => $dst,
        amount => $amount, %x });
}

sub hold {
    my ($id, $src, $dst, $amount, %x) = @_;
    return xfer($id, $src, $dst, $amount, hold => JSON::PP::true, %x);
}

sub capture {
    my ($id, $body) = @_;
    return $t->post_json("/accounts/transactions/$id/capture", $body // {});
}

sub void {
    my ($id) = @_;
    return $t->post_json("/accounts/transactions/$id/void", {});
}

sub balance {
    my ($n) = @_;
    my $r = $t->get("/accounts/$n/balance");
    return eval { $r->json } // {};
}

sub db { $t->dbh }

sub sum_balances {
    return scalar db()->selectrow_array('SELECT SUM(balance) FROM accounts');
}


sub ms_of {   # RFC 3339 with milliseconds and Z, to ms since the epoch
    my ($s) = @_;
    my ($y, $mo, $d, $h, $mi, $sec, $ms) =
        $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z\z/ or return undef;
    local $ENV{TZ} = 'UTC';
    POSIX::tzset();
    return (POSIX::mktime($sec, $mi, $h, $d, $mo - 1, $y - 1900) * 1000) + $ms;
}

# ------------------------------------------------------------------ setup --

open_account(accountNumber => 'BANK', currency => 'USD', kind => 'EXTERNAL');
open_account(accountNumber => 'A', currency => 'USD', initialBalance => '100.00');
open_account(accountNumber => 'B', currency => 'USD');
open_account(accountNumber => 'C', currency => 'USD', overdraftLimit => '50.00');
open_account(accountNumber => 'E', currency => 'EUR', initialBalance => '10.00');
my $SUM = sum_balances();

# ------------------------------------------------------------------- hold --

my $r = hold('h1', 'A', 'B', '30.00');
is($r->{status}, 201, 'a hold is created: 201') or diag($r->{body});
my $h1 = eval { $r->json } // {};
is($h1->{status}, 'PENDING', 'the hold is PENDING');
is($h1->{amount}, '30.00', 'its amount');
is($h1->{sourceAvailableBalance}, '70.00', 'sourceAvailableBalance is what it left');
ok(!exists $h1->{expiresAt}, 'no expiresIn: no expiresAt');
ok(!exists $h1->{sourceBalance} && !exists $h1->{destinationBalance},
   'nothing moved: no balances in the answer');
like($h1->{createdAt} // '', $TS, 'createdAt');
ok(!exists $h1->{code}, 'no code member: it is not a rejection');

my $bal = balance('A');
is_deeply([@$bal{qw(balance heldBalance availableBalance)}], ['100.00', '30.00', '70.00'],
          'source: balance unchanged, heldBalance and availableBalance moved');
is(balance('B')->{balance}, '0.00', 'destination: nothing credited yet');
is(balance('A')->{version}, $h1->{sourceVersion}, 'the hold moved the source version');

$r = $t->get('/accounts/transactions/h1');
is($r->{status}, 200, 'the hold reads as a transaction');
is(eval { $r->json->{status} }, 'PENDING', 'status PENDING');

# the same request again: the same answer
$r = hold('h1', 'A', 'B', '30.00');
is($r->{status}, 200, 'the hold repeated: 200');
is_deeply(eval { $r->json }, $h1, 'with the same body');
is(balance('A')->{heldBalance}, '30.00', 'and nothing held twice');

is_problem(xfer('h1', 'A', 'B', '30.00'), 409, 'transaction_id_conflict',
           'the hold id as a plain transfer');
is_problem(hold('h1', 'A', 'B', '30.00', expiresIn => 60), 409, 'transaction_id_conflict',
           'the hold id with another expiry');

# held money cannot be spent twice
is_problem(xfer('t1', 'A', 'B', '70.01'), 422, 'insufficient_funds',
           'a transfer above the available balance');
is_problem(hold('h-over', 'A', 'B', '70.01'), 422, 'insufficient_funds',
           'a hold above the available balance');

# the listing
$r = $t->get('/accounts/A/holds');
is($r->{status}, 200, 'GET /accounts/A/holds');
my $list = eval { $r->json } // {};
is($list->{accountNumber}, 'A', 'accountNumber');
is_deeply([map { $_->{transactionId} } @{ $list->{holds} // [] }], ['h1'],
          'the source lists its pending hold');
is_deeply($list->{holds}[0], { transactionId => 'h1', sourceAccountNumber => 'A',
          destinationAccountNumber => 'B', amount => '30.00', createdAt => $h1->{createdAt} },
          'with its members');
is($list->{next}, undef, 'one page');
is_deeply([map { $_->{transactionId} } @{ (eval { $t->get('/accounts/B/holds')->json } // {})->{holds} // [] }],
          ['h1'], 'the destination lists it too');
is_problem($t->get('/accounts/NOPE/holds'), 404, 'account_not_found', 'holds of an unknown account');
is_problem($t->get('/accounts/A/holds?limit=0'), 400, 'invalid_request', 'limit 0');
is_problem($t->get('/accounts/A/holds?before=xyz'), 400, 'invalid_request', 'a bad cursor');

# a hold is not history
$r = $t->get('/accounts/A/transactions');
is_deeply([map { $_->{type} } @{ (eval { $r->json } // {})->{entries} // [] }], ['OPENING'],
          'a pending hold is not in the history');

# ---------------------------------------------------------------- capture --

is_problem(capture('h1', { amount => '30.01' }), 422, 'amount_exceeds_hold',
           'a capture above the held amount');
is_problem(capture('h1', { amount => '1.001' }), 400, 'invalid_amount',
           'a capture beyond the scale');
is_problem(capture('h1', { amount => '-1' }), 400, 'invalid_amount',
           'a negative capture');
is_problem(capture('h1', { amount => '0' }), 400, 'invalid_amount', 'a zero capture');
is_problem(capture('h1', { amount => '1', note => 'x' }), 400, 'invalid_request',
           'an unknown member');
is_problem(capture('nope'), 404, 'transaction_not_found', 'capture of an unknown id');
is(balance('A')->{heldBalance}, '30.00', 'refused captures changed nothing');

$r = capture('h1', { amount => '20.00' });
is($r->{status}, 200, 'a partial capture: 200') or diag($r->{body});
my $c1 = eval { $r->json } // {};
is($c1->{status}, 'COMPLETED', 'status COMPLETED');
is($c1->{amount}, '30.00', 'amount stays the held amount');
is($c1->{capturedAmount}, '20.00', 'capturedAmount');
is($c1->{sourceBalance}, '80.00', 'sourceBalance after the capture');
is($c1->{destinationBalance}, '20.00', 'destinationBalance after the capture');
is($c1->{sourceAvailableBalance}, '80.00', 'the rest released');
$bal = balance('A');
is_deeply([@$bal{qw(balance heldBalance availableBalance)}], ['80.00', '0.00', '80.00'],
          'the source: 20.00 moved, 10.00 released');
is($bal->{version}, $c1->{sourceVersion}, 'the source version is the capture\'s');
is(balance('B')->{balance}, '20.00', 'the destination credited');
is(balance('B')->{version}, $c1->{destinationVersion}, 'the destination version is the capture\'s');

$r = capture('h1', { amount => '20.00' });
is($r->{status}, 200, 'the capture repeated: 200');
is_deeply(eval { $r->json }, $c1, 'with the same body');
$r = capture('h1', { amount => 20 });
is($r->{status}, 200, 'the capture repeated with the amount as a number, same value: 200');
is_problem(capture('h1'), 409, 'hold_not_pending',
           'a capture of the whole amount after a partial one');
is_problem(capture('h1', { amount => '10.00' }), 409, 'hold_not_pending', 'another amount');
$r = void('h1');
is_problem($r, 409, 'hold_not_pending', 'a void of a captured hold');
is(eval { $r->json->{title} }, 'Hold not pending', 'the problem has its own title');
is(balance('A')->{balance}, '80.00', 'replays and refusals moved nothing');
is_deeply((eval { $t->get('/accounts/A/holds')->json } // {})->{holds}, [],
          'the captured hold is no longer listed');

$r = $t->get('/accounts/A/transactions');
my $entries = (eval { $r->json } // {})->{entries} // [];
is_deeply([map { [$_->{type}, $_->{transactionId}, $_->{amount}, $_->{balanceAfter}] } @$entries],
          [['TRANSFER', 'h1', '-20.00', '80.00'], ['OPENING', undef, '100.00', '100.00']],
          'the capture is in the history as a TRANSFER of the captured amount');
$r = $t->get('/accounts/transactions/h1');
is_deeply(eval { $r->json }, $c1, 'GET of the hold answers its captured state');
$r = hold('h1', 'A', 'B', '30.00');
is($r->{status}, 200, 'the hold\'s request repeated after the capture: 200');
is_deeply(eval { $r->json }, $h1, 'with the original body (the hold as recorded)');

# whole capture, with {}
hold('h1b', 'A', 'B', '5.00');
$r = capture('h1b');
is($r->{status}, 200, 'a capture with {}: 200');
is(eval { $r->json->{capturedAmount} }, '5.00', 'captures the whole held amount');
$r = capture('h1b', { amount => '5' });
is($r->{status}, 200, 'the whole amount given by value replays an omitted one');

# ------------------------------------------------------------------- void --

$r = hold('h2', 'A', 'B', '10.00');
is($r->{status}, 201, 'a second hold');
is(balance('A')->{availableBalance}, '65.00', 'reserved');
$r = void('h2');
is($r->{status}, 200, 'void: 200') or diag($r->{body});
my $v2 = eval { $r->json } // {};
is($v2->{status}, 'VOIDED', 'status VOIDED');
is($v2->{sourceAvailableBalance}, '75.00', 'released');
is_deeply([@{ balance('A') }{qw(balance heldBalance)}], ['75.00', '0.00'], 'the hold released');
$r = void('h2');
is($r->{status}, 200, 'void repeated: 200');
is_deeply(eval { $r->json }, $v2, 'with the same body');
is_problem(capture('h2'), 409, 'hold_not_pending', 'a capture of a voided hold');
is_problem($t->post_json('/accounts/transactions/h2/void', { amount => '1' }), 400,
           'invalid_request', 'a void with a member');

# not a hold
xfer('t2', 'A', 'B', '1.00');
is_problem(capture('t2'), 409, 'hold_not_pending', 'a capture of a plain transfer');
is_problem(void('t2'), 409, 'hold_not_pending', 'a void of a plain transfer');
is_problem(void('h-over'), 409, 'hold_not_pending', 'a void of a refused hold');
is_problem(void('nope'), 404, 'transaction_not_found', 'a void of an unknown id');
is_problem($t->get('/accounts/transactions/h2/capture'), 405, 'method_not_allowed',
           'GET on capture');

# ----------------------------------------------------------- request rules --

is_problem(xfer('x1', 'A', 'B', '1.00', expiresIn => 60), 400, 'invalid_request',
           'expiresIn without hold');
is_problem(hold('x2', 'A', 'B', '1.00', expiresIn => 0), 400, 'invalid_request', 'expiresIn 0');
is_problem(hold('x3', 'A', 'B', '1.00', expiresIn => 31536001), 400, 'invalid_request',
           'expiresIn above a year');
is_problem(hold('x4', 'A', 'B', '1.00', expiresIn => 1.5), 400, 'invalid_request',
           'expiresIn not whole');
is_problem(hold('x5', 'A', 'B', '1.00', expiresIn => '60'), 400, 'invalid_request',
           'expiresIn as a string');
is_problem(xfer('x6', 'A', 'B', '1.00', hold => 'yes'), 400, 'invalid_request',
           'hold not a boolean');
$r = xfer('x7', 'A', 'B', '1.00', hold => JSON::PP::false);
is($r->{status}, 201, 'hold false is a plain transfer');
is(eval { $r->json->{status} }, 'COMPLETED', 'completed at once');
$r = hold('x8', 'A', 'B', '1.00', expiresIn => 31536000);
is($r->{status}, 201, 'expiresIn of a year');
my $x8 = eval { $r->json } // {};
is(ms_of($x8->{expiresAt}) - ms_of($x8->{createdAt}), 31536000 * 1000,
   'expiresAt is createdAt plus expiresIn');
is(void('x8')->{status}, 200, 'voided');

# ------------------------------------------------------- overdraft, kinds --

is(hold('h3', 'C', 'B', '50.00')->{status}, 201, 'a hold up to the overdraft limit');
is(balance('C')->{availableBalance}, '-50.00', 'available at minus the limit');
is_problem(hold('h3b', 'C', 'B', '0.01'), 422, 'insufficient_funds', 'one unit past it');
is_problem(xfer('t3', 'C', 'B', '0.01'), 422, 'insufficient_funds',
           'a transfer against the held overdraft');
$r = capture('h3');
is($r->{status}, 200, 'the overdraft hold captured');
is(balance('C')->{balance}, '-50.00', 'the account at minus its limit');

is(hold('h4', 'BANK', 'A', '1000.00')->{status}, 201, 'an EXTERNAL source holds without a floor');
is(capture('h4')->{status}, 200, 'and its capture deposits');
is_problem(hold('h5', 'A', 'E', '1.00'), 422, 'currency_mismatch', 'a hold across currencies');
is_problem(hold('h6', 'A', 'A', '1.00'), 400, 'same_account', 'a hold to itself');
is_problem(hold('h7', 'A', 'NOPE', '1.00'), 404, 'account_not_found', 'a hold to nobody');

# ------------------------------------------- capture at or after expiresAt --

$r = hold('h8', 'A', 'B', '2.00', expiresIn => 3600);
is($r->{status}, 201, 'a hold with an hour to run');
like(eval { $r->json->{expiresAt} } // '', $TS, 'expiresAt');
# its expiry reached, before the release ran (the scan reads the holds table)
db()->do(q{UPDATE transactions SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND
           WHERE transaction_id = 'h8'});
is_problem(capture('h8'), 409, 'hold_not_pending', 'a capture after expiresAt');
is_problem(void('h8'), 409, 'hold_not_pending', 'a void after expiresAt');
is(balance('A')->{heldBalance}, '2.00', 'still held until the release');
db()->do(q{UPDATE holds SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND
           WHERE transaction_id = 'h8'});
my $deadline = time + 5;
sleep 0.1 while time < $deadline && balance('A')->{heldBalance} ne '0.00';
is(balance('A')->{heldBalance}, '0.00', 'then released by the service');
is(eval { $t->get('/accounts/transactions/h8')->json->{status} }, 'EXPIRED', 'EXPIRED');

# ------------------------------------------------------------------ expiry --

$r = hold('h9', 'A', 'B', '3.00', expiresIn => 1);
is($r->{status}, 201, 'a hold of one second');
my $h9 = eval { $r->json } // {};
is(ms_of($h9->{expiresAt}) - ms_of($h9->{createdAt}), 1000, 'expiresAt one second on');
$deadline = time + 6;
my $st = '';
while (time < $deadline) {
    $st = eval { $t->get('/accounts/transactions/h9')->json->{status} } // '';
    last if $st eq 'EXPIRED';
    sleep 0.05;
}
is($st, 'EXPIRED', 'released with no request touching it');
my ($late) = db()->selectrow_array(q{SELECT TIMESTAMPDIFF(MICROSECOND, expires_at, resolved_at)
                                     FROM transactions WHERE transaction_id = 'h9'});
ok(defined $late && $late >= 0 && $late <= 1_000_000,
   "released within a second of expiresAt (after ${\ ($late // 'undef') } us)");
is(balance('A')->{heldBalance}, '0.00', 'the held balance released');
is_problem(capture('h9'), 409, 'hold_not_pending', 'a capture after the expiry');
is_problem(void('h9'), 409, 'hold_not_pending', 'a void after the expiry');

# ----------------------------------------------------------------- races --

# 50 identical captures at once: one resolution, one answer
hold('h10', 'A', 'B', '4.00');
my @out = RBCS::Test::parallel(50, sub {
    my $r = capture('h10', { amount => '3.00' });
    return "$r->{status} " . JSON::PP->new->canonical->encode(eval { $r->json } // {});
});
my %seen;
$seen{$_}++ for @out;
is(scalar keys %seen, 1, '50 identical captures: one answer') or diag(join "\n", keys %seen);
like($out[0], qr/^200 .*"capturedAmount":"3\.00"/, 'the capture\'s');
my ($n) = db()->selectrow_array(q{SELECT COUNT(*) FROM audit_log
                                  WHERE action = 'hold.capture' AND subject = 'h10'});
is($n, 1, 'one resolution recorded');
($n) = db()->selectrow_array(q{SELECT COUNT(*) FROM entries WHERE transaction_id = 'h10'});
is($n, 2, 'one pair of history entries');

# capture against void, many times: exactly one wins each time
my $wins = 0;
for my $k (1 .. 10) {
    hold("r$k", 'A', 'B', '1.00');
    my @o = RBCS::Test::parallel(2, sub {
        my $r = $_[0] ? void("r$k") : capture("r$k");
        return $r->{status};
    });
    $wins++ if (grep { $_ eq '200' } @o) == 1 && (grep { $_ eq '409' } @o) == 1;
}
is($wins, 10, 'capture racing void: exactly one wins, ten times out of ten');

# capture against the expiry
my $exp_races = 0;
for my $k (1 .. 3) {
    my $h = eval { hold("e$k", 'A', 'B', '1.00', expiresIn => 1)->json } // {};
    my $at = ms_of($h->{expiresAt} // '') // 0;
    sleep(($at - 5 - time * 1000) / 1000) if $at - 5 > time * 1000;
    my $c = capture("e$k");
    sleep 1.5;
    my $final = eval { $t->get("/accounts/transactions/e$k")->json->{status} } // '';
    $exp_races++ if ($c->{status} == 200 && $final eq 'COMPLETED')
                 || ($c->{status} == 409 && $final eq 'EXPIRED');
}
is($exp_races, 3, 'capture racing the expiry: one of the two, never both');

# two pods racing for the same expiries: each hold released once

my $pod2 = RBCS::Test->new(pod_of => $t, conf => $conf);
my @ex;
for my $k (1 .. 40) {
    my $src = $k % 2 ? 'A' : 'BANK';
    my $r = hold("x2p$k", $src, 'B', '0.01', expiresIn => 1);
    push @ex, "x2p$k" if $r->{status} == 201;
}
is(scalar @ex, 40, '40 one-second holds');
$deadline = time + 8;
my $left = 40;
while (time < $deadline) {
    ($left) = db()->selectrow_array(q{SELECT COUNT(*) FROM transactions
                                      WHERE transaction_id LIKE 'x2p%' AND status = 'PENDING'});
    last if $left == 0;
    sleep 0.1;
}
is($left, 0, 'all released while two pods scan for them');
($n) = db()->selectrow_array(q{SELECT COUNT(*) FROM audit_log
                               WHERE action = 'hold.expire' AND subject LIKE 'x2p%'});
is($n, 40, 'one release each: 40 expiry rows for 40 holds');
is(balance('A')->{heldBalance}, '0.00', 'nothing held any more');
is($pod2->get('/accounts/A/balance')->json->{heldBalance}, '0.00',
   'the other pod reads the released held balance');

# ---------------------------------------------------------------- paging --

for my $k (1 .. 5) {
    hold("p$k", 'B', 'A', '0.01');
}
my @ids;
my $path = '/accounts/B/holds?limit=2';
my $pages = 0;
while ($path && $pages++ < 10) {
    my $j = eval { $t->get($path)->json } // {};
    push @ids, map { $_->{transactionId} } @{ $j->{holds} // [] };
    hold("p-new$pages", 'B', 'A', '0.01');    # arrives while paging
    $path = defined $j->{next} ? "/accounts/B/holds?limit=2&before=$j->{next}" : undef;
}
is_deeply([@ids[0 .. 4]], [qw(p5 p4 p3 p2 p1)], 'pages list the holds newest first');
my %once;
$once{$_}++ for @ids;
ok(!grep({ $_ > 1 } values %once), 'each hold once while new ones arrive');

# ---------------------------------------------------------- edges, backstop --

is_problem(capture('nope', { amount => '0' }), 400, 'invalid_amount',
           'a zero capture is refused before the id is looked up');
is_problem(capture('t2', { amount => '1.005' }), 400, 'invalid_amount',
           'beyond the scale before "not a hold"');

my $long = 'L' x 63 . ':';
is(hold($long, 'A', 'B', '0.01')->{status}, 201, 'a hold with a 64-character id');
$r = $t->get("/accounts/A/holds?limit=1&before=" . int(time * 1000 + 60_000) . "_$long");
is($r->{status}, 200, 'a cursor with the longest id: 200');
$r = $t->get('/accounts/A/holds?limit=1');
my $next = eval { $r->json->{next} };
(my $enc = $next // '') =~ s/:/%3A/g;
$r = $t->get("/accounts/A/holds?limit=1&before=$enc");
is($r->{status}, 200, 'a percent-encoded cursor is decoded');
void($long);

# the schema's backstop: a hold whose pending row is gone is not released
hold('g1', 'A', 'B', '1.00');
my $before = balance('A');
db()->do(q{DELETE FROM holds WHERE transaction_id = 'g1'});
$r = capture('g1');
is($r->{status}, 503, 'a capture the database refuses (the hold is not pending there): 503');
is(balance('A')->{balance}, $before->{balance}, 'nothing moved');
is(eval { $t->get('/accounts/transactions/g1')->json->{status} }, 'PENDING',
   'the hold as it was');
db()->do(q{INSERT INTO holds (transaction_id, source_account, destination_account, amount,
           scale, expires_at, created_at)
           SELECT transaction_id, source_account, destination_account, amount, scale,
                  expires_at, created_at FROM transactions WHERE transaction_id = 'g1'});
is(void('g1')->{status}, 200, 'with its row back, it is released');

# ------------------------------------------------------------- invariants --

cmp_ok(sum_balances(), '==', $SUM, 'the sum of all balances is unchanged');
my ($held_ok) = db()->selectrow_array(q{
    SELECT COUNT(*) FROM accounts a WHERE held_balance <> (SELECT IFNULL(SUM(amount), 0)
        FROM holds h WHERE h.source_account = a.account_number)});
is($held_ok, 0, 'every held balance is the sum of its pending holds');
my ($twice) = db()->selectrow_array(q{
    SELECT COUNT(*) FROM (SELECT subject FROM audit_log WHERE action LIKE 'hold.%'
        GROUP BY subject HAVING COUNT(*) > 1) x});
is($twice, 0, 'no hold resolved twice');
my ($over) = db()->selectrow_array(q{SELECT COUNT(*) FROM transactions
                                     WHERE captured_amount > amount});
is($over, 0, 'no hold captured above its amount');
{
    my $dbh = db();
    local $dbh->{PrintError} = 0;
    local $dbh->{RaiseError} = 1;
    my $ok = eval { $dbh->do(q{UPDATE transactions SET captured_amount = amount + 0.01
                               WHERE transaction_id = 'h1'}); 1 };
    ok(!$ok, 'the schema refuses a capture above its hold (CHECK)');
}
my ($audit) = db()->selectrow_array(q{SELECT COUNT(*) FROM audit_log
                                      WHERE action = 'hold' AND subject = 'h1'});
is($audit, 1, 'a hold has its audit row');

done_testing();
