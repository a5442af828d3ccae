#!/usr/bin/perl
# The harness's part of make test-sanitize: sanitizer reports land in the
# instance's prefix, and any report is an alert of the final check (so it
# fails the test that produced it).

use strict;
use warnings;

use File::Temp ();
use Test::More;
use RBCS::Test;

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

done_testing();
