#!/usr/bin/perl
# Smoke test of the test harness itself (t/lib/RBCS/Test.pm): nginx starts
# with the module against a fresh database, /healthz answers, the helpers
# work, reload and private MariaDB instances work.

use strict;
use warnings;

use Test::More;
use RBCS::Test;

my $t = RBCS::Test->new(workers => 2);

like($t->port, qr/^\d+\z/, 'nginx got a port');
ok(-f $t->prefix . '/nginx.conf', 'nginx.conf written into the prefix');
like($t->dbname, qr/^rbcs_t_002_harness_\d+\z/, 'database name');
is($t->url('/x'), 'http://127.0.0.1:' . $t->port . '/x', 'url');

my $r = $t->get('/healthz');
is($r->{status}, 200, 'GET /healthz answers 200')
    or diag("raw response: $r->{raw}\nerror.log:\n" . $t->error_log);

# nginx itself rejects a broken request line: proves raw_request/parsing
$r = $t->raw_request("BOGUS\r\n\r\n");
is($r->{status}, 400, 'raw_request: malformed request gets 400 from nginx');
ok(exists $r->{headers}{server}, 'response headers are parsed (lower case)');

# pids
my ($master, @workers) = $t->nginx_pids;
ok($master && kill(0, $master), 'master pid');
is(scalar @workers, 2, 'two workers');

# database: the schema's tables exist in the test database
my $dbh = $t->dbh;
is($dbh->selectrow_array('SELECT DATABASE()'), $t->dbname, 'dbh uses the test database');
SKIP: {
    my $schema = "$RBCS::Test::ROOT/conf/schema.sql";
    skip 'no conf/schema.sql', 1 unless -f $schema;
    my $sql = do { local (@ARGV, $/) = ($schema); <> };
    my @want = sort $sql =~ /CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?/gi;
    my %have = map { $_->[0] => 1 } @{ $dbh->selectall_arrayref('SHOW TABLES') };
    is_deeply([ grep { !$have{$_} } @want ], [], 'schema applied to the test database');
}

# reload gives new workers and nginx keeps answering
$t->reload;
my ($master2, @workers2) = $t->nginx_pids;
is($master2, $master, 'reload keeps the master');
ok(!grep({ my $w = $_; grep { $_ == $w } @workers } @workers2), 'reload replaced the workers');
is($t->get('/healthz')->{status}, 200, '/healthz after reload');

# private MariaDB + a second instance pointed at it
my $m = RBCS::Test::private_mariadb();
like($m->port, qr/^\d+\z/, 'private mariadbd port');
ok(kill(0, $m->pid), 'private mariadbd runs');
isnt($m->port, $RBCS::Test::MYSQL_PORT, 'on its own port');
my $t2 = RBCS::Test->new(mysql_port => $m->port, workers => 1,
                         mysql => { pool_size => 2, query_timeout => '1s' });
like($t2->error_log . do { local (@ARGV, $/) = ($t2->conf_file); <> },
     qr/rbcs_mysql_server 127\.0\.0\.1:${\ $m->port};.*rbcs_mysql_pool_size 2;/s,
     'mysql overrides rendered');
is($t2->get('/healthz')->{status}, 200, 'instance on the private mariadbd answers /healthz');
$t2->stop;
my $mpid = $m->pid;
$m->stop;
ok(!RBCS::Test::_alive($mpid), 'private mariadbd stopped');

# the sanitizer plumbing of make test-sanitize: reports land in the
# instance's prefix, and any report is an alert of the final check
{
    my $dir = File::Temp::tempdir('rbcs-san-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    local $ENV{ASAN_OPTIONS} = 'log_path=/elsewhere/asan:halt_on_error=0';
    local $ENV{UBSAN_OPTIONS};
    my ($asan, $ubsan) = RBCS::Test::_sanitizer_env($dir);
    is($asan, "halt_on_error=0:log_path=$dir/sanitizer/asan",
       'ASAN_OPTIONS: options kept, the log path the instance\'s');
    is($ubsan, "log_path=$dir/sanitizer/ubsan", 'UBSAN_OPTIONS: the log path');
    ok(-d "$dir/sanitizer" && (stat _)[2] & 0002, 'the report directory is open to the workers');
    is_deeply([ RBCS::Test::_sanitizer_reports($dir) ], [], 'no report, no alert');
    open my $fh, '>', "$dir/sanitizer/asan.1" or die $!;
    close $fh;
    is_deeply([ RBCS::Test::_sanitizer_reports($dir) ], [], 'an empty file is no report');
    open $fh, '>', "$dir/sanitizer/ubsan.2" or die $!;
    print $fh "src/x.c:1:2: runtime error: load of null pointer\n";
    close $fh;
    my @bad = RBCS::Test::_sanitizer_reports($dir);
    is(scalar @bad, 1, 'a report is found');
    like($bad[0] // '', qr/^\[alert\] sanitizer report .*ubsan\.2: .*runtime error/,
         'and is an alert of the final check, with its first line');
}

done_testing();
