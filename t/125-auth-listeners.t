#!/usr/bin/perl

# With rbcs_auth off the API answers whoever reaches it: nginx refuses a
# configuration that listens beyond loopback (a wildcard address, a
# routable one, a server without a listen directive: *:80) unless it says
# "rbcs_auth_off_beyond_loopback on"; loopback and unix sockets are fine;
# with rbcs_auth on any address is.  Checked with `nginx -t` on the test
# server's own configuration, rewritten.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

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
my $dir = tempdir('rbcs-listen-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;

open my $fh, '<', $t->conf_file or die $t->conf_file . ": $!";
my $conf = do { local $/; <$fh> };
close $fh;
like($conf, qr/^\s*listen 127\.0\.0\.1:\d+;/m, 'the test server listens on loopback');

my $port = RBCS::Test::free_port();

# nginx -t of the test server's configuration with its listeners rewritten
sub check {
    my ($name, %o) = @_;
    my $c = $conf;
    $c =~ s/^(\s*)listen 127\.0\.0\.1:\d+;/$1$o{listen}/m if defined $o{listen};
    $c =~ s/^(\s*)listen 127\.0\.0\.1:\d+;\n//m if $o{no_listen};
    $c =~ s/^(http\s*\{)/$1\n    $o{http}/m if $o{http};
    open my $out, '>', "$dir/$name.conf" or die "$dir/$name.conf: $!";
    print $out $c;
    close $out;
    my $cmd = sprintf("%s -t -q -p %s/ -c %s/%s.conf -e %s/error.log 2>&1", $t->{nginx},
                      $t->prefix, $dir, $name, $dir);
    my $text = `$cmd`;
    return ($? == 0, $text);
}

my ($ok, $out) = check('loopback');
ok($ok, 'auth off, loopback only: accepted') or diag($out);

($ok, $out) = check('wildcard', listen => "listen $port;");
ok(!$ok, 'auth off, a wildcard listener: refused');
like($out, qr/"rbcs_auth" is off and nginx listens on 0\.0\.0\.0:$port, beyond loopback/,
     'the error names the listener and the ways out');

($ok, $out) = check('ipv6', listen => "listen [::]:$port;");
ok(!$ok, 'auth off, an IPv6 wildcard: refused');
like($out, qr/listens on \[::\]:$port\b/, '... named as such');

($ok, $out) = check('nolisten', no_listen => 1);
ok(!$ok, 'auth off, a server without a listen directive (*:80): refused');
like($out, qr/listens on 0\.0\.0\.0:80\b/, '... named as such');

($ok, $out) = check('v6loop', listen => "listen [::1]:$port;");
ok($ok, 'auth off, [::1]: accepted') or diag($out);

($ok, $out) = check('unix', listen => "listen unix:$dir/api.sock;");
ok($ok, 'auth off, a unix socket: accepted') or diag($out);

($ok, $out) = check('optout', listen => "listen $port;",
                    http => 'rbcs_auth_off_beyond_loopback on;');
ok($ok, 'auth off beyond loopback with the explicit opt-out: accepted') or diag($out);

# with authentication on, any address (the keys file is the example one)
($ok, $out) = check('authon', listen => "listen $port;",
                    http => "rbcs_auth on; rbcs_auth_keys $RBCS::Test::ROOT/conf/keys.example;");
ok($ok, 'auth on, a wildcard listener: accepted') or diag($out);

done_testing();
