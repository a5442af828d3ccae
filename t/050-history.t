#!/usr/bin/perl
# Acceptance tests for the account history,
# GET /accounts/{accountNumber}/transactions?limit=..&before=.., as
# /work/shared/API.md describes it: shape, order, signed amounts, the
# OPENING entry, paging with a stable cursor (also while transfers arrive).

use strict;
use warnings;

use Test::More;
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

my $TS_RE = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/;

# ---------------------------------------------------------------- helpers --

sub jdecode { my $d = eval { JSON::PP->new->decode($_[0]) }; $d }

sub open_account {
    my ($n, $cur, $init) = @_;
    my %b = (accountNumber => $n, currency => $cur);
    $b{initialBalance} = $init if defined $init;
    my $r = $t->post_json('/accounts', \%b);
    is($r->{status}, 201, "open account $n") or diag($r->{raw});
}

my $SEQ = 0;
sub xfer {
    my ($src, $dst, $amount, $id) = @_;
    $id //= 'h-' . ++$SEQ;
    my $r = $t->post_json('/accounts/transactions', { transactionId => $id,
        sourceAccountNumber => $src, destinationAccountNumber => $dst, amount => $amount });
    return ($r, $id);
}

sub ok_xfer {
    my ($src, $dst, $amount, $id) = @_;
    my ($r, $tid) = xfer($src, $dst, $amount, $id);
    is($r->{status}, 201, "transfer $tid $src -> $dst $amount") or diag($r->{raw});
    return $tid;
}

sub problem {
    my ($r, $status, $code, $name) = @_;
    my $ok = is($r->{status}, $status, "$name: status $status");
    $ok &= is((jdecode($r->{body}) // {})->{code}, $code, "$name: code $code");
    like($r->{headers}{'content-type'} // '', qr{^application/problem\+json}i,
        "$name: problem+json");
    diag("response: $r->{raw}") unless $ok;
}

sub history {
    my ($acc, $query) = @_;
    my $r = $t->get("/accounts/$acc/transactions" . (defined $query ? "?$query" : ''));
    return ($r, jdecode($r->{body}));
}

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# all pages with the given limit: (entries, number of pages, ok)
sub walk {
    my ($acc, $limit, $between) = @_;
    my (@all, $cursor);
    my $pages = 0;
    while (1) {
        my $q = "limit=$limit" . (defined $cursor ? '&before=' . uri_escape($cursor) : '');
        my ($r, $j) = history($acc, $q);
        unless ($r->{status} == 200 && $j) {
            fail("walk $acc limit $limit: page " . ($pages + 1) . " answers $r->{status}");
            diag($r->{raw});
            return (\@all, $pages, 0);
        }
        $pages++;
        if (@{ $j->{entries} } > $limit) {
            fail("walk $acc: page $pages has more than $limit entries");
            return (\@all, $pages, 0);
        }
        push @all, @{ $j->{entries} };
        $cursor = $j->{next};
        last unless defined $cursor;
        if ($pages > 1000) { fail('walk does not end'); return (\@all, $pages, 0) }
        $between->() if $between;
    }
    return (\@all, $pages, 1);
}

sub key_of {   # an entry as one string, for comparisons
    my ($e) = @_;
    return join '|', map { $_ // 'null' } @$e{qw(type transactionId counterpartyAccountNumber
                                               amount balanceAfter createdAt)};
}

# ------------------------------------------------------------------ setup --

open_account('H1', 'USD', '100.00');
open_account('H2', 'USD');
open_account('H3', 'EUR', '10.00');
open_account('HJ', 'JPY', '1000');
open_account('HJ2', 'JPY');

my @ids;
push @ids, ok_xfer('H1', 'H2', '10.50');        # H1 89.50  H2 10.50
push @ids, ok_xfer('H2', 'H1', '0.25');         # H1 89.75  H2 10.25
push @ids, ok_xfer('H1', 'H2', '5');            # H1 84.75  H2 15.25

# rejections must not appear in the history
my ($rj) = xfer('H2', 'H1', '1000.00', 'rj-funds');
is($rj->{status}, 422, 'rejected: insufficient funds');
($rj) = xfer('H1', 'NOPE', '1.00', 'rj-404');
is($rj->{status}, 404, 'rejected: unknown destination');
($rj) = xfer('H1', 'H3', '1.00', 'rj-cur');
is($rj->{status}, 422, 'rejected: currency mismatch');
($rj) = xfer('H1', 'H1', '1.00', 'rj-same');
is($rj->{status}, 400, 'rejected: same account');
# a replay must not add an entry either
my ($rp) = xfer('H1', 'H2', '10.5', $ids[0]);
is($rp->{status}, 200, 'replay of the first transfer: 200');

# ------------------------------------------------------------------ shape --

my ($r, $h) = history('H1');
is($r->{status}, 200, 'H1 history: 200') or diag($r->{raw});
like($r->{headers}{'content-type'} // '', qr{^application/json}i, 'H1 history: application/json');
$h //= {};
is($h->{accountNumber}, 'H1', 'H1 history: accountNumber');
is($h->{currency}, 'USD', 'H1 history: currency');
is(ref $h->{entries}, 'ARRAY', 'H1 history: entries is an array');
ok(exists $h->{next} && !defined $h->{next}, 'H1 history: next is null (one page)');
my @e = @{ $h->{entries} // [] };
is(scalar @e, 4, 'H1 history: 3 transfers and the opening');
is_deeply([ map { [ @$_{qw(type transactionId counterpartyAccountNumber amount balanceAfter)} ] } @e ],
    [ [ 'TRANSFER', $ids[2], 'H2', '-5.00',  '84.75' ],
      [ 'TRANSFER', $ids[1], 'H2', '0.25',   '89.75' ],
      [ 'TRANSFER', $ids[0], 'H2', '-10.50', '89.50' ],
      [ 'OPENING',  undef,   undef, '100.00', '100.00' ] ],
    'H1 history: newest first, signed amounts, balances after, opening last')
    or diag(explain \@e);
for my $i (0 .. $#e) {
    like($e[$i]{createdAt} // '', $TS_RE, "H1 entry $i: createdAt UTC with milliseconds");
    ok(exists $e[$i]{transactionId} && exists $e[$i]{counterpartyAccountNumber},
       "H1 entry $i: transactionId and counterpartyAccountNumber present");
}
ok(!grep({ ($e[$_]{createdAt} // '') lt ($e[$_ + 1]{createdAt} // '') } 0 .. $#e - 1),
   'H1 history: createdAt does not increase going down the list');

($r, $h) = history('H2');
is($r->{status}, 200, 'H2 history: 200');
@e = @{ ($h // {})->{entries} // [] };
is_deeply([ map { [ @$_{qw(type transactionId counterpartyAccountNumber amount balanceAfter)} ] } @e ],
    [ [ 'TRANSFER', $ids[2], 'H1', '5.00',   '15.25' ],
      [ 'TRANSFER', $ids[1], 'H1', '-0.25',  '10.25' ],
      [ 'TRANSFER', $ids[0], 'H1', '10.50',  '10.50' ],
      [ 'OPENING',  undef,   undef, '0.00',  '0.00' ] ],
    'H2 history: credits unsigned, debits "-", opening "0.00"')
    or diag(explain \@e);

($r, $h) = history('H3');
is($r->{status}, 200, 'H3 history: 200');
is_deeply([ map { [ @$_{qw(type transactionId counterpartyAccountNumber amount balanceAfter)} ] }
            @{ ($h // {})->{entries} // [] } ],
    [ [ 'OPENING', undef, undef, '10.00', '10.00' ] ],
    'H3 history: only the opening (the rejected transfer is absent)');
is(($h // {})->{currency}, 'EUR', 'H3 history: currency EUR');

ok_xfer('HJ', 'HJ2', '250');
($r, $h) = history('HJ');
is_deeply([ map { [ @$_{qw(type amount balanceAfter)} ] } @{ ($h // {})->{entries} // [] } ],
    [ [ 'TRANSFER', '-250', '750' ], [ 'OPENING', '1000', '1000' ] ],
    'JPY history: amounts without decimals');
($r, $h) = history('HJ2');
is_deeply([ map { [ @$_{qw(type amount balanceAfter)} ] } @{ ($h // {})->{entries} // [] } ],
    [ [ 'TRANSFER', '250', '250' ], [ 'OPENING', '0', '0' ] ],
    'JPY history: credit and a zero opening "0"');

# ----------------------------------------------------- unknown accounts --

problem((history('NOPE'))[0], 404, 'account_not_found', 'history of an unknown account');
problem((history('h1'))[0], 404, 'account_not_found', 'history of "h1" (only "H1" exists)');
problem((history('-x'))[0], 404, 'account_not_found', 'history of "-x" (bad pattern)');
problem((history('x' x 65))[0], 404, 'account_not_found', 'history of a 65-char number');
problem((history('NOPE', 'limit=0'))[0], 400, 'invalid_request',
        'unknown account and limit 0: 400 first');

# ------------------------------------------------------------------ limit --

for my $bad ('0', '501', '-1', 'abc', '1.5', '', '10abc', '99999999999999999999') {
    problem((history('H1', "limit=$bad"))[0], 400, 'invalid_request', "limit=$bad");
}
for my $cur ('zzz', '-1', '1.5', "'") {
    problem((history('H1', 'before=' . uri_escape($cur)))[0], 400, 'invalid_request',
            "before=$cur");
}
for my $good (1, 4, 500) {
    ($r, $h) = history('H1', "limit=$good");
    is($r->{status}, 200, "limit=$good: 200");
    is(scalar @{ ($h // {})->{entries} // [] }, $good < 4 ? $good : 4, "limit=$good: entries");
}
($r, $h) = history('H1', 'limit=1');
ok(defined(($h // {})->{next}), 'limit=1: next is given');
is(ref(\ ($h // {})->{next}), 'SCALAR', 'next is a string, not an object');
($r, $h) = history('H1', 'limit=4');
ok(exists(($h // {})->{next}) && !defined $h->{next}, 'limit=4 (everything): next null');
($r, $h) = history('H1', 'limit=3');
ok(defined(($h // {})->{next}), 'limit=3 (one left): next given');
($r, $h) = history('H1', 'limit=3&before=' . uri_escape($h->{next} // ''));
is(scalar @{ ($h // {})->{entries} // [] }, 1, 'second page: the last entry');
is((($h // {})->{entries} // [{}])->[0]{type}, 'OPENING', 'second page: the opening');
ok(exists(($h // {})->{next}) && !defined $h->{next}, 'last page: next null');

# ------------------------------------------------------------------ paging --

open_account('BIG', 'USD', '1000.00');
open_account('PEER', 'USD', '1000.00');
my @big;
for my $i (1 .. 60) {
    push @big, $i % 3 ? ok_xfer('BIG', 'PEER', "1.$i") : ok_xfer('PEER', 'BIG', '0.5');
}

# everything at once (61 entries fit in 500)
($r, $h) = history('BIG', 'limit=500');
is($r->{status}, 200, 'BIG limit=500: 200');
my @full = @{ ($h // {})->{entries} // [] };
is(scalar @full, 61, 'BIG: 60 transfers and the opening');
ok(exists(($h // {})->{next}) && !defined $h->{next}, 'BIG limit=500: next null');
is_deeply([ map { $_->{transactionId} } @full ], [ (reverse @big), undef ],
    'BIG: every transfer, newest first, then the opening');

# the balances chain: each balanceAfter is the previous one plus the amount
my $chain_ok = 1;
for my $i (0 .. $#full - 1) {
    my $sum = Math::BigFloat->new($full[$i + 1]{balanceAfter})->badd($full[$i]{amount});
    $chain_ok = 0 unless $sum->bcmp(Math::BigFloat->new($full[$i]{balanceAfter})) == 0;
}
ok($chain_ok, 'BIG: balanceAfter(older) + amount = balanceAfter for every entry');
my $bal = jdecode($t->get('/accounts/BIG/balance')->{body}) // {};
is($full[0]{balanceAfter}, $bal->{balance}, 'BIG: newest balanceAfter is the balance');

# the default limit is 50
($r, $h) = history('BIG');
is($r->{status}, 200, 'BIG default limit: 200');
is(scalar @{ ($h // {})->{entries} // [] }, 50, 'default limit: 50 entries');
ok(defined(($h // {})->{next}), 'default limit: next given');
is_deeply([ map { key_of($_) } @{ ($h // {})->{entries} // [] } ],
          [ map { key_of($_) } @full[0 .. 49] ], 'default limit: the 50 newest');
($r, $h) = history('BIG', 'before=' . uri_escape(($h // {})->{next} // ''));
is(scalar @{ ($h // {})->{entries} // [] }, 11, 'default limit, page 2: 11 entries');
ok(exists(($h // {})->{next}) && !defined $h->{next}, 'default limit, page 2: next null');

# walking with several page sizes lists every entry exactly once, in order
for my $limit (1, 7, 20, 61, 100) {
    my ($all, $pages, $ok) = walk('BIG', $limit);
    is_deeply([ map { key_of($_) } @$all ], [ map { key_of($_) } @full ],
              "walk with limit=$limit: every entry once, in order");
    is($pages, int((61 + $limit - 1) / $limit), "walk with limit=$limit: $pages pages");
}

# walking while new transfers arrive: the entries that existed when the
# walk started, each once, in order
my @arrived;
my $between = sub {
    push @arrived, ok_xfer('BIG', 'PEER', '0.01');
    push @arrived, ok_xfer('PEER', 'BIG', '0.02');
};
my ($all, $pages) = walk('BIG', 6, $between);
is_deeply([ map { key_of($_) } @$all ], [ map { key_of($_) } @full ],
          'walk while transfers arrive: exactly the entries at the start, once, in order');
my %seen;
is(scalar(grep { $seen{ key_of($_) }++ } @$all), 0, 'walk while transfers arrive: no duplicates');
ok(scalar @arrived > 0, 'transfers did arrive during the walk');

# the new ones are at the top of a fresh read, the old ones below them
($r, $h) = history('BIG', 'limit=500');
my @now = @{ ($h // {})->{entries} // [] };
is(scalar @now, 61 + @arrived, 'all entries after the walk');
is_deeply([ map { $_->{transactionId} } @now[0 .. $#arrived] ], [ reverse @arrived ],
          'the transfers that arrived are the newest entries');
is_deeply([ map { key_of($_) } @now[@arrived .. $#now] ], [ map { key_of($_) } @full ],
          'the older entries unchanged');

# a cursor handed out earlier still gives the same page afterwards
($r, $h) = history('BIG', 'limit=10');
my $cur = ($h // {})->{next};
my ($r1, $p1) = history('BIG', 'limit=10&before=' . uri_escape($cur // ''));
ok_xfer('BIG', 'PEER', '0.03');
my ($r2, $p2) = history('BIG', 'limit=10&before=' . uri_escape($cur // ''));
is_deeply([ map { key_of($_) } @{ ($p2 // {})->{entries} // [] } ],
          [ map { key_of($_) } @{ ($p1 // {})->{entries} // [] } ],
          'the same cursor gives the same page after a new transfer');

# the database has every entry the API lists (balances agree)
my $dbh = $t->dbh;
my ($db_bal) = $dbh->selectrow_array(
    q{SELECT CAST(balance AS CHAR) FROM accounts WHERE account_number = 'BIG'});
($r, $h) = history('BIG', 'limit=1');
is(Math::BigFloat->new($db_bal)->bcmp(Math::BigFloat->new(($h // {})->{entries}[0]{balanceAfter})),
   0, "database: BIG's balance equals the newest balanceAfter");

done_testing();
