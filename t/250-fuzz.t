#!/usr/bin/perl

# The libFuzzer harnesses of the parsers of outside input (t/fuzz/), a short
# run of each: t/fuzz/run.sh builds it (clang, ASan, UBSan), runs every input
# of its seed corpus t/fuzz/corpus/NAME once (the regression inputs of past
# findings, regress-*, among them), then fuzzes for RBCS_FUZZ_SECONDS (5)
# seconds.  Any crash, sanitizer report or failed check of a harness fails
# its test, with the input left in build/fuzz/artifacts/.  The longer run
# is `make fuzz FUZZ_SECONDS=600` (docs/memory-safety.md).
#
# body, auth and redis run the module's code on nginx's: they link the
# static nginx tree of docker/build-static.sh, built here when missing
# (as t/180-static-build.t does; skipped, saying so, when Debian's nginx
# source cannot be fetched).

use strict;
use warnings;

use File::Temp qw(tempdir);
use Test::More;
use RBCS::Test ();

my $root = $RBCS::Test::ROOT;
my $secs = $ENV{RBCS_FUZZ_SECONDS} // 5;
my $ngx  = "$root/build/static/nginx-src";

# clang with libFuzzer (libclang-rt-14-dev)
my $tmp = tempdir('rbcs-fuzz-XXXXXX', TMPDIR => 1, CLEANUP => 1);
{
    open my $fh, '>', "$tmp/t.c" or die "$tmp/t.c: $!";
    print $fh "#include <stddef.h>\n#include <stdint.h>\n"
        . "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) "
        . "{ (void) d; (void) n; return 0; }\n";
    close $fh;
    my $out = `clang -fsanitize=fuzzer,address,undefined -o $tmp/t $tmp/t.c 2>&1`;
    plan skip_all => "clang with libFuzzer missing (apt-get install clang "
        . "libclang-rt-14-dev; conf/stack.sh deps): $out" if $?;
}

my @pure = qw(amount time ledger);
my @ngx  = qw(body auth redis);

# every harness has seeds, and its Makefile target
for my $n (@pure, @ngx) {
    my @seeds = glob("$root/t/fuzz/corpus/$n/*");
    ok(@seeds >= 3, "t/fuzz/corpus/$n has seeds (" . scalar(@seeds) . ')');
}

sub run_harness {
    my ($n) = @_;
    my $out = `'$root/t/fuzz/run.sh' -t $secs $n 2>&1`;
    my $rc = $? >> 8;
    my ($line) = $out =~ /^(\Q$n\E\s+(?:ok|FAIL).*)$/m;
    ok($rc == 0, "fuzz_$n: seeds and ${secs}s of fuzzing, no finding"
        . (defined $line ? " ($line)" : ''))
        or diag($out);
    my ($cov) = defined $line ? $line =~ /cov: (\d+)/ : ();
    ok(($cov // 0) > 0, "fuzz_$n reports its coverage");
}

run_harness($_) for @pure;

SKIP: {
    unless (-f "$ngx/objs/ngx_modules.o") {
        my $out = `'$root/docker/build-static.sh' all 2>&1`;
        skip "no static nginx tree to link (docker/build-static.sh failed: "
            . (split /\n/, $out)[-1] . ')', 2 * @ngx
            if $? || !-f "$ngx/objs/ngx_modules.o";
    }
    run_harness($_) for @ngx;
}

done_testing();
