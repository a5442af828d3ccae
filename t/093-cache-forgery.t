#!/usr/bin/perl
# Redis is not trusted with balances.  An attacker who can reach Redis and
# holds the service's own Redis password (ACL user "rbcs") writes forged
# balance keys and publishes forged balance messages; no pod serves them,
# and a forged huge version does not hold back the real updates.  Values
# and messages carry an HMAC tag keyed with a secret the pods share
# (rbcs_redis_hmac_key_file); authentic but unusable ones (an unknown
# currency, a scale not the currency's, an impossible version, a message
# repeated or from more than a minute ago) are not used either.  The module
# logs in to Redis (rbcs_redis_user, rbcs_redis_password_file): a wrong
# password is refused and balances come from the database.  A
# configuration with Redis but without a key is refused, and the
# service's ACL user cannot run administrative commands.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $redis = RBCS::Test::private_redis();

my @quiet = (allow_log => [ qr/authentication tag|not used|redis|changes may have been missed/i ]);
# a pod of WORKERS workers
sub conf {
    my ($workers) = @_;
    return <<"EOF";
\${TEST_GLOBALS}
worker_processes $workers;
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

    server {
        listen 127.0.0.1:\${HTTP_PORT};

        error_page 413 \@rbcs_problem;
        location \@rbcs_problem { rbcs_problem; }

        location / { rbcs; }
    }
}
EOF
}

my $p1 = RBCS::Test->new(redis_port => $redis->port, @quiet, conf => conf(2));
my $p2 = RBCS::Test->new(redis_port => $redis->port,
                         pod_of => $p1, @quiet, conf => conf(2));

my $pfx  = $p1->redis_prefix;
my $chan = "${pfx}balances";


# every worker of a pod (requests spread over them): the answers seen
sub balances {
    my ($t, $n) = @_;
    my %seen;
    for (1 .. 8) {
        my $x = $t->balance($n) or return { error => 1 };
        $seen{"$x->{balance}/$x->{version}"}++;
    }
    return \%seen;
}


sub visible {
    my ($t, $n, $v, $limit) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        my $x = $t->balance($n);
        return 1 if $x && $x->{version} == $v;
        sleep 0.02;
    }
    return 0;
}

# redis-cli as the attacker: the service's ACL user and password
sub attacker {
    my (@args) = @_;
    my $out = $redis->cli_as_service(@args);
    return defined $out ? $out : 'failed';
}

sub stored {
    my ($n) = @_;
    my @l = split /\n/, $redis->cli('HGETALL', "${pfx}bal:$n") // '';
    return { @l };
}

sub connected {   # every worker's command connection
    my ($t, $workers) = @_;
    return RBCS::Test::wait_for(10, sub {
        ($t->metric('rbcs_redis_connected') // 0) >= ($workers // 2) });
}

ok(connected($p1) && connected($p2), 'both pods log in to Redis as "rbcs"');

for my $n (qw(A1 A2 A3 A4 A5 A6)) {
    is($p1->post_json('/accounts', { accountNumber => $n, currency => 'EUR',
                                     initialBalance => '100.00' })->{status},
       201, "opened $n");
}

my $r = $p1->transfer('f-1', 'A1', 'A2', '10.00');
is($r->{status}, 201, 'a transfer');
my $v1 = $r->json->{sourceVersion};

for my $n (qw(A3 A4 A5)) {
    is($p1->transfer("f-$n", $n, 'A6', '1.00')->{status}, 201, "a transfer from $n");
}

ok(RBCS::Test::wait_for(5, sub { my $h = stored('A1'); ($h->{v} // 0) == $v1 }),
   'Redis holds A1 as written by pod 1');
my $a1 = stored('A1');
like($a1->{t} // '', qr/^[0-9a-f]{32}\z/, 'the stored value carries a tag');

# --- forged keys ----------------------------------------------------------

# as stored, but a huge version and a fortune; the genuine tag kept
like(attacker('HSET', "${pfx}bal:A1", 'v', '9000000', 'b', '1000000.00:0.00:0.00:S'),
     qr/^\d+$/m, 'the attacker rewrites A1 in Redis');

# made with the key (as a pod with a bug would), but not a usable value
my $a3 = stored('A3');
my $a4 = stored('A4');
sub sign {
    my ($h, $n) = @_;
    return RBCS::Test::redis_tag($pfx, "$n $h->{v} $h->{s} $h->{c} $h->{b} $h->{g}");
}
my %bad3 = (%$a3, c => 'XTS');                    # no such currency here
$bad3{t} = sign(\%bad3, 'A3');
$redis->cli('HSET', "${pfx}bal:A3", map { $_ => $bad3{$_} } qw(c t));
my %bad4 = (%$a4, v => 2**53 + 7, b => '5.00:0.00:0.00:S');   # no ledger gets there
$bad4{t} = sign(\%bad4, 'A4');
$redis->cli('HSET', "${pfx}bal:A4", map { $_ => $bad4{$_} } qw(v b t));

# A5 left as pod 1 wrote it: a pod that has it nowhere else serves it
my $p3 = RBCS::Test->new(redis_port => $redis->port,
                         pod_of => $p1, @quiet, conf => conf(1));
ok(connected($p3, 1), 'a third pod is up');
# Redis is used once the pod has read the cache generation and subscribed
ok(RBCS::Test::wait_for(10, sub {
       ($p3->metric('rbcs_cache_generation_reads_total') // 0) >= 1 }),
   '... and has read the cache generation');
sleep 0.3;

my $x = $p3->balance('A5');
is($x && $x->{tier}, 'redis', 'an authentic value in Redis is served (the path works)');
is($x && $x->{balance}, '99.00', '... and it is the right one');

$x = $p3->balance('A1');
isnt($x && $x->{tier}, 'redis', 'the forged A1 is not served from Redis');
is($x && $x->{balance}, '90.00', 'A1 is the database\'s balance');
is($x && $x->{version}, $v1, '... at the database\'s version');
like($p3->error_log, qr/redis value of "A1" fails its authentication tag: not used/,
     'the forgery is logged');

$x = $p3->balance('A3');
isnt($x && $x->{tier}, 'redis', 'a tagged value in an unknown currency is not served');
is($x && $x->{currency}, 'EUR', 'A3 is in its own currency');

$x = $p3->balance('A4');
isnt($x && $x->{tier}, 'redis', 'a tagged value with an impossible version is not served');
is($x && $x->{balance}, '99.00', 'A4 is the database\'s balance');

# --- forged messages ------------------------------------------------------

# both pods hold A1 now
balances($_, 'A1') for $p1, $p2;

my $now = int(time * 1000);
like(attacker('PUBLISH', $chan,
              "#evil/0/1 1 0 $now " . ('0' x 32) . "\n"
              . 'A1 9000000 2 EUR 1000000.00:0.00:0.00:S ' . ('f' x 32)),
     qr/^\d+$/, 'the attacker publishes a forged A1 with a huge version');
like(attacker('PUBLISH', $chan,
              RBCS::Test::redis_header($pfx, 'evil/0/2', 1, 0) . "\n"
              . 'A1 9000001 2 EUR 1000000.00:0.00:0.00:S ' . ('a' x 32)),
     qr/^\d+$/, '... and one under an authentic first line');
sleep 0.3;

is_deeply(balances($p1, 'A1'), { "90.00/$v1" => 8 }, 'pod 1 never serves the forged A1');
is_deeply(balances($p2, 'A1'), { "90.00/$v1" => 8 }, 'pod 2 never serves the forged A1');
like($p2->error_log, qr/redis message on channel "\Q$chan\E" fails its authentication tag/,
     'forged messages are logged');

$r = $p1->transfer('f-2', 'A1', 'A2', '1.00');
is($r->{status}, 201, 'a real transfer after the forgeries');
ok(visible($p2, 'A1', $r->json->{sourceVersion}, 2),
   'pod 2 sees the real change: the forged version pinned nothing')
    or diag(explain($p2->balance('A1')), $p2->error_log);
ok(visible($p3, 'A1', $r->json->{sourceVersion}, 2), '... and so does pod 3');
ok(RBCS::Test::wait_for(2, sub { (stored('A1')->{v} // 0) == $r->json->{sourceVersion} }),
   'Redis holds the real A1 again (the forged key was dropped when read)');

# --- authentic messages that are not news --------------------------------

my $a6 = $p2->balance('A6');
my $v6 = $a6->{version};
sub a6_message {
    my ($pub, $seq, $ms, $version, $state, $currency) = @_;
    return RBCS::Test::redis_header($pfx, $pub, $seq, 0, $ms) . "\n"
         . RBCS::Test::redis_line($pfx, 0, 'A6', $version, 2, $currency // 'EUR', $state);
}

$redis->cli('PUBLISH', $chan, a6_message('old/0/1', 1, int(time * 1000) - 120_000,
                                         $v6 + 5, '1.00:0.00:0.00:S'));
$redis->cli('PUBLISH', $chan, a6_message('odd/0/1', 1, undef, $v6 + 5,
                                         '2.00:0.00:0.00:S', 'XTS'));
sleep 0.3;
is_deeply(balances($p2, 'A6'), { "103.00/$v6" => 8 },
          'authentic but two minutes old, or in an unknown currency: not used');
like($p2->error_log, qr/is late by more than 60000 ms: not used/, 'the late one is logged');

# the same message again: a repetition is not used
my $once = a6_message('rep/0/1', 1, undef, $v6 + 5, '3.00:0.00:0.00:S');
$redis->cli('PUBLISH', $chan, $once);
ok(RBCS::Test::wait_for(2, sub { ($p2->balance('A6') // {})->{version} == $v6 + 5 }),
   'an authentic, current message is used (the path works)');
$redis->cli('PUBLISH', $chan, a6_message('rep/0/1', 2, undef, $v6 + 6, '4.00:0.00:0.00:S'));
ok(RBCS::Test::wait_for(2, sub { ($p2->balance('A6') // {})->{version} == $v6 + 6 }),
   '... and its publisher\'s next one');
$redis->cli('PUBLISH', $chan, a6_message('rep/0/1', 1, undef, $v6 + 7, '5.00:0.00:0.00:S'));
sleep 0.3;
is(($p2->balance('A6') // {})->{version}, $v6 + 6, 'an earlier number of that publisher again: not used');
like($p2->error_log, qr/message 1 of "rep\/0\/1" on redis channel "\Q$chan\E" came again after 2: not used/,
     'the repetition is logged');

$p3->stop;

# --- logging in to Redis --------------------------------------------------

my $wrong = "$RBCS::Test::VAR/wrong-redis-password-$$";
open my $fh, '>', $wrong or die "$wrong: $!";
print $fh "not-the-password\n";
close $fh;
my $p4 = RBCS::Test->new(redis_port => $redis->port, pod_of => $p1,
                         vars => { REDIS_PASSWORD_FILE => $wrong }, @quiet,
                         conf => conf(1));
ok(RBCS::Test::wait_for(5, sub { $p4->error_log =~ /AUTH refused: WRONGPASS/ }),
   'a wrong Redis password is refused, and logged');
unlike($p4->error_log, qr/not-the-password/, '... without the password');
is($p4->metric('rbcs_redis_connected'), 0, 'that pod is not connected to Redis');
$x = $p4->balance('A5');
is($x && $x->{balance}, '99.00', 'its balances come from the database');
$p4->stop;
unlink $wrong;

# --- configuration --------------------------------------------------------

my $dir = "$RBCS::Test::VAR/t093-$$";
mkdir $dir;
open $fh, '<', $p1->conf_file or die $p1->conf_file . ": $!";
my $conf = do { local $/; <$fh> };
close $fh;

sub nginx_t {
    my ($name, $c) = @_;
    open my $out, '>', "$dir/$name.conf" or die "$dir/$name.conf: $!";
    print $out $c;
    close $out;
    my $text = `$RBCS::Test::NGINX -t -q -p @{[ $p1->prefix ]}/ -c $dir/$name.conf -e $dir/error.log 2>&1`;
    return ($? == 0, $text);
}

(my $nokey = $conf) =~ s/^\s*rbcs_redis_hmac_key_file\b[^;]*;\n//m;
my ($ok, $out) = nginx_t('nokey', $nokey);
ok(!$ok, 'Redis without an HMAC key: refused');
like($out, qr/"rbcs_redis_server" needs "rbcs_redis_hmac_key_file"/, '... saying why');

open $fh, '>', "$dir/short.key" or die;
print $fh "0123456789\n";
close $fh;
(my $short = $conf) =~ s/^(\s*rbcs_redis_hmac_key_file)\b[^;]*;/$1 $dir\/short.key;/m;
($ok, $out) = nginx_t('short', $short);
ok(!$ok, 'a 10-byte key: refused');
like($out, qr/shorter than 32 bytes/, '... saying why');
unlike($out, qr/0123456789/, '... without showing it');

# --- the service's ACL user on the test stack's Redis (conf/redis.conf.in) --

sub stack_cli {
    my ($user, @args) = @_;
    local $ENV{REDISCLI_AUTH} = RBCS::Test::redis_secret($user eq 'rbcs' ? 'password' : 'admin');
    my $res = RBCS::Test::_run_capture([ 'redis-cli', ($user eq 'rbcs' ? ('--user', 'rbcs') : ()),
        '-h', '127.0.0.1', '-p', $RBCS::Test::REDIS_PORT, @args ]);
    return $res->{output};
}
like(stack_cli('rbcs', 'PING'), qr/PONG/, 'the service\'s user logs in');
for my $cmd ([ 'FLUSHALL' ], [ 'CONFIG', 'GET', 'requirepass' ], [ 'KEYS', '*' ],
             [ 'DEL', 'rbcs:bal:X' ], [ 'HSET', 'other:x', 'a', 'b' ]) {
    like(stack_cli('rbcs', @$cmd), qr/NOPERM/, "the service's user may not $cmd->[0]");
}
{
    local $ENV{REDISCLI_AUTH};
    my $res = RBCS::Test::_run_capture([ 'redis-cli', '-h', '127.0.0.1', '-p',
                                         $RBCS::Test::REDIS_PORT, 'GET', 'x' ]);
    like($res->{output}, qr/NOAUTH/, 'without a password, nothing');
}

$p1->stop;
$p2->stop;
done_testing();
