#!/usr/bin/perl
# Acceptance tests (black box, /work/shared/API.md): request-level rules of
# the two POST routes (POST /accounts, POST /accounts/transactions): media
# type, empty / chunked / oversized bodies, what a JSON body must be (one
# object, valid UTF-8, no duplicate key, no unknown field, no null, right
# types, depth <= 32), the problem details format, 405 + Allow, 404 for
# unknown routes, /healthz, /readyz, HEAD, and that rejected requests change
# nothing.

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
    $s = substr($s, 0, 60) . '...' if length $s > 60;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

# A problem details document (RFC 9457) with the given status and code
# (code undef: any non-empty code).
sub is_problem {
    my ($r, $status, $code, $name) = @_;
    subtest "$name -> $status " . ($code // '') => sub {
        is($r->{status}, $status, "status $status")
            or diag('body: ' . shown($r->{body} // ''));
        like($r->{headers}{'content-type'} // '', qr{^application/problem\+json\s*(;|\z)}i,
             'Content-Type application/problem+json');
        my $j = eval { $r->json };
        ok(ref $j eq 'HASH', 'body is a JSON object') or return;
        if (defined $code) { is($j->{code}, $code, "code $code") }
        else { ok(defined $j->{code} && !ref $j->{code} && length $j->{code}, 'a code') }
        is($j->{status}, $status, 'status member equals the HTTP status');
        like($r->{body}, qr/"status"\s*:\s*\Q$status\E\s*[,}]/, 'status member is a JSON number');
        for my $m (qw(type title detail)) {
            ok(defined $j->{$m} && !ref $j->{$m} && length $j->{$m}, "member $m");
        }
        ok(!exists $j->{instance}, 'no instance member');
    };
}

sub post {
    my ($path, $body, $ctype) = @_;
    return $t->request('POST', $path, body => $body,
                       headers => { 'Content-Type' => @_ > 2 ? $ctype : 'application/json' });
}

# Raw HTTP/1.1 request with a chunked body; @chunks are the chunk payloads.
sub chunked_request {
    my ($path, $chunks, %o) = @_;
    my $head = "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Content-Type: " . ($o{ctype} // 'application/json') . "\r\n"
        . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    my @parts = ($head, (map { sprintf('%x', length $_) . "\r\n$_\r\n" } @$chunks), "0\r\n\r\n");
    return $o{split} ? $t->raw_request(\@parts, delay => 0.02)
                     : $t->raw_request(join '', @parts);
}

sub counts {
    my $dbh = $t->dbh;
    return join '/', map { scalar $dbh->selectrow_array("SELECT COUNT(*) FROM $_") }
        qw(accounts transactions entries);
}

my $TXN = 0;
# The two POST routes, each with a maker of a valid JSON body text.  The
# body makers take a unique suffix (account number / transaction id).
my %ROUTE = (
    accounts => {
        path => '/accounts',
        body => sub { qq({"accountNumber":"NA-$_[0]","currency":"USD","initialBalance":"1.00"}) },
        ok   => 201,
    },
    transfer => {
        path => '/accounts/transactions',
        body => sub { qq({"transactionId":"tx-$_[0]","sourceAccountNumber":"SRC",)
                    . qq("destinationAccountNumber":"DST","amount":"1.00","currency":"USD"}) },
        ok   => 201,
    },
);
my $SEQ = 0;

# ------------------------------------------------------------------ setup --

is($t->post_json('/accounts', { accountNumber => 'SRC', initialBalance => '1000.00' })->{status},
   201, 'open SRC');
is($t->post_json('/accounts', { accountNumber => 'DST' })->{status}, 201, 'open DST');

# --------------------------------------------------- operations, HEAD --

my $r = $t->get('/healthz');
is($r->{status}, 200, 'GET /healthz: 200');
$r = $t->get('/readyz');
is($r->{status}, 200, 'GET /readyz: 200 (database up)');

for my $p ('/accounts/SRC', '/accounts/SRC/balance', '/healthz') {
    my $g = $t->get($p);
    $r = $t->request('HEAD', $p);
    is($r->{status}, 200, "HEAD $p: 200");
    my $i = index($r->{raw}, "\r\n\r\n");
    is($i >= 0 ? substr($r->{raw}, $i + 4) : undef, '', "HEAD $p: no body");
    is(lc($r->{headers}{'content-type'} // ''), lc($g->{headers}{'content-type'} // ''),
       "HEAD $p: same Content-Type as GET");
}
$r = $t->request('HEAD', '/accounts/NOPE');
is($r->{status}, 404, 'HEAD /accounts/NOPE: 404');
my $hi = index($r->{raw}, "\r\n\r\n");
is($hi >= 0 ? substr($r->{raw}, $hi + 4) : undef, '', 'HEAD /accounts/NOPE: no body');

# ----------------------------------------------------- 405, unknown route --

for my $c ([ 'DELETE', '/accounts',                   qr/^POST\z/ ],
           [ 'GET',    '/accounts',                   qr/^POST\z/ ],
           [ 'PUT',    '/accounts',                   qr/^POST\z/ ],
           [ 'GET',    '/accounts/transactions',      qr/^POST\z/ ],
           [ 'PATCH',  '/accounts/transactions',      qr/^POST\z/ ],
           [ 'POST',   '/accounts/SRC',               qr/\bGET\b/ ],
           [ 'POST',   '/accounts/NOPE',              qr/\bGET\b/ ],
           [ 'DELETE', '/accounts/SRC',               qr/\bGET\b/ ],
           [ 'PUT',    '/accounts/SRC/balance',       qr/\bGET\b/ ],
           [ 'POST',   '/accounts/SRC/transactions',  qr/\bGET\b/ ],
           [ 'PUT',    '/accounts/transactions/x',    qr/\bGET\b/ ],
           [ 'POST',   '/accounts/transactions/x',    qr/\bGET\b/ ],
           [ 'POST',   '/healthz',                    qr/\bGET\b/ ]) {
    my ($m, $p, $allow) = @$c;
    my %o = $m eq 'GET' || $m eq 'DELETE' ? ()
          : (body => '{}', headers => { 'Content-Type' => 'application/json' });
    $r = $t->request($m, $p, %o);
    is_problem($r, 405, 'method_not_allowed', "$m $p");
    like($r->{headers}{allow} // '', $allow, "$m $p: Allow " . ($r->{headers}{allow} // 'missing'));
}

for my $p ('/', '/nope', '/account', '/accounts/SRC/nope', '/accounts/SRC/balance/x',
           '/accounts/transactions/x/y', '/healthz/x') {
    is_problem($t->get($p), 404, undef, "GET $p (unknown route)");
}

my $counts = counts();

# -------------------------------------------------------------- media type --

for my $k (sort keys %ROUTE) {
    my $R = $ROUTE{$k};
    my $body = $R->{body}->('mt-' . ++$SEQ);
    $r = $t->request('POST', $R->{path}, body => $body);
    is_problem($r, 415, 'unsupported_media_type', "$k: body without Content-Type");
    for my $ct ('text/plain', 'application/x-www-form-urlencoded', 'application/jsonx',
                'text/json', 'application/problem+json', '') {
        is_problem(post($R->{path}, $body, $ct), 415, 'unsupported_media_type',
                   "$k: Content-Type '$ct'");
    }
    is_problem(post($R->{path}, '{"accountNumber":', 'text/plain'), 415, 'unsupported_media_type',
               "$k: text/plain with broken JSON (415 before 400)");
}
is(counts(), $counts, 'nothing changed by the 415s');

for my $k (sort keys %ROUTE) {
    my $R = $ROUTE{$k};
    for my $ct ('Application/JSON; charset=utf-8', 'APPLICATION/JSON', 'application/json;charset=UTF-8',
                'application/json; charset="utf-8"') {
        $r = post($R->{path}, $R->{body}->('ct-' . ++$SEQ), $ct);
        is($r->{status}, 201, "$k: Content-Type '$ct' accepted")
            or diag('body: ' . shown($r->{body}));
        like($r->{headers}{'content-type'} // '', qr{^application/json\s*(;|\z)}i,
             "$k: answer is application/json");
    }
}
$counts = counts();

# ------------------------------------------------------------- empty body --

for my $k (sort keys %ROUTE) {
    my $p = $ROUTE{$k}{path};
    is_problem($t->request('POST', $p, headers => { 'Content-Type' => 'application/json' }),
               400, 'invalid_request', "$k: POST without a body");
    is_problem($t->request('POST', $p), 400, 'invalid_request',
               "$k: POST without a body nor Content-Type");
    for my $ct ('application/json', 'text/plain', undef) {
        is_problem($t->request('POST', $p, body => '', headers => { 'Content-Type' => $ct }),
                   400, 'invalid_request',
                   "$k: Content-Length: 0 with Content-Type " . ($ct // 'none'));
    }
    is_problem(chunked_request($p, []), 400, 'invalid_request', "$k: empty chunked body");
}
is(counts(), $counts, 'nothing changed by empty bodies');

# ----------------------------------------------------------- chunked body --

for my $k (sort keys %ROUTE) {
    my $R = $ROUTE{$k};
    my $id = 'ch-' . ++$SEQ;
    $r = chunked_request($R->{path}, [ $R->{body}->($id) ]);
    is($r->{status}, 201, "$k: chunked body, one chunk: 201") or diag(shown($r->{raw}));
    my $body = $R->{body}->('ch-' . ++$SEQ);
    my @chunks = map { substr($body, $_ * 7, 7) } 0 .. int((length($body) - 1) / 7);
    $r = chunked_request($R->{path}, \@chunks, split => 1);
    is($r->{status}, 201, "$k: chunked body in " . scalar(@chunks) . " chunks, sent apart: 201")
        or diag(shown($r->{raw}));
    $body = $R->{body}->('ch-' . ++$SEQ);
    $r = chunked_request($R->{path}, [ split //, $body ]);
    is($r->{status}, 201, "$k: chunked body, one byte per chunk: 201") or diag(shown($r->{raw}));
    $r = chunked_request($R->{path}, [ $R->{body}->('ch-' . ++$SEQ) ], ctype => 'text/plain');
    is_problem($r, 415, 'unsupported_media_type', "$k: chunked body as text/plain");
}
is($t->get('/accounts/NA-ch-' . ($SEQ - 7))->{status}, 200, 'chunked opening is readable');
$counts = counts();

# ------------------------------------------------------------- body limit --

{
    my $base = '{"accountNumber":"BIG-1"}';
    my $exact = $base . (' ' x (65536 - length $base));
    is(length $exact, 65536, 'a 64 KiB body');
    $r = post('/accounts', $exact);
    is($r->{status}, 201, 'a body of exactly 64 KiB is accepted') or diag(shown($r->{body}));
    $counts = counts();
    my $big = $base . (' ' x (65537 - length $base));
    for my $k (sort keys %ROUTE) {
        my $p = $ROUTE{$k}{path};
        $r = post($p, $big);
        is_problem($r, 413, 'payload_too_large', "$k: 64 KiB + 1 byte with Content-Length");
        my $b1 = $r->{body};
        is(post($p, $big)->{body}, $b1, "$k: the 413 twice gives the same bytes");
        is_problem(post($p, $base . (' ' x 200_000)), 413, 'payload_too_large',
                   "$k: 200 KB body with Content-Length");
        $r = chunked_request($p, [ $base, map { ' ' x 8192 } 1 .. 9 ]);
        is_problem($r, 413, 'payload_too_large', "$k: 72 KiB chunked body");
        $r = chunked_request($p, [ $base . (' ' x (65537 - length $base)) ]);
        is_problem($r, 413, 'payload_too_large', "$k: 64 KiB + 1 byte in one chunk");
    }
    is(counts(), $counts, 'nothing changed by the 413s');
    is($t->get('/healthz')->{status}, 200, 'still alive after the 413s');
}

# ----------------------------------------------- body is one JSON object --

$counts = counts();
for my $k (sort keys %ROUTE) {
    my $R = $ROUTE{$k};
    my $v = $R->{body}->('obj-' . ++$SEQ);
    (my $open = $v) =~ s/\}\z//;
    for my $b ('[]', '[' . $v . ']', '"x"', '1', 'null', 'true', ' ', '{', $open, "$v$v",
               "$v x", "$v,", "$v}", "$v\0", "$open,}", "$open,\"x\"}", '{"a" 1}',
               "{'accountNumber':'Q1'}", '{accountNumber:"Q1"}') {
        is_problem(post($R->{path}, $b), 400, 'invalid_request', "$k: body '" . shown($b) . "'");
    }
    is_problem(post($R->{path}, '{}'), 400, 'invalid_request', "$k: {} (missing fields)");
}
is(counts(), $counts, 'nothing changed by non-object bodies');

$r = post('/accounts', " \r\n\t{\"accountNumber\" : \"WS-1\" ,\n\"currency\":\"USD\"}\r\n\t ");
is($r->{status}, 201, 'JSON whitespace around and inside the object is fine')
    or diag(shown($r->{body}));
$counts = counts();

# --------------------------------------------------------------- UTF-8 --

# The currency field tells "invalid UTF-8" (invalid_request) from "unknown
# code" (unsupported_currency).
for my $k (sort keys %ROUTE) {
    my $R = $ROUTE{$k};
    my $v = $R->{body}->('u8-' . ++$SEQ);
    for my $bad ("US\xC0\x80", "US\xED\xA0\x80", "US\xE2\x82", "US\xC3", "US\xFF", "US\x80",
                 "US\xF4\x90\x80\x80", "US\xF0\x9F\x98") {
        (my $b = $v) =~ s/"currency":"USD"/"currency":"$bad"/;
        is_problem(post($R->{path}, $b), 400, 'invalid_request',
                   "$k: raw invalid UTF-8 in currency '" . shown($bad) . "'");
    }
    (my $b = $v) =~ s/\}\z/,"\xC0\x80":1}/;
    is_problem(post($R->{path}, $b), 400, 'invalid_request', "$k: invalid UTF-8 in a key");
    for my $esc ('\ud800', '\udc00', '\ud800x', '\ud800\u0041', '\udbff', '\ude00\ud83d') {
        ($b = $v) =~ s/"currency":"USD"/"currency":"$esc"/;
        is_problem(post($R->{path}, $b), 400, 'invalid_request', "$k: lone surrogate \"$esc\"");
    }
    for my $u ("US\xE2\x82\xAC", '\ud83d\ude00', "\xC3\xA9UR") {
        ($b = $v) =~ s/"currency":"USD"/"currency":"$u"/;
        is_problem(post($R->{path}, $b), 400, 'unsupported_currency',
                   "$k: valid non-ASCII currency '" . shown($u) . "' is just unknown");
    }
}
is(counts(), $counts, 'nothing changed by invalid UTF-8');
$r = post('/accounts', '{"accountNumber":"ESC-1","currency":"\u0055S\u0044"}');
is($r->{status}, 201, 'escaped "\u0055S\u0044" is USD') or diag(shown($r->{body}));
is(eval { $r->json->{currency} }, 'USD', '... currency USD');
$r = post('/accounts', '{"\u0061ccountNumber":"ESC-2"}');
is($r->{status}, 201, 'escaped key "\u0061ccountNumber" is accountNumber') or diag(shown($r->{body}));
$counts = counts();

# -------------------------------------- duplicate keys, unknown fields --

for my $c ([ accounts => '{"accountNumber":"DUP-1","accountNumber":"DUP-1"}' ],
           [ accounts => '{"accountNumber":"DUP-2","\u0061ccountNumber":"DUP-2"}' ],
           [ accounts => '{"accountNumber":"DUP-3","currency":"USD","currency":"EUR"}' ],
           [ accounts => '{"accountNumber":"DUP-4","initialBalance":"1","initialBalance":"1"}' ],
           [ accounts => '{"accountNumber":"DUP-5","currency":"USD","\u0063urrency":"USD"}' ],
           [ transfer => '{"transactionId":"tx-dup-1","transactionId":"tx-dup-1",'
                       . '"sourceAccountNumber":"SRC","destinationAccountNumber":"DST","amount":"1"}' ],
           [ transfer => '{"transactionId":"tx-dup-2","sourceAccountNumber":"SRC",'
                       . '"destinationAccountNumber":"DST","amount":"1","amount":"1"}' ],
           [ transfer => '{"transactionId":"tx-dup-3","sourceAccountNumber":"SRC",'
                       . '"destinationAccountNumber":"DST","amount":"1","\u0061mount":"2"}' ]) {
    is_problem(post($ROUTE{ $c->[0] }{path}, $c->[1]), 400, 'invalid_request',
               "$c->[0]: duplicate key in " . shown($c->[1]));
}
for my $k (sort keys %ROUTE) {
    my $v = $ROUTE{$k}{body}->('unk-' . ++$SEQ);
    for my $extra ('"foo":1', '"foo":null', '"AccountNumber":"X"', '"Currency":"USD"',
                   '"amount ":"1"', '"balance":"1.00"', '"version":1') {
        next if $k eq 'accounts' && $extra eq '"amount ":"1"';
        (my $b = $v) =~ s/\}\z/,$extra}/;
        is_problem(post($ROUTE{$k}{path}, $b), 400, 'invalid_request', "$k: unknown field $extra");
    }
}
is(counts(), $counts, 'nothing changed by duplicate keys / unknown fields');
is($t->get('/accounts/DUP-1')->{status}, 404, 'DUP-1 not opened');
is($t->get('/accounts/DUP-2')->{status}, 404, 'DUP-2 not opened');

# ------------------------------------------------ null, wrong types --

{
    my %fields = (
        accounts => [ qw(accountNumber currency initialBalance) ],
        transfer => [ qw(transactionId sourceAccountNumber destinationAccountNumber amount
                         currency timestamp) ],
    );
    my %amount = (initialBalance => 1, amount => 1);
    for my $k (sort keys %ROUTE) {
        my $v = $ROUTE{$k}{body}->('null-' . ++$SEQ);
        $v =~ s/\}\z/,"timestamp":"2026-11-20T10:00:00Z"}/ if $k eq 'transfer';
        for my $f (@{ $fields{$k} }) {
            (my $b = $v) =~ s/"\Q$f\E":"[^"]*"/"$f":null/ or die "no $f in $v";
            is_problem(post($ROUTE{$k}{path}, $b), 400,
                       $amount{$f} ? 'invalid_amount' : 'invalid_request', "$k: $f null");
            if ($f =~ /^(accountNumber|transactionId|sourceAccountNumber|destinationAccountNumber|amount)\z/) {
                ($b = $v) =~ s/"\Q$f\E":"[^"]*",?//;
                $b =~ s/,\}\z/}/;
                is_problem(post($ROUTE{$k}{path}, $b), 400, 'invalid_request', "$k: $f missing");
            }
            next if $amount{$f};
            for my $wrong ('1', '12.5', 'true', 'false', '[]', '["USD"]', '{}', '{"a":"b"}') {
                ($b = $v) =~ s/"\Q$f\E":"[^"]*"/"$f":$wrong/;
                is_problem(post($ROUTE{$k}{path}, $b), 400, 'invalid_request',
                           "$k: $f as $wrong");
            }
        }
    }
}
is(counts(), $counts, 'nothing changed by nulls / wrong types / missing fields');

# ------------------------------------------------------------------ depth --

{
    my $nest = sub { my ($n, $inner) = @_; ('[' x $n) . ($inner // '') . (']' x $n) };
    my $onest = sub { my ($n) = @_; ('{"a":' x $n) . '1' . ('}' x $n) };
    for my $c ([ '{"accountNumber":' . $nest->(32) . '}',                  '33 levels in accountNumber' ],
               [ '{"accountNumber":"DEEP-1","x":' . $nest->(32, '1') . '}', '33 levels in an unknown field' ],
               [ '{"accountNumber":"DEEP-2","x":' . $onest->(32) . '}',    '33 object levels' ],
               [ '{"accountNumber":"DEEP-3","initialBalance":' . $nest->(32, '"1"') . '}',
                 '33 levels in initialBalance (depth is invalid_request, before invalid_amount)' ],
               [ '{"accountNumber":"DEEP-4","x":' . $nest->(20000) . '}',  '20001 levels' ],
               [ '{"accountNumber":"DEEP-5","x":' . ('[' x 30000) . '}',   '30000 unclosed arrays' ],
               [ '{"accountNumber":"DEEP-6","x":' . ('{"a":' x 10000) . '}', '10000 unclosed objects' ],
               [ $nest->(30000),                                           '30000 arrays at top level' ]) {
        is_problem(post('/accounts', $c->[0]), 400, 'invalid_request', "accounts: $c->[1]");
    }
    is_problem(post('/accounts', '{"accountNumber":"DEEP-7","initialBalance":' . $nest->(31, '"1"') . '}'),
               400, 'invalid_amount', 'accounts: 32 levels (allowed depth) in initialBalance: wrong type');
    my $tb32 = '{"transactionId":"tx-deep32","sourceAccountNumber":"SRC","destinationAccountNumber":"DST",'
             . '"amount":' . $nest->(31, '"1"') . '}';
    is_problem(post('/accounts/transactions', $tb32), 400, 'invalid_amount',
               'transfer: 32 levels (allowed depth) in amount: wrong type');
    my $tb = '{"transactionId":"tx-deep","sourceAccountNumber":"SRC","destinationAccountNumber":"DST",'
           . '"amount":' . $nest->(32, '"1"') . '}';
    is_problem(post('/accounts/transactions', $tb), 400, 'invalid_request',
               'transfer: 33 levels in amount');
    is_problem(post('/accounts/transactions', '{"transactionId":' . $nest->(25000) . '}'), 400,
               'invalid_request', 'transfer: 25001 levels');
    is($t->get('/healthz')->{status}, 200, 'still alive after deep nesting');
}
is(counts(), $counts, 'nothing changed by deep nesting');

# ------------------------------------------------- same rejection twice --

for my $c ([ '/accounts', '{"accountNumber":"TW-1","foo":1}',          'application/json' ],
           [ '/accounts', '{"accountNumber":"TW-1","currency":"usd"}', 'application/json' ],
           [ '/accounts', '{"accountNumber":"TW-1","initialBalance":"-1"}', 'application/json' ],
           [ '/accounts', '{"accountNumber":"SRC","initialBalance":"5"}', 'application/json' ],
           [ '/accounts', '[]',                                        'application/json' ],
           [ '/accounts', '{"accountNumber":"TW-1"}',                  'text/plain' ],
           [ '/accounts/transactions', '{"transactionId":"tx-tw","sourceAccountNumber":"SRC",'
                 . '"destinationAccountNumber":"SRC","amount":"1"}',   'application/json' ],
           [ '/accounts/transactions', '{"transactionId":"tx-tw2","sourceAccountNumber":"SRC",'
                 . '"destinationAccountNumber":"DST","amount":"0"}',   'application/json' ]) {
    my $r1 = post($c->[0], $c->[1], $c->[2]);
    my $r2 = post($c->[0], $c->[1], $c->[2]);
    ok($r1->{status} >= 400, "rejected: $c->[0] " . shown($c->[1]) . " ($r1->{status})");
    is($r2->{body}, $r1->{body}, "... twice: byte-identical bodies");
    is($r2->{status}, $r1->{status}, '... same status');
}
for my $p ('/accounts/NOPE', '/accounts/transactions/nope', '/nope') {
    is($t->get($p)->{body}, $t->get($p)->{body}, "GET $p twice: byte-identical bodies");
}
is($t->del('/accounts')->{body}, $t->del('/accounts')->{body}, 'DELETE /accounts twice: same bytes');

# ------------------------------------------------ nothing was changed --

is(counts(), $counts, 'no rejected request changed the database');
is($t->get('/accounts/SRC/balance?consistency=strong')->json->{balance},
   $t->get('/accounts/SRC')->json->{balance}, 'SRC balance consistent');
is($t->get('/readyz')->{status}, 200, '/readyz still 200');

# ------------------------------------------- the connection survives errors --

# A rejected body is answered once and the keep-alive connection goes on:
# each request below is followed, in the same write, by another one.
{
    my $post = sub {
        my ($ct, $b) = @_;
        return "POST /accounts HTTP/1.1\r\nHost: x\r\nContent-Type: $ct\r\n"
             . 'Content-Length: ' . length($b) . "\r\n\r\n$b";
    };
    my $r = $t->raw_request(
          $post->('text/plain', '{}')
        . $post->('application/json', '[]')
        . $post->('application/json', '{"accountNumber":"KA-1"}')
        . $post->('application/json', '{"accountNumber":"KA-2","x":1}')
        . "GET /accounts/KA-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    my @status = ($r->{raw} // '') =~ m{HTTP/1\.1 (\d{3}) }g;
    is("@status", '415 400 201 400 200',
       'five requests on one connection get five answers, in order')
        or diag $r->{raw};
}

done_testing();
