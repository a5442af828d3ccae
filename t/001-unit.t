#!/usr/bin/perl

# Runs the C unit test binaries of build/unit/ and passes their TAP through
# as one Test::More subtest per binary (the cmocka ones print TAP with
# CMOCKA_MESSAGE_OUTPUT=TAP; their failure messages, on stderr, are shown as
# diagnostics).  Builds nothing: build them first
#
#     make -f t/unit/Makefile && prove t/001-unit.t
#
# test_amount and test_time are required (skip_all if one is missing);
# any other executable build/unit/test_* (e.g. test_json, built by
# t/unit/Makefile.json) is run as well.  A binary fails its subtest if a
# test fails, if the number of tests differs from its plan, if it prints
# "Bail out!", or if it exits with a non-zero status or a signal.
#
# RBCS_UNIT_DIR names another directory to take the binaries from (make
# coverage: build/coverage/unit, built with --coverage).

use strict;
use warnings;

use File::Basename qw(basename);
use File::Spec;
use FindBin;
use POSIX ();
use Test::More;

our $TODO;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin,
                                                  File::Spec->updir));
my $dir = File::Spec->catdir($root, 'build', 'unit');
$dir = $ENV{RBCS_UNIT_DIR} if defined $ENV{RBCS_UNIT_DIR} && length $ENV{RBCS_UNIT_DIR};

my @required = qw(test_amount test_time);

my @missing = grep { !-f "$dir/$_" || !-x _ } @required;

plan skip_all => "unit test binaries not built: "
    . join(', ', map { ($ENV{RBCS_UNIT_DIR} ? "$dir/" : "build/unit/") . $_ } @missing)
    . " (run 'make -f t/unit/Makefile' from the repository root)"
    if @missing;

$ENV{CMOCKA_MESSAGE_OUTPUT} = 'TAP';

my %seen = map { $_ => 1 } @required;
my @extra = sort grep { !$seen{$_} }
            map { basename($_) } grep { -f $_ && -x _ } glob("$dir/test_*");

for my $name (@required, @extra) {
    subtest $name => sub { run_tap("$dir/$name") };
}

done_testing();


sub run_tap {
    my ($bin) = @_;

    my $pid = open(my $fh, '-|');

    if (!defined $pid) {
        fail("fork for $bin: $!");
        return;
    }

    if ($pid == 0) {
        no warnings 'exec';
        open(STDERR, '>&', \*STDOUT);
        exec { $bin } $bin;
        print "Bail out! cannot run $bin: $!\n";
        POSIX::_exit(127);
    }

    my ($planned, $count, $last_failed, @problems) = (undef, 0, 0);

    while (my $line = <$fh>) {
        chomp $line;

        if ($line =~ /^1\.\.(\d+)/) {
            push @problems, "more than one plan" if defined $planned;
            $planned = $1;

        } elsif ($line =~ /^(not )?ok\b\s*(\d*)\s*(?:-\s*)?(.*)$/) {
            my ($not, $num, $rest) = ($1, $2, $3);

            $count++;

            push @problems, "test number $num out of sequence (expected"
                . " $count)" if length $num && $num != $count;

            my ($desc, $directive, $reason) = ($rest, '', '');

            if ($rest =~ /^(.*?)\s*(?<!\\)#\s*(SKIP|TODO)\S*\s*(.*)$/i) {
                ($desc, $directive, $reason) = ($1, uc $2, $3);
            }

            $desc =~ s/\\([#\\])/$1/g;
            $last_failed = $not && $directive eq '' ? 1 : 0;

            if ($directive eq 'SKIP') {
                SKIP: { skip($reason || $desc, 1) }

            } elsif ($directive eq 'TODO') {
                TODO: {
                    local $TODO = $reason || 'todo';
                    ok(!$not, $desc);
                }

            } else {
                ok(!$not, $desc);
            }

        } elsif ($line =~ /^Bail out!\s*(.*)$/) {
            push @problems, "bailed out: $1";

        } elsif ($line =~ /^#\s?(.*)$/) {
            # comments after a failed test explain it, others are notes
            $last_failed ? diag($1) : note($1);

        } elsif ($line =~ /\S/) {
            diag($line);
        }
    }

    close($fh);

    my $status = $?;

    if ($status & 127) {
        push @problems, "killed by signal " . ($status & 127);

    } elsif ($status >> 8) {
        push @problems, "exit status " . ($status >> 8);
    }

    if (!defined $planned) {
        push @problems, "no plan";

    } elsif ($planned != $count) {
        push @problems, "planned $planned tests, ran $count";
    }

    ok(!@problems, basename($bin) . ": complete TAP, exit status 0")
        or diag(join("\n", @problems));
}
