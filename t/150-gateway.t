#!/usr/bin/perl
# The production configuration (conf/nginx.prod.conf.in), run as it is:
# the API over TLS (a certificate of a test CA made here: TLS 1.2 and 1.3,
# older protocols and plain HTTP refused, sessions resumed), signed
# requests only, rate limits by key and by address answered as 429
# problem details, connection limits, slow clients cut off, the JSON access
# log with key id, transaction id, status and times, and the operations
# listener (metrics, stub_status) apart from the API.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;

my %key = (
    'ops-admin' => [ 'a' x 40, 'read,transfer,admin' ],
    'client-1'  => [ 'b' x 40, 'read,transfer' ],
    'client-2'  => [ 'c' x 40, 'read,transfer' ],
    'client-3'  => [ 'd' x 40, 'read' ],        # the per-key rate's
);
open my $fh, '>', "$dir/keys" or die;
print $fh "$_ $key{$_}[0] $key{$_}[1]\n" for sort keys %key;
close $fh;
chmod 0644, "$dir/keys";

# the API listener's certificate, for 127.0.0.1, from a CA of the test's
my $ca = RBCS::Test::tls_ca($dir, 'ca');
my $cert = RBCS::Test::tls_cert($ca, $dir, 'api', 'IP:127.0.0.1');

# nginx binds it itself, with the API port, before RBCS::Test->new returns
my $ops = RBCS::Test::free_port();
my $template = do {
    local (@ARGV, $/) = ("$RBCS::Test::ROOT/conf/nginx.prod.conf.in");
    <>;
};

# the production file, with lower limits so that a test can reach them
# (a key's rate of one request a second: a key over it stays over for a
# second, however slowly a loaded machine sends the next request)
$template =~ s/rbcs_auth_limit rate=500r\/s burst=1000;/rbcs_auth_limit rate=60r\/m burst=5;/
    or die 'no rbcs_auth_limit in the production configuration';
$template =~ s/rate=1000r\/s;/rate=50r\/s;/ or die 'no per-address rate';
$template =~ s/burst=2000 nodelay/burst=60 nodelay/ or die 'no per-address burst';
$template =~ s/limit_conn rbcs_conns 256;/limit_conn rbcs_conns 4;/;
$template =~ s/client_body_timeout     5s;/client_body_timeout     1s;/;
$template =~ s/client_header_timeout   5s;/client_header_timeout   1s;/;

my $t = RBCS::Test->new(
    conf => $template,
    vars => {
        MODULE => "load_module $RBCS::Test::MODULE;",
        OPS_PORT => $ops, KEYS_FILE => "$dir/keys",
        TLS_CERT => $cert->{crt}, TLS_KEY => $cert->{key},
        ACCESS_LOG => "$dir/access.json",
        MYSQL_HOST => '127.0.0.1', MYSQL_USER => 'rbcs',
        MYSQL_PASSWORD => 'rbcs', REDIS_HOST => '127.0.0.1',
        WORKERS => 2, HTTP_CONF => '', SERVER_CONF => '',
    },
    allow_log => [ qr/limiting (requests|connections)/, qr/over its rate limit/,
                   qr/client timed out/ ],
    tls => { ca => $ca->{crt} },      # requests go through TLS, verified
);
chmod 0777, $dir;

sub signed {
    my ($method, $path, $body, $id, %o) = @_;
    $id //= 'client-1';
    $body //= '';
    my $ts = time;
    $ts = int $ts;
    my ($p, $q) = split /\?/, $path, 2;
    my $sig = hmac_sha256_hex(join("\n", $method, $p, $q // '', $ts,
                                   sha256_hex($body)), $key{$id}[0]);
    my %h = ('X-RBCS-Key-Id' => $id, 'X-RBCS-Timestamp' => $ts,
             'X-RBCS-Signature' => $sig);
    $h{'Content-Type'} = 'application/json' if length $body;
    return $t->request($method, $path, length $body ? (body => $body) : (),
                       headers => \%h, %o);
}

my $json = JSON::PP->new->canonical;

is(signed('POST', '/accounts',
          $json->encode({ accountNumber => 'GW1', initialBalance => '50.00' }),
          'ops-admin')->{status}, 201, 'an admin key opens an account');
is(signed('POST', '/accounts',
          $json->encode({ accountNumber => 'GW2' }), 'ops-admin')->{status},
   201, 'and another');

my $r = $t->post_json('/accounts/transactions', {
    transactionId => 'gw-0', sourceAccountNumber => 'GW1',
    destinationAccountNumber => 'GW2', amount => '1.00' });
is($r->{status}, 401, 'an unsigned transfer is refused: auth is on');
is(eval { $r->json->{code} }, 'unauthorized', 'as problem details');

$r = signed('POST', '/accounts/transactions', $json->encode({
    transactionId => 'gw-1', sourceAccountNumber => 'GW1',
    destinationAccountNumber => 'GW2', amount => '1.00' }));
is($r->{status}, 201, 'a signed transfer is applied');

# --- TLS of the API listener ---------------------------------------------

require IO::Socket::SSL;
my $tls_version = sub {
    my ($version, %o) = @_;
    my $s = eval { $t->connect(timeout => 5, tls => { SSL_version => $version, %o }) };
    return $s ? $s->get_sslversion : 'refused: ' . ($@ =~ s/\s+\z//r);
};
is($tls_version->('TLSv1_3'), 'TLSv1_3', 'TLS 1.3 is served');
is($tls_version->('TLSv1_2'), 'TLSv1_2', 'TLS 1.2 is served');
# a client that would speak the old protocols (OpenSSL 3 keeps them only at
# security level 0): the server ends the handshake with a protocol_version
# alert
for my $old ('TLSv1_1', 'TLSv1') {
    my $got = $tls_version->($old, SSL_cipher_list => 'DEFAULT:@SECLEVEL=0');
    like($got, qr/^refused: .*(alert protocol version|unsupported protocol)/i,
         "$old is refused by the server");
    note("$old: $got");
}
my $other_ca = RBCS::Test::tls_ca($dir, 'other-ca');
like($tls_version->('TLSv1_3', SSL_ca_file => $other_ca->{crt}),
     qr/^refused: .*certificate verify failed/,
     'a client that does not trust the test CA fails verification');

# plain HTTP on the TLS port: nginx's 400, nothing of the API
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port) or die;
    print $s "GET /accounts/GW1/balance HTTP/1.0\r\nHost: x\r\n\r\n";
    local $/;
    my $got = <$s> // '';
    like($got, qr{^HTTP/1\.1 400 .*plain HTTP request was sent to HTTPS port}s,
         'plain HTTP to the API port: 400, the plain HTTP request was sent to HTTPS port');
    unlike($got, qr/"balance"|"accountNumber"/, '... and nothing of the API');
}

# sessions resumed from the shared cache (TLS 1.2: session ids; tickets
# are off), whichever worker takes the second connection
{
    my $cache = IO::Socket::SSL::Session_Cache->new(4);
    my %o = (SSL_version => 'TLSv1_2', SSL_session_cache => $cache,
             SSL_session_key => 'api');
    my $s1 = $t->connect(tls => \%o);
    print $s1 "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n";
    { local $/; my $x = <$s1>; }
    close $s1;
    my $s2 = $t->connect(tls => \%o);
    ok($s2->get_session_reused, 'a second connection resumes the TLS session');
    close $s2;
}

# --- the JSON access log -------------------------------------------------

# the line is written when nginx finishes the request, which may be after
# the client has the answer: wait for it
my (@lines, $entry);
RBCS::Test::wait_for(5, sub {
    open my $lf, '<', "$dir/access.json" or return;
    @lines = <$lf>;
    ($entry) = grep { ($_->{transaction_id} // '') eq 'gw-1' }
               map { eval { decode_json($_) } // () } @lines;
    return $entry;
});
ok(-e "$dir/access.json", 'the access log is written');
ok($entry, 'the access log is JSON, one object a line');
is($entry->{key_id}, 'client-1', 'with the key id');
is($entry->{status}, 201, 'the status');
# as written (a decoded 0.010 would read back as 0.01)
my ($raw) = grep { /"transaction_id":"gw-1"/ } @lines;
like($raw // '', qr/"request_time":\d+\.\d{3}[,}]/, 'the request time');
like($raw // '', qr/"db_time":\d+\.\d{3}[,}]/, 'and the database time');
ok($entry->{db_time} <= $entry->{request_time} + 0.001,
   'which is part of the request time');
is(scalar(grep { !defined eval { decode_json($_) } } @lines), 0,
   'every line parses as JSON');

# --- rate limits: by key, then by address --------------------------------

my %st;
for my $i (1 .. 25) {
    my $x = signed('GET', '/accounts/GW1/balance', '', 'client-3');
    $st{ $x->{status} }++;
    if ($x->{status} == 429 && !$st{checked}++) {
        like($x->{headers}{'content-type'}, qr{^application/problem\+json},
             '429 is problem details');
        is(eval { $x->json->{code} }, 'rate_limited', 'code rate_limited');
    }
}
ok(($st{429} // 0) > 0, 'a burst over the per-key rate gets 429')
    or diag explain \%st;
ok(($st{200} // 0) >= 5, 'after the burst allowance was served');
my $over = signed('GET', '/accounts/GW1/balance', '', 'client-3');
is($over->{status}, 429, 'client-3 is still over its rate');
like($over->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, '... told when to retry');
is(signed('GET', '/accounts/GW1/balance', '', 'client-2')->{status}, 200,
   'another key is not limited by the first one');

# an attacker names client-3's key id without its secret: 401, and
# client-3's budget is untouched (the limit is taken after verification)
sleep 1.5;
sub forged {
    my ($id) = @_;
    return $t->request('GET', '/accounts/GW1/balance', headers => {
        'X-RBCS-Key-Id' => $id, 'X-RBCS-Timestamp' => int time,
        'X-RBCS-Signature' => '0' x 64 });
}
my %f;
$f{ forged('client-3')->{status} }++ for 1 .. 30;
is_deeply(\%f, { 401 => 30 }, '30 requests naming client-3 unsigned: 401 each');
is(signed('GET', '/accounts/GW1/balance', '', 'client-3')->{status}, 200,
   'client-3 itself is served: the forged requests cost it nothing');

# random key ids get no budget of their own: the per-address limit takes
# them.  Pipelined on one connection, so that they arrive faster than the
# rate however busy the machine (a new TLS connection per request would not)
sleep 1.5;
my %rnd;
{
    my $s = $t->connect(timeout => 10);
    my $ts = int time;
    print {$s} join '', map {
        sprintf("GET /accounts/GW1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              . "X-RBCS-Key-Id: random-%08x\r\nX-RBCS-Timestamp: %d\r\n"
              . "X-RBCS-Signature: %s\r\n%s\r\n", int rand 2**32, $ts, '0' x 64,
                $_ == 120 ? "Connection: close\r\n" : '')
    } 1 .. 120;
    local $/;
    my $all = <$s> // '';
    $rnd{$1}++ while $all =~ m{HTTP/1\.1 (\d{3}) }g;
    close $s;
}
ok(($rnd{429} // 0) > 0, '120 requests with random key ids: limited (429) by address')
    or diag explain \%rnd;
ok(($rnd{401} // 0) > 0 && !grep({ $_ != 401 && $_ != 429 } keys %rnd),
   '... the others refused as unauthenticated') or diag explain \%rnd;
is(($rnd{401} // 0) + ($rnd{429} // 0), 120, '... an answer to each');
sleep 2;

# --- connection limit ----------------------------------------------------

sleep 1.5;
my @held;
for (1 .. 4) {
    # a request whose body never comes holds its connection
    my $s = $t->connect;
    print $s "POST /accounts HTTP/1.1\r\nHost: x\r\n"
           . "Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{";
    push @held, $s;
}
# the limit counts a connection once nginx has read its request headers:
# wait until it has for all four (stub_status counts those requests as
# Writing, with the status request itself), well within the 1 s body
# timeout that will end them
RBCS::Test::wait_for(0.8, sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ops)
        or return;
    print $s "GET /nginx_status HTTP/1.0\r\n\r\n";
    local $/;
    my ($w) = (<$s> // '') =~ /Writing: (\d+)/;
    return ($w // 0) >= 5;
}, 0.02);
$r = $t->get('/accounts/GW1/balance');
is($r->{status}, 429, 'over the connection limit per address: 429');

# --- slow clients are cut off --------------------------------------------

my $t0 = time;
my $slow = $held[0];
my $got = '';
sysread($slow, $got, 4096);
my $waited = time - $t0;
like($got, qr/^HTTP\/1\.1 408|^$/, 'a body that never comes: 408 or closed');
cmp_ok($waited, '<', 3, 'after the body timeout (1 s here)');
close $_ for @held;

sleep 1.2;
my $half = $t->connect;
print $half "GET /healthz HTTP/1.1\r\nHost: x\r\n";     # never finished
$t0 = time;
$got = '';
sysread($half, $got, 4096);
cmp_ok(time - $t0, '<', 3, 'headers that never end: cut off after the '
       . 'header timeout (1 s here)');
close $half;

# --- the operations listener ----------------------------------------------

my $get_ops = sub {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ops)
        or return '';
    print $s "GET $path HTTP/1.0\r\n\r\n";
    local $/;
    return <$s> // '';
};
like($get_ops->('/metrics'), qr/^HTTP\/1\.1 200.*rbcs_http_requests_total/s,
     'metrics on the operations listener');
like($get_ops->('/nginx_status'), qr/Active connections: \d+/,
     "nginx's own stub_status there too");
like($get_ops->('/readyz'), qr/^HTTP\/1\.1 200/, 'and readiness');
like($get_ops->('/accounts/GW1'), qr/^HTTP\/1\.1 404/,
     'but not the API');
sleep 1.2;
is($t->get('/metrics')->{status}, 404, 'metrics are not on the API listener');
is($t->get('/healthz')->{status}, 404, 'nor the liveness probe');
is($t->get('/readyz')->{status}, 404, 'nor the readiness probe');
like($get_ops->('/healthz'), qr/^HTTP\/1\.1 200/, 'the liveness probe is on the operations listener');

done_testing();
