#!/usr/bin/perl

# API keys and HMAC-SHA256 request signing (rbcs_auth): what is accepted,
# that every failure is the same 401 and applies nothing, scopes (403), the
# order against 415/400, the keys file at configuration time and on reload,
# and conf/rbcs-sign against the server.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use File::Temp qw(tempdir);
use JSON::PP ();
use Time::HiRes ();

use RBCS::Test;

my $ROOT = $RBCS::Test::ROOT;
my $JSON = JSON::PP->new->utf8->canonical;

my $dir = tempdir('rbcs-auth-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $keys_file = "$dir/keys";

my %SECRET = (
    reader  => 'test-only-reader-secret-0123456789abcdef',
    teller  => 'test-only-teller-secret-0123456789abcdef',
    admin   => 'test-only-admin-secret-0123456789abcdef!#',
    xfer    => 'test-only-xfer-secret-0123456789abcdefgh',
    opener  => 'test-only-opener-secret-0123456789abcdef',
    newkey  => 'test-only-newkey-secret-0123456789abcdef',
);

sub write_keys {
    my (@lines) = @_;
    open my $fh, '>', "$keys_file.tmp" or die "$keys_file.tmp: $!";
    print $fh map { "$_\n" } @lines;
    close $fh or die "$keys_file.tmp: $!";
    rename "$keys_file.tmp", $keys_file or die "$keys_file: $!";
}

write_keys(
    '# test keys',
    '',
    "reader  $SECRET{reader}  read",
    "teller\t$SECRET{teller}\tread,transfer\r",     # CRLF is fine
    "  admin $SECRET{admin} admin,read   ",
    "xfer    $SECRET{xfer}    transfer",
    "opener  $SECRET{opener}  admin",
);

# the configuration with the auth directives AUTH (one line: conf_test
# below finds them there)
sub conf {
    my ($auth) = @_;
    return <<"EOF";
\${TEST_GLOBALS}
worker_processes 2;
worker_rlimit_nofile 16384;
error_log \${PREFIX}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log \${PREFIX}/access.log;

    \${TEST_GLOBALS_HTTP}

    client_max_body_size    64k;
    client_body_buffer_size 64k;

    rbcs_mysql_server 127.0.0.1:\${MYSQL_PORT};
    rbcs_mysql_user rbcs;
    rbcs_mysql_password rbcs;
    rbcs_mysql_database \${MYSQL_DATABASE};
    rbcs_mysql_pool_size 8;
    rbcs_mysql_connect_timeout 2s;
    rbcs_mysql_query_timeout 5s;
    rbcs_mysql_queue_size 1024;
    rbcs_mysql_queue_timeout 3s;

    rbcs_cache_zone zone=rbcs_balances:16m ttl=2s poll=1s;
    rbcs_redis_server 127.0.0.1:\${REDIS_PORT};
    rbcs_redis_prefix \${REDIS_PREFIX};
    rbcs_redis_user rbcs;
    rbcs_redis_password_file \${REDIS_PASSWORD_FILE};
    rbcs_redis_hmac_key_file \${REDIS_HMAC_KEY_FILE};
    rbcs_redis_key_ttl 1h;

    $auth
    log_format rbcs_keys '\$status "\$rbcs_key_id" \$request_method \$uri';

    server {
        listen 127.0.0.1:\${HTTP_PORT};

        error_page 413 \@rbcs_problem;
        location \@rbcs_problem { rbcs_problem; }

        location / { rbcs; }

        add_header X-Test-Key-Id \$rbcs_key_id always;
        access_log $dir/keys.log rbcs_keys;
    }
}
EOF
}

my $auth = "rbcs_auth on; rbcs_auth_keys $keys_file;";
my $t = RBCS::Test->new(conf => conf($auth));

$t->allow_log(qr/\[emerg\].*\Q$keys_file\E:3: a key is "KEY_ID SECRET SCOPES"/);

# -------------------------------------------------------------- helpers --

# the signature headers of a request, as a client computes them
sub sign {
    my (%a) = @_;
    my ($path, $query) = split /\?/, $a{target}, 2;
    $query //= '';
    my $ts = $a{ts} // time;
    my $sts = join "\n", $a{method}, $path, $query, $ts,
                         sha256_hex($a{body} // '');
    my $secret = $a{secret} // $SECRET{ $a{key} } // 'no-such-secret-' . ('x' x 32);
    return {
        'X-RBCS-Key-Id'    => $a{key},
        'X-RBCS-Timestamp' => $ts,
        'X-RBCS-Signature' => hmac_sha256_hex($sts, $secret),
    };
}

# signed request: sreq(KEY, METHOD, TARGET, BODY, headers => {...}, sign => {...})
sub sreq {
    my ($key, $method, $target, $body, %o) = @_;
    $body = $JSON->encode($body) if ref $body;
    my $h = defined $key
        ? sign(key => $key, method => $method, target => $target, body => $body,
               %{ $o{sign} // {} })
        : {};
    $h = { %$h, 'Content-Type' => 'application/json' } if defined $body;
    $h = { %$h, %{ $o{headers} // {} } };
    return $t->request($method, $target, headers => $h,
                       defined $body ? (body => $body) : ());
}

sub transfer_body {
    my ($id, $amount) = @_;
    return qq({"transactionId":"$id","sourceAccountNumber":"A1",)
         . qq("destinationAccountNumber":"A2","amount":"$amount"});
}

my $UNAUTHORIZED = '{"type":"urn:rbcs:problem:unauthorized","title":"Unauthorized",'
    . '"status":401,"detail":"the request is not authenticated","code":"unauthorized"}';
my $FORBIDDEN = '{"type":"urn:rbcs:problem:forbidden","title":"Forbidden",'
    . '"status":403,"detail":"the key may not use this route","code":"forbidden"}';

my %bodies401;

sub is_401 {
    my ($r, $name) = @_;
    is($r->{status}, 401, "$name: 401")
        or diag($r->{raw});
    is($r->{body}, $UNAUTHORIZED, "$name: the one 401 document");
    is($r->header('www-authenticate'), 'RBCS-HMAC-SHA256 realm="rbcs"',
       "$name: WWW-Authenticate");
    is($r->header('x-test-key-id'), undef, "$name: no \$rbcs_key_id");
    $bodies401{ $r->{raw} =~ s/^Date: .*\r\n//mr } = 1;
}

sub is_403 {
    my ($r, $name, $key) = @_;
    is($r->{status}, 403, "$name: 403") or diag($r->{raw});
    is($r->{body}, $FORBIDDEN, "$name: the 403 document");
    is($r->header('www-authenticate'), undef, "$name: no WWW-Authenticate");
    is($r->header('x-test-key-id'), $key, "$name: \$rbcs_key_id is the key");
}

sub balance {
    my ($acc) = @_;
    my $r = sreq('reader', 'GET', "/accounts/$acc/balance?consistency=strong");
    return $r->{status} == 200 ? $r->json->{balance} : "status $r->{status}";
}

# ------------------------------------------------------------ operations --

is($t->get('/healthz')->{status}, 200, '/healthz needs no key');
is($t->get('/readyz')->{status}, 200, '/readyz needs no key');
is($t->get('/metrics')->{status}, 200, '/metrics needs no key');

# -------------------------------------------------------------- accepted --

my $r = sreq('admin', 'POST', '/accounts',
             { accountNumber => 'A1', initialBalance => '100.00' });
is($r->{status}, 201, 'admin opens an account') or diag($r->{raw});
is($r->header('x-test-key-id'), 'admin', '$rbcs_key_id of an accepted request');
$r = sreq('opener', 'POST', '/accounts', { accountNumber => 'A2' });
is($r->{status}, 201, 'a key with only "admin" opens an account');

$r = sreq('reader', 'GET', '/accounts/A1');
is($r->{status}, 200, 'signed GET accepted');
is($r->json->{balance}, '100.00', 'the account');

$r = sreq('reader', 'HEAD', '/accounts/A1/balance');
is($r->{status}, 200, 'signed HEAD accepted (HEAD is the signed method)');

$r = sreq('teller', 'POST', '/accounts/transactions', transfer_body('tx-1', '10.00'));
is($r->{status}, 201, 'signed transfer accepted') or diag($r->{raw});
is($r->header('x-test-key-id'), 'teller', '$rbcs_key_id of the transfer');
is(balance('A1'), '90.00', 'the transfer is applied');
is(balance('A2'), '10.00', 'the credit is applied');

$r = sreq('reader', 'GET', '/accounts/A1/balance?consistency=strong');
is($r->{status}, 200, 'the query is signed');
$r = sreq('reader', 'GET', '/accounts/A1/transactions?limit=1&before=3');
is($r->{status}, 200, 'a query with two parameters');

# the path as sent: %31 is "1", signed undecoded
$r = sreq('reader', 'GET', '/accounts/A%31/balance');
is($r->{status}, 200, 'a percent-encoded path, signed as sent');
is_401(sreq('reader', 'GET', '/accounts/A%31/balance',
            undef, sign => { target => '/accounts/A1/balance' }),
       'signed over the decoded path');

$r = sreq('reader', 'GET', '/accounts/A1', undef, sign => { ts => time - 250 });
is($r->{status}, 200, 'a timestamp 250 s old is inside the window');
$r = sreq('reader', 'GET', '/accounts/A1', undef, sign => { ts => time + 250 });
is($r->{status}, 200, 'a timestamp 250 s ahead is inside the window');

$r = sreq('reader', 'GET', '/accounts/A1', undef,
          headers => { 'x-rbcs-key-id' => 'reader' });
is($r->{status}, 200, 'header names are case-insensitive');

# a chunked body: the signature covers the body's bytes, not the framing
{
    my $body = transfer_body('tx-chunked', '1.00');
    my $h = sign(key => 'teller', method => 'POST',
                 target => '/accounts/transactions', body => $body);
    my $req = "POST /accounts/transactions HTTP/1.1\r\n"
        . "Host: 127.0.0.1\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        . join('', map { "$_: $h->{$_}\r\n" } sort keys %$h) . "\r\n";
    my ($a, $b) = (substr($body, 0, 20), substr($body, 20));
    $r = $t->raw_request([ $req . sprintf("%x\r\n%s\r\n", length $a, $a),
                           sprintf("%x\r\n%s\r\n0\r\n\r\n", length $b, $b) ],
                         delay => 0.1);
    is($r->{status}, 201, 'a chunked body, signed over its bytes') or diag($r->{raw});
}
is(balance('A1'), '89.00', 'the chunked transfer is applied');

# --------------------------------------------------------------- refused --

# every way of failing: each a transfer of 1.00 that must not happen
my $n = 0;
my $good = sub { transfer_body('bad-' . ++$n, '1.00') };
my @bad;

sub bad_transfer {
    my ($name, %o) = @_;
    my $body = $good->();
    my $h = sign(key => $o{key} // 'teller', method => 'POST',
                 target => '/accounts/transactions', body => $body,
                 %{ $o{sign} // {} });
    $h->{'Content-Type'} = 'application/json';
    for my $k (keys %{ $o{headers} // {} }) {
        $h->{$k} = $o{headers}{$k};
    }
    $o{mangle}->($h) if $o{mangle};
    push @bad, "bad-$n";
    is_401($t->request('POST', $o{target} // '/accounts/transactions',
                       headers => $h, body => $body), $name);
}

my $now = time;
my $good_sig = sign(key => 'teller', method => 'POST',
                    target => '/accounts/transactions', body => 'x')
    ->{'X-RBCS-Signature'};

bad_transfer('no X-RBCS-Key-Id', headers => { 'X-RBCS-Key-Id' => undef });
bad_transfer('no X-RBCS-Timestamp', headers => { 'X-RBCS-Timestamp' => undef });
bad_transfer('no X-RBCS-Signature', headers => { 'X-RBCS-Signature' => undef });
bad_transfer('no header at all', headers => { 'X-RBCS-Key-Id' => undef,
    'X-RBCS-Timestamp' => undef, 'X-RBCS-Signature' => undef });
bad_transfer('empty key id', headers => { 'X-RBCS-Key-Id' => '' });
bad_transfer('key id of a bad pattern', key => '-teller');
bad_transfer('unknown key', key => 'nobody', sign => { secret => $SECRET{teller} });
bad_transfer('key ids are compared byte for byte', key => 'Teller',
             sign => { secret => $SECRET{teller} });
bad_transfer('another key\'s secret', sign => { secret => $SECRET{admin} });
bad_transfer('the key id of another key', headers => { 'X-RBCS-Key-Id' => 'admin' });
bad_transfer('signature over another body', sign => { body => '{}' });
bad_transfer('signature over the body plus a newline', sign => { body => $good->() . "\n" });
bad_transfer('signature over another path', sign => { target => '/accounts' });
bad_transfer('signature over another query', sign => { target => '/accounts/transactions?a=1' });
bad_transfer('a query not signed', target => '/accounts/transactions?a=1');
bad_transfer('signature over another method', sign => { method => 'PUT' });
bad_transfer('timestamp too old', sign => { ts => $now - 400 });
bad_transfer('timestamp too far ahead', sign => { ts => $now + 400 });
bad_transfer('timestamp 0', sign => { ts => 0 });
bad_transfer('timestamp sent is not the one signed',
             mangle => sub { $_[0]{'X-RBCS-Timestamp'}++ });
for my $ts ("${now}x", "-$now", "$now.0", "+$now", '', '0x' . sprintf('%x', $now),
            '99999999999999999999999') {
    bad_transfer("malformed timestamp '$ts'", sign => { ts => $ts });
}
bad_transfer('upper-case hex signature (only lower case is accepted)',
             mangle => sub { $_[0]{'X-RBCS-Signature'} = uc $_[0]{'X-RBCS-Signature'} });
bad_transfer('a space inside the signature',
             mangle => sub { $_[0]{'X-RBCS-Signature'} =~ s/^(.{32})/$1 /s });
bad_transfer('signature of another request', headers => { 'X-RBCS-Signature' => $good_sig });
bad_transfer('truncated signature', headers => { 'X-RBCS-Signature' => substr($good_sig, 0, 63) });
bad_transfer('signature in base64', headers => {
    'X-RBCS-Signature' => 'q80JLpgjANWNVg2zvNBxHnNpg3/XQXf0c0pbEvVVMbs=' });

# a header twice: the server cannot know which one the client meant
{
    my $body = $good->();
    push @bad, "bad-$n";
    my $h = sign(key => 'teller', method => 'POST',
                 target => '/accounts/transactions', body => $body);
    my $req = "POST /accounts/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . join('', map { "$_: $h->{$_}\r\n" } sort keys %$h)
        . "X-RBCS-Key-Id: teller\r\n\r\n" . $body;
    is_401($t->raw_request($req), 'a signature header repeated');
}

# GET routes fail the same way
is_401(sreq(undef, 'GET', '/accounts/A1'), 'unsigned GET');
is_401(sreq('reader', 'GET', '/accounts/A1', undef, sign => { target => '/accounts/A2' }),
       'GET signed for another account');
is_401(sreq('reader', 'GET', '/accounts/A1/balance?consistency=strong', undef,
            sign => { target => '/accounts/A1/balance' }), 'GET with a query not signed');
is_401(sreq('reader', 'GET', '/accounts/A1', undef, sign => { ts => $now - 301 - 5 }),
       'GET with an old timestamp');
is_401(sreq('reader', 'GET', '/accounts/transactions/tx-1', undef,
            sign => { secret => $SECRET{teller} }), 'GET with the wrong secret');
is_401(sreq('reader', 'GET', '/accounts/A1', undef, sign => { body => 'x' }),
       'GET signed with a body hash');

is(scalar keys %bodies401, 1, 'every 401 is the same response byte for byte (Date aside)')
    or diag(join "\n----\n", keys %bodies401);

is(balance('A1'), '89.00', 'no refused transfer debited A1');
is(balance('A2'), '11.00', 'no refused transfer credited A2');
my @found = grep {
    sreq('reader', 'GET', "/accounts/transactions/$_")->{status} != 404
} @bad;
is("@found", '', 'no refused transfer was recorded (' . scalar(@bad) . ' tried)');

# ---------------------------------------------------------------- scopes --

is_403(sreq('reader', 'POST', '/accounts/transactions', transfer_body('nope-1', '1.00')),
       'read key on POST /accounts/transactions', 'reader');
is_403(sreq('admin', 'POST', '/accounts/transactions', transfer_body('nope-2', '1.00')),
       'admin does not imply transfer', 'admin');
is_403(sreq('reader', 'POST', '/accounts', { accountNumber => 'NOPE-1' }),
       'read key on POST /accounts', 'reader');
is_403(sreq('teller', 'POST', '/accounts', { accountNumber => 'NOPE-2' }),
       'transfer key on POST /accounts', 'teller');
is_403(sreq('xfer', 'GET', '/accounts/A1'), 'transfer-only key on a GET route', 'xfer');
is_403(sreq('opener', 'GET', '/accounts/transactions/tx-1'),
       'admin-only key on a GET route', 'opener');

is(balance('A1'), '89.00', 'no forbidden transfer applied');
is(sreq('reader', 'GET', "/accounts/transactions/$_")->{status}, 404,
   "forbidden $_ not recorded") for qw(nope-1 nope-2);
is(sreq('reader', 'GET', "/accounts/$_")->{status}, 404, "forbidden $_ not opened")
    for qw(NOPE-1 NOPE-2);

# ------------------------------------------------- order: 401/403 first --

is_401(sreq(undef, 'POST', '/accounts/transactions', '{bad json',
            headers => { 'Content-Type' => 'text/plain' }),
       'unsigned, wrong media type: 401 before 415');
is_401(sreq(undef, 'POST', '/accounts/transactions', '{bad json'),
       'unsigned, bad JSON: 401 before 400');
is_401($t->request('POST', '/accounts'), 'unsigned, no body: 401 before 400');
is_401(sreq(undef, 'POST', '/accounts/transactions', transfer_body('tx-x', '-1')),
       'unsigned, bad amount: 401 before 400');
is_403(sreq('reader', 'POST', '/accounts/transactions', '{bad json',
            headers => { 'Content-Type' => 'text/plain' }),
       'read key, wrong media type: 403 before 415', 'reader');
is_403(sreq('reader', 'POST', '/accounts', '[]'),
       'read key, bad body: 403 before 400', 'reader');

$r = sreq('teller', 'POST', '/accounts/transactions', '{bad json',
          headers => { 'Content-Type' => 'text/plain' });
is($r->{status}, 415, 'signed, wrong media type: 415');
$r = sreq('teller', 'POST', '/accounts/transactions', '{bad json');
is($r->{status}, 400, 'signed, bad JSON: 400');
$r = $t->request('POST', '/accounts/transactions', headers => sign(key => 'teller',
    method => 'POST', target => '/accounts/transactions'));
is($r->{status}, 400, 'signed, no body (the empty body\'s hash): 400');

# before authentication: an unknown path and a wrong method
is($t->request('GET', '/nowhere')->{status}, 404, 'unknown path: 404, no key needed');
$r = $t->request('DELETE', '/accounts/A1');
is($r->{status}, 405, 'wrong method: 405 before 401');
is($r->header('allow'), 'GET, HEAD, PATCH', 'with Allow');
is($t->request('GET', '/accounts/transactions')->{status}, 405,
   'GET on the POST-only collection: 405');

# ------------------------------------------------------------ the access log --

{
    my $log = '';
    for (1 .. 20) {
        open my $fh, '<', "$dir/keys.log" or last;
        $log = do { local $/; <$fh> };
        last if $log =~ /405/;
        Time::HiRes::sleep(0.1);
    }
    like($log, qr{^201 "teller" POST /accounts/transactions$}m,
         '$rbcs_key_id in the access log');
    like($log, qr{^403 "reader" POST /accounts/transactions$}m,
         'the refused key in the access log of a 403');
    like($log, qr{^401 "" GET /accounts/A1$}m, 'empty for a 401');
    like($log, qr{^200 "" GET /healthz$}m, 'empty without authentication');
}

# ---------------------------------------------------------- rbcs-sign --

{
    my $sign = "$ROOT/conf/rbcs-sign";
    ok(-x $sign, 'conf/rbcs-sign is executable');
    my $url = $t->url('/accounts/A1/balance?consistency=strong');
    my $out = `'$sign' --exec reader '$SECRET{reader}' GET '$url' -- -w '\n%{http_code}' 2>&1`;
    like($out, qr/"balance":"89\.00".*\n200\z/s, 'rbcs-sign --exec: a signed GET')
        or diag($out);

    my $body = transfer_body('tx-sign', '2.00');
    $url = $t->url('/accounts/transactions');
    $out = `'$sign' --exec teller '$SECRET{teller}' POST '$url' '$body' -- -w '\n%{http_code}' 2>&1`;
    like($out, qr/"status":"COMPLETED".*\n201\z/s, 'rbcs-sign --exec: a signed transfer')
        or diag($out);

    $out = `RBCS_SECRET='$SECRET{reader}' '$sign' reader - GET '$url' 2>&1`;
    my @h = split /\n/, $out;
    is(scalar @h, 3, 'rbcs-sign prints three headers');
    like($h[2], qr/^X-RBCS-Signature: [0-9a-f]{64}\z/, 'lower-case hex');
    my ($ts) = $h[1] =~ /^X-RBCS-Timestamp: (\d+)\z/;
    is($h[2], 'X-RBCS-Signature: '
        . sign(key => 'reader', method => 'GET', target => '/accounts/transactions',
               ts => $ts)->{'X-RBCS-Signature'},
       'rbcs-sign signs as the server checks');

    my $cmd = `'$sign' --curl reader '$SECRET{reader}' GET '${\ $t->url('/accounts/A2')}' 2>&1`;
    like($cmd, qr/^curl /, 'rbcs-sign --curl prints a command');
    $out = `$cmd`;
    like($out, qr/"accountNumber":"A2"/, 'which the server accepts') or diag($out);
}
is(balance('A1'), '87.00', 'the transfer sent by rbcs-sign is applied');

# -------------------------------------------------------- configuration --

# nginx -t on this instance's configuration with other auth directives
sub conf_test {
    my ($conf) = @_;
    my $text = do {
        open my $fh, '<', $t->conf_file or die $!;
        local $/;
        <$fh>;
    };
    $text =~ s/\Q$auth\E/$conf/ or die 'the auth directives not found in nginx.conf';
    my $file = $t->prefix . '/conf-test.conf';
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
    my $prefix = $t->prefix;
    my $out = `'$RBCS::Test::NGINX' -t -q -p '$prefix/' -c '$file' -e '$prefix/conf-test.log' 2>&1`;
    return ($? == 0, $out);
}

sub keys_error {
    my ($name, $content, $re) = @_;
    my $f = "$dir/bad-keys";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $content;
    close $fh;
    my ($ok, $out) = conf_test("rbcs_auth on; rbcs_auth_keys $f;");
    ok(!$ok, "$name: refused");
    like($out, $re, "$name: says why") or diag($out);
    for my $s (values %SECRET, 'short-secret', 'a-secret-with-a-bad-scope-0123456789') {
        unlike($out, qr/\Q$s\E/, "$name: no secret in the message") or last;
    }
}

{
    my ($ok, $out) = conf_test("rbcs_auth_keys $keys_file;");
    ok($ok, 'nginx -t accepts the test configuration') or diag($out);

    ($ok, $out) = conf_test("rbcs_auth on;");
    ok(!$ok, 'rbcs_auth on without keys is refused');
    like($out, qr/\[emerg\] "rbcs_auth on" needs "rbcs_auth_keys"/, 'and says so');

    ($ok, $out) = conf_test("rbcs_auth on; rbcs_auth_keys $dir/missing;");
    ok(!$ok, 'a missing keys file is refused');
    like($out, qr/\[emerg\] open\(\) "\Q$dir\E\/missing" failed/, 'and named');

    ($ok, $out) = conf_test("rbcs_auth_keys $keys_file; rbcs_auth_keys $keys_file;");
    like($out, qr/"rbcs_auth_keys" directive is duplicate/, 'rbcs_auth_keys twice');

    # a location serves one thing: the API or the problem pages, once
    for my $twice ('rbcs; rbcs;', 'rbcs; rbcs_problem;', 'rbcs_problem; rbcs;') {
        ($ok, $out) = conf_test("rbcs_auth_keys $keys_file;"
            . " server { listen 127.0.0.1:1; location /twice { $twice } }");
        ok(!$ok, "$twice in one location is refused");
        like($out, qr/"rbcs(?:_problem)?" directive is duplicate/, '... and says so') or diag($out);
    }

    my $f = "$dir/bad-keys";
    keys_error('two fields', "# x\n\nk1 short-secret\n",
               qr/\[emerg\] \Q$f\E:3: a key is "KEY_ID SECRET SCOPES"/);
    keys_error('four fields', "k1 $SECRET{reader} read extra\n",
               qr/\Q$f\E:1: a key is "KEY_ID SECRET SCOPES"/);
    keys_error('short secret', "k1 $SECRET{reader} read\nk2 short-secret read\n",
               qr/\Q$f\E:2: the secret of key "k2" is not 32 to 1024 characters/);
    keys_error('bad key id', "k/1 $SECRET{reader} read\n",
               qr/\Q$f\E:1: a key id matches/);
    keys_error('unknown scope', "k1 a-secret-with-a-bad-scope-0123456789 read,write\n",
               qr/\Q$f\E:1: the scopes of key "k1" are not a comma list/);
    keys_error('empty scope', "k1 $SECRET{reader} read,\n",
               qr/\Q$f\E:1: the scopes of key "k1"/);
    keys_error('duplicate id', "k1 $SECRET{reader} read\n#\nk1 $SECRET{teller} read\n",
               qr/\Q$f\E:3: key id "k1" is also on line 1/);
    keys_error('no keys', "# nothing\n\n", qr/\Q$f\E has no keys/);
}

# -------------------------------------------------------------- reloads --

# a changed file: a new key works, a removed key no longer does
write_keys(
    "teller $SECRET{teller} read,transfer",
    "newkey $SECRET{newkey} read",
);
$t->reload;
$r = sreq('newkey', 'GET', '/accounts/A1');
is($r->{status}, 200, 'after a reload, a new key is accepted') or diag($r->{raw});
is_401(sreq('reader', 'GET', '/accounts/A1'), 'after a reload, a removed key is refused');
is(sreq('teller', 'GET', '/accounts/A1')->{status}, 200, 'a kept key still works');

# a broken file: the reload fails, the running keys stay
write_keys(
    "teller $SECRET{teller} read,transfer",
    "newkey $SECRET{newkey} read",
    "broken-line-without-secret",
);
{
    my $m = $t->master_pid;
    kill 'HUP', $m;
    my $log = '';
    for (1 .. 50) {
        $log = $t->error_log;
        last if $log =~ /\Q$keys_file\E:3/;
        Time::HiRes::sleep(0.1);
    }
    like($log, qr/\[emerg\].*\Q$keys_file\E:3: a key is/, 'a broken keys file: the reload fails');
    is(sreq('newkey', 'GET', '/accounts/A1')->{status}, 200,
       'and the keys loaded before keep working');
}

# the window is configurable
write_keys("reader $SECRET{reader} read");
$t->reload(conf => conf("$auth rbcs_auth_window 10s;"));
is(sreq('reader', 'GET', '/accounts/A1', undef, sign => { ts => time - 5 })->{status},
   200, 'rbcs_auth_window 10s: 5 s old is accepted');
is_401(sreq('reader', 'GET', '/accounts/A1', undef, sign => { ts => time - 30 }),
       'rbcs_auth_window 10s: 30 s old is refused');

# off: nothing is checked
$t->reload(conf => conf("rbcs_auth off; rbcs_auth_keys $keys_file;"));
$r = $t->get('/accounts/A1');
is($r->{status}, 200, 'rbcs_auth off: no signature needed');
$r = $t->request('GET', '/accounts/A1', headers => { 'X-RBCS-Key-Id' => 'reader',
    'X-RBCS-Timestamp' => 1, 'X-RBCS-Signature' => 'x' });
is($r->{status}, 200, 'rbcs_auth off: bad headers are ignored');
is($r->header('x-test-key-id'), undef, 'rbcs_auth off: $rbcs_key_id is empty');

done_testing();
