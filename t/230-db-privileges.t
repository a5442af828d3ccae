#!/usr/bin/perl

# Least privilege in the database: the service's user (the credentials of
# its nginx configuration, over TCP as nginx connects) holds the role
# rbcs_service of conf/grants.sql and nothing else.  Connected as that user,
# every statement that could rewrite history or the schema is refused by
# MariaDB itself: no UPDATE, DELETE or TRUNCATE of the audit log, no DDL,
# no GRANT, no write to another schema.  With exactly those grants the
# service still does every kind of write it has: open, transfer, reject,
# hold, capture, void, expire, a limit change, the cache generation moved
# when Redis is away; and every read: balance, ?at=, history, holds.

use strict;
use warnings;

use Test::More;
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(sleep);
use RBCS::Test;

my $pod_conf = <<'EOF';
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
my $t = RBCS::Test->new(conf => $pod_conf);

# ------------------------------------------------ the service's user --

open my $fh, '<', $t->conf_file or die $t->conf_file . ": $!";
my $conf = do { local $/; <$fh> };
close $fh;
my ($user) = $conf =~ /^\s*rbcs_mysql_user\s+(\S+);/m;
my ($password) = $conf =~ /^\s*rbcs_mysql_password\s+(\S+);/m;
is($user, 'rbcs', 'nginx logs in as rbcs');

my $svc = DBI->connect('DBI:MariaDB:host=127.0.0.1;port=' . $t->mysql_port
        . ';database=' . $t->dbname . ';mariadb_connect_timeout=3',
    $user, $password, { RaiseError => 0, PrintError => 0, AutoCommit => 1 })
    or BAIL_OUT("cannot connect as the service's user: $DBI::errstr");
my $admin = $t->dbh;
my $db = $t->dbname;

is(($svc->selectrow_array('SELECT CURRENT_ROLE()'))[0], 'rbcs_service',
   'its role rbcs_service is on when it connects');

# what it holds, as it sees it (its own grants and its role's)
my @grants = map { $_->[0] } @{ $svc->selectall_arrayref('SHOW GRANTS') };
ok(@grants, 'SHOW GRANTS answers') or diag($svc->errstr);
ok(!grep(/ALL PRIVILEGES/, @grants), 'no ALL PRIVILEGES') or diag(join "\n", @grants);
ok(!grep(/ON \*\.\*/ && !/^GRANT USAGE ON \*\.\*/, @grants), 'nothing on *.* but USAGE')
    or diag(join "\n", @grants);
ok(!grep(/ON `[^`]*`\.\*/, @grants), 'no grant on a whole database') or diag(join "\n", @grants);
ok(!grep(/WITH GRANT OPTION|WITH ADMIN OPTION/, @grants), 'no grant option')
    or diag(join "\n", @grants);
for my $u ("'rbcs'\@'127.0.0.1'", "'rbcs'\@'localhost'") {
    my @g = map { $_->[0] } @{ $admin->selectall_arrayref("SHOW GRANTS FOR $u") };
    is_deeply([ sort grep { !/^GRANT USAGE ON \*\.\* TO / } @g ],
              [ sort "GRANT `rbcs_service` TO `rbcs`@`" . ($u =~ /127/ ? '127.0.0.1' : 'localhost') . '`',
                     "SET DEFAULT ROLE `rbcs_service` FOR `rbcs`@`"
                     . ($u =~ /127/ ? '127.0.0.1' : 'localhost') . '`' ],
              "$u: the role, as its default, and nothing else of its own");
}

# table by table in this database: what the module's SQL needs (src/*.c)
my %want = (
    accounts         => 'INSERT, SELECT, UPDATE',
    transactions     => 'INSERT, SELECT, UPDATE',
    holds            => 'DELETE, INSERT, SELECT',
    entries          => 'INSERT, SELECT',
    audit_log        => 'INSERT',
    cache_generation => 'INSERT, SELECT, UPDATE',
);
my %have;
for (@grants) {
    my ($privs, $table) = /^GRANT (.+) ON `\Q$db\E`\.`([^`]+)` TO `rbcs_service`$/ or next;
    $have{$table} = join ', ', sort split /, /, $privs;
}
is_deeply(\%have, \%want, "the role's grants on $db, table by table");

# ------------------------------------------------------ refused --

# another schema, with a table the service's user must not write to
(my $other = "${db}_other") =~ s/^(.{64}).*/$1/;
$admin->do("DROP DATABASE IF EXISTS `$other`");
$admin->do("CREATE DATABASE `$other`");
$admin->do("CREATE TABLE `$other`.t (a INT)");

# a row of the audit log and a history entry to try to change
is($t->post_json('/accounts', { accountNumber => 'P0', initialBalance => '5.00' })->{status},
   201, 'an account opened: an audit row and an entry');
my $audit0 = $admin->selectall_arrayref('SELECT * FROM audit_log ORDER BY id');
my $entries0 = $admin->selectall_arrayref('SELECT * FROM entries ORDER BY account_number, version');

# [statement, error codes MariaDB may answer (1142: command denied on a
# table, 1044: on a database, 1227: a global privilege needed)]
my @refused = (
    [ q{UPDATE audit_log SET detail = 'rewritten'}, 1142 ],
    [ q{DELETE FROM audit_log}, 1142 ],
    [ q{TRUNCATE TABLE audit_log}, 1142 ],
    [ q{SELECT COUNT(*) FROM audit_log}, 1142 ],
    [ q{RENAME TABLE audit_log TO audit_old}, 1142 ],
    [ q{DROP TABLE audit_log}, 1142 ],
    [ q{DROP TABLE entries}, 1142 ],
    [ q{ALTER TABLE accounts DROP CONSTRAINT accounts_within_limit}, 1142 ],
    [ q{ALTER TABLE audit_log ADD COLUMN note INT}, 1142 ],
    [ q{CREATE TABLE shadow (a INT)}, 1142 ],
    [ q{CREATE INDEX accounts_balance ON accounts (balance)}, 1142 ],
    [ q{CREATE TRIGGER audit_quiet BEFORE INSERT ON audit_log FOR EACH ROW SET NEW.detail = NULL}, 1142 ],
    [ q{CREATE PROCEDURE p() SELECT 1}, 1044 ],
    [ q{DELETE FROM entries}, 1142 ],
    [ q{UPDATE entries SET amount = 0}, 1142 ],
    [ q{DELETE FROM accounts}, 1142 ],
    [ q{DELETE FROM transactions}, 1142 ],
    [ q{UPDATE holds SET amount = 0}, 1142 ],
    [ q{LOCK TABLES accounts WRITE}, 1044 ],
    [ q{GRANT DELETE ON audit_log TO 'rbcs'@'127.0.0.1'}, 1142 ],
    [ q{GRANT ALL PRIVILEGES ON *.* TO 'rbcs'@'127.0.0.1'}, 1045 ],
    [ q{CREATE USER 'intruder'@'%'}, 1227 ],
    [ "INSERT INTO `$other`.t VALUES (1)", 1142 ],
    [ "DROP DATABASE `$other`", 1044 ],
    [ q{CREATE DATABASE rbcs_shadow}, 1044 ],
    [ q{SELECT * FROM mysql.user}, 1142 ],
    [ q{SET GLOBAL innodb_flush_log_at_trx_commit = 0}, 1227 ],
);
for my $case (@refused) {
    my ($sql, @codes) = @$case;
    my $ok = $svc->do($sql);
    my $err = $svc->err // 0;
    ok(!defined $ok && grep({ $err == $_ } @codes), "refused: $sql")
        or diag('answered ' . ($err ? "$err " . $svc->errstr : 'success'));
    note("$err " . ($svc->errstr // ''));
}

is_deeply($admin->selectall_arrayref('SELECT * FROM audit_log ORDER BY id'), $audit0,
          'the audit log is as it was');
is_deeply($admin->selectall_arrayref('SELECT * FROM entries ORDER BY account_number, version'),
          $entries0, 'the history is as it was');
is(($admin->selectrow_array(
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$db'"))[0],
   6, 'the same six tables');
ok($admin->selectrow_array("SELECT COUNT(*) = 0 FROM `$other`.t"), 'the other schema untouched');
RBCS::Test::drop_database($admin, $other);

# ------------------------------------------------ and the service works --

sub xfer {
    my ($id, $src, $dst, $amount, %x) = @_;
    return $t->post_json('/accounts/transactions', { transactionId => $id,
        sourceAccountNumber => $src, destinationAccountNumber => $dst,
        amount => $amount, %x });
}

is($t->post_json('/accounts', { accountNumber => 'A', initialBalance => '100.00' })->{status},
   201, 'open A');
is($t->post_json('/accounts', { accountNumber => 'B' })->{status}, 201, 'open B');
is($t->post_json('/accounts', { accountNumber => 'EXT', kind => 'EXTERNAL' })->{status}, 201,
   'open an EXTERNAL account');

is(xfer('t1', 'A', 'B', '10.00')->{status}, 201, 'a transfer');
is(xfer('t1', 'A', 'B', '10.00')->{status}, 200, '... its repeat');
is(xfer('d1', 'EXT', 'A', '50.00')->{status}, 201, 'a deposit');
is(xfer('r1', 'B', 'A', '1000.00')->{status}, 422, 'a rejection, recorded');
is(xfer('h1', 'A', 'B', '30.00', hold => JSON::PP::true)->{status}, 201, 'a hold');
my $r = $t->post_json('/accounts/transactions/h1/capture', { amount => '20.00' });
is($r->{status}, 200, 'its capture (part of it)') or diag($r->{body});
is(xfer('h2', 'A', 'B', '5.00', hold => JSON::PP::true)->{status}, 201, 'another hold');
is($t->post_json('/accounts/transactions/h2/void', {})->{status}, 200, 'its void');
is(xfer('h3', 'A', 'B', '1.00', hold => JSON::PP::true, expiresIn => 1)->{status}, 201,
   'a hold that expires in 1 s');
is(xfer('h4', 'A', 'B', '2.00', hold => JSON::PP::true)->{status}, 201, 'a hold left pending');
$r = $t->patch_json('/accounts/A', { overdraftLimit => '25.00' });
is($r->{status}, 200, 'an overdraft limit set (PATCH)') or diag($r->{body});

my $expired = RBCS::Test::wait_for(5, sub {
    my $x = $t->get('/accounts/transactions/h3');
    $x->{status} == 200 && $x->json->{status} eq 'EXPIRED';
});
ok($expired, 'the expiring hold is released by the service');

$r = $t->get('/accounts/A/balance');
is($r->{status}, 200, 'a balance read');
is($r->json->{balance}, '120.00', '... 100 - 10 + 50 - 20');
is($t->get('/accounts/A/balance?consistency=strong')->json->{heldBalance}, '2.00',
   '... from the database: 2.00 still held');
my $at = $t->get('/accounts/A')->json->{createdAt};
(my $q = $at) =~ s/:/%3A/g;
$r = $t->get("/accounts/A/balance?at=$q");
is($r->{status}, 200, 'the balance at a time') or diag($r->{body});
is($r->json->{balance}, '100.00', '... at the opening');
$r = $t->get('/accounts/A/transactions');
is(scalar @{ $r->json->{entries} }, 4, 'the history: opening, transfer, deposit, capture');
$r = $t->get('/accounts/A/holds');
is_deeply([ map { $_->{transactionId} } @{ $r->json->{holds} } ], [ 'h4' ],
          'the holds listed: the pending one');
is($t->get('/accounts/transactions/r1')->json->{status}, 'REJECTED', 'a transaction read');

my %actions = map { @$_ } @{ $admin->selectall_arrayref(
    'SELECT action, COUNT(*) FROM audit_log GROUP BY action') };
is_deeply(\%actions, { 'account.open' => 4, 'transfer' => 3, 'hold' => 4,
                       'hold.capture' => 1, 'hold.void' => 1, 'hold.expire' => 1,
                       'account.limit' => 1 },
          'every change in the audit log, written by the service');

# the cache generation: a pod that cannot publish moves its row on
my $redis = RBCS::Test::private_redis();
my $p = RBCS::Test->new(redis_port => $redis->port, pod_of => $t,
                        allow_log => [ qr/redis|cache generation/i ],
                        conf => $pod_conf);
is($p->get('/accounts/A/balance')->{status}, 200, 'a second pod, with a Redis of its own');
my $generation = sub {
    ($admin->selectrow_array('SELECT COALESCE(SUM(generation), 0) FROM cache_generation'))[0];
};
my $g0 = $generation->();
$redis->stop;
is(xfer('g1', 'A', 'B', '1.00')->{status}, 201, 'a transfer on the first pod');
my $moved = RBCS::Test::wait_for(10, sub {
    my $x = $p->post_json('/accounts/transactions', { transactionId => 'g' . int(rand 1e9),
        sourceAccountNumber => 'A', destinationAccountNumber => 'B', amount => '0.01' });
    $x->{status} == 201 && $generation->() > $g0;
}, 0.5);
ok($moved, 'Redis away: the pod moved its cache generation (INSERT ... ON DUPLICATE KEY UPDATE)');
$p->stop;

$svc->disconnect;

# ------------------------- the user of the dev overlay and of compose --

# k8s/overlays/dev and docker/compose.yaml make the user as the MariaDB
# image does with /docker-entrypoint-initdb.d: each file in name order, as
# root with the database selected, a .sql file fed to the client, a .sh
# file sourced (docker_process_sql: the image's client as root).  Here on
# a database of this server, with a user name and a password that need
# quoting.
my @initdb = ([ 'schema.sql', "$RBCS::Test::ROOT/conf/schema.sql" ],
              [ 'service-grants.sql', "$RBCS::Test::ROOT/conf/grants.sql" ],
              [ 'service-user.sh', "$RBCS::Test::ROOT/k8s/overlays/dev/service-user.sh" ]);
is_deeply([ map { $_->[0] } @initdb ], [ sort map { $_->[0] } @initdb ],
          'initdb: the schema, then the grants, then the user, in name order');
ok(!-x $initdb[2][1], 'service-user.sh is not executable: the entrypoint sources it');

my $k8s_user = "k8s-$$";
my $k8s_password = q{it's a \ "dev" password};
my $dir = File::Temp::tempdir('rbcs-initdb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
for (['username', "$k8s_user\n"], ['password', "$k8s_password\n"]) {
    open my $out, '>', "$dir/$_->[0]" or die "$dir/$_->[0]: $!";
    print $out $_->[1];
    close $out;
}
my $k8s_db = "${db}_k8s";
$admin->do("DROP DATABASE IF EXISTS `$k8s_db`");
$admin->do("CREATE DATABASE `$k8s_db` CHARACTER SET utf8mb4");
my $script = join "\n", 'set -eo pipefail',
    'docker_process_sql() { "$MARIADB_CLI" --no-defaults --socket="$SOCK" -uroot --database="$DB" "$@"; }',
    map({ $_->[0] =~ /\.sh$/ ? ". '$_->[1]'" : "docker_process_sql < '$_->[1]'" } @initdb);
{
    local %ENV = (%ENV, MARIADB_CLI => $RBCS::Test::MARIADB_CLI, SOCK => $RBCS::Test::MYSQL_SOCK,
                  DB => $k8s_db, RBCS_DB_DIR => $dir);
    my $out = `bash -c '$script' 2>&1`;
    is($?, 0, 'initdb: the three files ran') or diag($out);
}
my @kg = map { $_->[0] } @{ $admin->selectall_arrayref("SHOW GRANTS FOR '$k8s_user'\@'%'") };
is_deeply([ sort grep { !/^GRANT USAGE ON \*\.\* TO / } @kg ],
          [ "GRANT `rbcs_service` TO `$k8s_user`\@`%`", "SET DEFAULT ROLE `rbcs_service` FOR `$k8s_user`\@`%`" ],
          "initdb: $k8s_user\@'%' has the role, as its default, and nothing else")
    or diag(join "\n", @kg);
my $k8s = DBI->connect('DBI:MariaDB:host=127.0.0.1;port=' . $t->mysql_port
        . ";database=$k8s_db;mariadb_connect_timeout=3",
    $k8s_user, $k8s_password, { RaiseError => 0, PrintError => 0, AutoCommit => 1 });
ok($k8s, 'initdb: it logs in with the password as written in the file') or diag($DBI::errstr);
if ($k8s) {
    ok($k8s->do(q{INSERT INTO cache_generation VALUES ('initdb', 1)}), '... writes what the service writes')
        or diag($k8s->errstr);
    ok(!$k8s->do(q{DELETE FROM audit_log}) && $k8s->err == 1142, '... and not the audit log');
    ok(!$k8s->do(q{DROP TABLE accounts}) && $k8s->err == 1142, '... nor the schema');
    $k8s->disconnect;
}
$admin->do("DROP USER IF EXISTS '$k8s_user'\@'%'");
RBCS::Test::drop_database($admin, $k8s_db);

done_testing();
