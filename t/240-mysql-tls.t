#!/usr/bin/perl
# TLS between the module and MariaDB (rbcs_mysql_ssl and companions).
#
# A private mariadbd with a certificate of a test CA made here (openssl),
# which refuses plain connections (require_secure_transport) and listens on
# 127.0.0.1 and 127.0.0.2; its certificate names 127.0.0.1 only.  Against
# it:
#   - TLS with the right CA: accounts, a transfer, balances; the server
#     counts TLS handshakes;
#   - without TLS: refused by the server, the service answers 503;
#   - a CA that did not sign the server's certificate: the pool refuses the
#     server, 503, the error log says why;
#   - reached as 127.0.0.2, which the certificate does not name: refused
#     with rbcs_mysql_ssl_verify on, used with it off (the chain is still
#     checked);
# and a server without TLS (the shared test server) is refused when TLS is
# on.  Wrong combinations of the directives stop nginx -t.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use RBCS::Test;

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;

my $ca    = RBCS::Test::tls_ca($dir, 'ca-a');
my $other = RBCS::Test::tls_ca($dir, 'ca-b');    # unrelated to the server
my $cert  = RBCS::Test::tls_cert($ca, $dir, 'db', 'IP:127.0.0.1');

my $m = RBCS::Test::private_mariadb(cnf => <<"EOF");
bind-address             = 127.0.0.1,127.0.0.2
ssl_ca                   = $ca->{crt}
ssl_cert                 = $cert->{crt}
ssl_key                  = $cert->{key}
require_secure_transport = ON
EOF
my $port = $m->port;

my $admin = $m->admin_dbh;
is(($admin->selectrow_array("SHOW GLOBAL VARIABLES LIKE 'have_ssl'"))[1], 'YES',
   'the private server offers TLS');

sub ssl_accepts {
    return ($admin->selectrow_array("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'"))[1];
}

# the pool says what happened to its connections at warn level
my @pool_log = (qr/rbcs: mysql connect failed/);

sub open_and_transfer {
    my ($t, $what) = @_;
    is($t->post_json('/accounts', { accountNumber => 'A',
                                    initialBalance => '100.00' })->{status},
       201, "$what: account A opened");
    is($t->post_json('/accounts', { accountNumber => 'B' })->{status}, 201,
       "$what: account B opened");
    my $r = $t->post_json('/accounts/transactions', {
        transactionId => 'tls-1', sourceAccountNumber => 'A',
        destinationAccountNumber => 'B', amount => '12.50' });
    is($r->{status}, 201, "$what: a transfer applied");
    is(eval { $t->get('/accounts/B/balance?consistency=strong')->json->{balance} },
       '12.50', "$what: the balance read back from MariaDB");
}

sub unavailable {
    my ($t, $what) = @_;
    my $r = $t->post_json('/accounts', { accountNumber => 'A' });
    is($r->{status}, 503, "$what: the service answers 503");
    is(eval { $r->json->{code} }, 'unavailable', "$what: problem code unavailable");
    is($t->get('/readyz')->{status}, 503, "$what: not ready");
}

# the configuration reaching MariaDB at HOST with the TLS directives SSL
# (one line: conf_test below finds them there)
sub conf {
    my ($host, $ssl) = @_;
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

    rbcs_mysql_server $host:\${MYSQL_PORT};
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

    $ssl

    server {
        listen 127.0.0.1:\${HTTP_PORT};

        error_page 413 \@rbcs_problem;
        location \@rbcs_problem { rbcs_problem; }

        location / { rbcs; }
    }
}
EOF
}

# --- TLS, the right CA, the name verified --------------------------------

my $before = ssl_accepts();
my $t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.1', "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt};"),
);
open_and_transfer($t, 'TLS with the CA');
cmp_ok(ssl_accepts() - $before, '>=', 1,
       'the server counted the pool\'s TLS handshakes');
is($t->get('/readyz')->{status}, 200, 'ready');
$t->stop;

# --- no TLS: the server refuses, the service says unavailable -------------

$t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.1', 'rbcs_mysql_ssl off;'),
    allow_log  => \@pool_log,
);
unavailable($t, 'without TLS');
# MariaDB 10.11 answers a plain connection under require_secure_transport
# as a failed login; with TLS the same user and password got in above
like($t->error_log, qr/mysql connect failed: (Access denied for user 'rbcs'|.*insecure transport)/,
     'without TLS: the server\'s refusal is in the error log');
$t->stop;

# --- a CA that did not sign the server's certificate ----------------------

$t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.1', "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $other->{crt};"),
    allow_log  => \@pool_log,
);
unavailable($t, 'another CA');
my ($why) = $t->error_log =~ /(rbcs: mysql connect failed: .*)/;
like($why // '', qr{TLS/SSL error: .*(certificate|issuer)}i,
     'another CA: the certificate verification failure is in the error log')
    or diag($t->error_log);
note($why) if $why;
$t->stop;

# --- a name the certificate does not have ---------------------------------

$t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.2', "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt}; "
                                    . 'rbcs_mysql_ssl_verify on;'),
    allow_log  => \@pool_log,
);
unavailable($t, 'another name, verified');
($why) = $t->error_log =~ /(rbcs: mysql connect failed: .*)/;
like($why // '', qr{TLS/SSL error: Validation of SSL server certificate failed},
     'another name: the name check is in the error log') or diag($t->error_log);
$t->stop;

$t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.2', "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt}; "
                                    . 'rbcs_mysql_ssl_verify off;'),
);
open_and_transfer($t, 'another name, rbcs_mysql_ssl_verify off');
$t->stop;

$t = RBCS::Test->new(
    mysql_port => $port,
    conf       => conf('127.0.0.2', "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $other->{crt}; "
                                    . 'rbcs_mysql_ssl_verify off;'),
    allow_log  => \@pool_log,
);
unavailable($t, 'rbcs_mysql_ssl_verify off, another CA: the chain still counts');
$t->stop;

# --- a server without TLS --------------------------------------------------

my $ssl_on = "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt};";
$t = RBCS::Test->new(       # the shared test server: no certificate
    conf       => conf('127.0.0.1', $ssl_on),
    allow_log  => \@pool_log,
);
unavailable($t, 'a server without TLS');
like($t->error_log, qr/rbcs: mysql connect failed: .*SSL is required, but the server does not support it/,
     'a server without TLS: refused, and said so') or diag($t->error_log);

# --- configuration ---------------------------------------------------------

# nginx -t on this instance's configuration with other TLS directives
sub conf_test {
    my ($conf) = @_;
    my $text = do {
        open my $fh, '<', $t->conf_file or die $!;
        local $/;
        <$fh>;
    };
    $text =~ s/\Q$ssl_on\E/$conf/ or die 'the TLS directives not found in nginx.conf';
    my $file = $t->prefix . '/conf-test.conf';
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
    my $prefix = $t->prefix;
    my $out = `'$RBCS::Test::NGINX' -t -q -p '$prefix/' -c '$file' -e '$prefix/conf-test.log' 2>&1`;
    return ($? == 0, $out);
}

my @cases = (
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt};", undef,
      'TLS with a CA' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_verify off;", undef,
      'TLS without verification' ],
    [ "rbcs_mysql_ssl_ca $ca->{crt};", qr/need "rbcs_mysql_ssl on"/,
      'a CA without rbcs_mysql_ssl on' ],
    [ "rbcs_mysql_ssl off; rbcs_mysql_ssl_verify on;", qr/need "rbcs_mysql_ssl on"/,
      'rbcs_mysql_ssl_verify on without TLS' ],
    [ "rbcs_mysql_ssl on;", qr/"rbcs_mysql_ssl_verify on" needs "rbcs_mysql_ssl_ca"/,
      'TLS, verified (the default), without a CA' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $dir/missing.crt;",
      qr/rbcs_mysql_ssl_ca "\Q$dir\E\/missing\.crt": open\(\) failed/,
      'a CA file that is not there' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $cert->{key};",
      qr/rbcs_mysql_ssl_ca "\Q$cert->{key}\E" is not a PEM file with "-----BEGIN CERTIFICATE-----"/,
      'a CA file that is a key' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt}; rbcs_mysql_ssl_cert $cert->{crt};",
      qr/"rbcs_mysql_ssl_cert" and "rbcs_mysql_ssl_key" go together/,
      'a client certificate without its key' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt}; rbcs_mysql_ssl_cert $cert->{crt}; "
      . "rbcs_mysql_ssl_key $cert->{key};", undef,
      'a client certificate with its key' ],
    [ "rbcs_mysql_ssl on; rbcs_mysql_ssl_ca $ca->{crt}; rbcs_mysql_ssl_cert $cert->{crt}; "
      . "rbcs_mysql_ssl_key $cert->{crt};",
      qr/rbcs_mysql_ssl_key "\Q$cert->{crt}\E" is not a PEM file with "PRIVATE KEY-----"/,
      'a client key file that is a certificate' ],
    [ "rbcs_mysql_ssl maybe;", qr/invalid value "maybe"/,
      'rbcs_mysql_ssl is on or off' ],
);
for my $c (@cases) {
    my ($conf, $re, $name) = @$c;
    my ($ok, $out) = conf_test($conf);
    if (!defined $re) {
        ok($ok, "nginx -t: $name: accepted") or diag($out);
    } else {
        ok(!$ok, "nginx -t: $name: refused");
        like($out, qr/\[emerg\] .*$re/, "nginx -t: $name: says why") or diag($out);
    }
}

done_testing();
