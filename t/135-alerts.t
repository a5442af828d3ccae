#!/usr/bin/perl
# The alert rules that come with the service (k8s/monitoring/rbcs-rules.yaml):
#
#   - promtool check rules accepts them;
#   - promtool test rules passes their unit tests
#     (k8s/monitoring/rbcs-rules.test.yaml);
#   - every alert has a severity, a summary, a description and a
#     runbook_url that points to its own section of docs/runbook.md, and
#     every section under "Alerts" there is an alert's;
#   - every alert has a test where it fires and one where it must not;
#   - and those tests catch a broken rule: with an alert's expression
#     replaced by one that never fires, its unit tests fail where it should
#     have fired; replaced by one that always fires, they fail where it
#     should have stayed quiet.
#
# No server: promtool only (Debian package prometheus).

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $mon = "$root/k8s/monitoring";
my $rules_file = "$mon/rbcs-rules.yaml";
my $tests_file = "$mon/rbcs-rules.test.yaml";
my $runbook = "$root/docs/runbook.md";

my $promtool = -x '/usr/bin/promtool' ? '/usr/bin/promtool' : undef;
plan skip_all => 'promtool not installed (Debian package prometheus)'
    unless $promtool;

sub slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or die "$f: $!\n";
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub spew {
    my ($f, $s) = @_;
    open(my $fh, '>', $f) or die "$f: $!\n";
    print $fh $s;
    close $fh or die "$f: $!\n";
}

sub run {   # run(DIR, CMD...): (exit status, stdout + stderr), run in DIR
    my ($dir, @cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        chdir $dir or do { print "chdir $dir: $!\n"; exit 127 };
        exec { $cmd[0] } @cmd or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# --- promtool --------------------------------------------------------------

my ($rc, $out) = run($mon, $promtool, 'check', 'rules', 'rbcs-rules.yaml');
is($rc, 0, 'promtool check rules accepts rbcs-rules.yaml') or diag $out;
like($out, qr/SUCCESS: \d+ rules found/, 'and finds its rules');

($rc, $out) = run($mon, $promtool, 'test', 'rules', 'rbcs-rules.test.yaml');
is($rc, 0, 'promtool test rules: the unit tests pass') or diag $out;

# --- the rules, as written ------------------------------------------------

# One alert rule: the lines from "- alert:" to the next rule or group.  The
# rules file is written with one key a line and expressions as block
# scalars, which is all this reader understands.
my $rules = slurp($rules_file);
my %alert;
my @alerts;
while ($rules =~ /^( +)- alert: (\S+)\n((?:\1  .*\n|\n)*)/mg) {
    my ($name, $body) = ($2, $3);
    push @alerts, $name;
    $alert{$name} = $body;
}
ok(@alerts >= 15, scalar(@alerts) . ' alerts in rbcs-rules.yaml');

my $text = slurp($runbook);
my ($alerts_part) = $text =~ /^## Alerts\n(.*?)(?=^## |\z)/ms;
ok(defined $alerts_part, 'docs/runbook.md has a section "Alerts"');
$alerts_part //= '';

sub slug {   # a heading's anchor, as GitHub makes it
    my ($h) = @_;
    $h = lc $h;
    $h =~ s/[^\w\- ]//g;
    $h =~ s/ /-/g;
    return $h;
}

my %sections = map { slug($_) => $_ } $alerts_part =~ /^### (.+?)\s*$/mg;
my %anchors = map { slug($_) => 1 } $text =~ /^#+ (.+?)\s*$/mg;

for my $name (@alerts) {
    my $b = $alert{$name};
    like($b, qr/^\s+severity: (critical|warning)$/m, "$name: severity critical or warning");
    like($b, qr/^\s+summary: \S/m, "$name: a summary");
    like($b, qr/^\s+description: \S/m, "$name: a description");
    my ($url) = $b =~ /^\s+runbook_url: (\S+)$/m;
    my ($file, $anchor) = ($url // '') =~ m{^docs/runbook\.md#(\S+)$} ? ('', $1) : ();
    ok(defined $anchor && $anchors{$anchor} && $sections{$anchor}
       && $sections{$anchor} eq $name,
       "$name: runbook_url points to its section in docs/runbook.md")
        or diag "runbook_url " . ($url // 'missing') . "; sections: "
                . join(', ', sort keys %sections);
}

my %named = map { $_ => 1 } @alerts;
is_deeply([ grep { !$named{$_} } sort values %sections ], [],
          'every section under "Alerts" in the runbook is an alert\'s');

# --- the unit tests --------------------------------------------------------

# Test groups ("  - interval:") and, in each, the evaluations of one alert:
# "alertname: X" followed by "exp_alerts: []" (must stay quiet) or by a
# list (must fire).
my $tests = slurp($tests_file);
my ($head, @groups) = split /^(?=  - interval:)/m, $tests;
my (%fires, %quiet, %groups_of);
for my $i (0 .. $#groups) {
    while ($groups[$i] =~ /^\s+alertname: (\S+)\n\s+exp_alerts:(.*)$/mg) {
        my ($name, $rest) = ($1, $2);
        $groups_of{$name}{$i} = 1;
        if ($rest =~ /^\s*\[\]\s*$/) {
            $quiet{$name}++;
        } else {
            $fires{$name}++;
        }
    }
}
for my $name (@alerts) {
    ok($fires{$name}, "$name: a unit test where it fires");
    ok($quiet{$name}, "$name: a unit test where it must not");
}
is_deeply([ grep { !$named{$_} } sort keys %groups_of ], [],
          'the unit tests name no alert the rules lack');

# --- the unit tests catch a broken rule ------------------------------------

# The alert's expression replaced, and only its test groups run (the rule
# files it needs are all there): promtool must fail, at an evaluation of
# that alert where it should have fired (never) or stayed quiet (always).
my $tmp = tempdir('rbcs-alerts-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub mutate {   # mutate(NAME, EXPR): the rules with NAME's expr replaced
    my ($name, $expr) = @_;
    my $r = $rules;
    $r =~ s/^( +- alert: \Q$name\E\n +expr: )\|\n(?:( +).*\n)(?:\2.*\n)*/$1$expr\n/m
        or die "no expression of $name";
    return $r;
}

for my $name (@alerts) {
    my @mine = map { $groups[$_] } sort { $a <=> $b } keys %{ $groups_of{$name} || {} };
    next unless @mine;
    spew("$tmp/rbcs-rules.test.yaml", join '', $head, @mine);

    spew("$tmp/rbcs-rules.yaml", mutate($name, 'vector(0) > 1'));
    my ($rc, $out) = run($tmp, $promtool, 'test', 'rules', 'rbcs-rules.test.yaml');
    ok($rc != 0 && $out =~ /alertname: \Q$name\E, time: \S+,\s*exp:\[\s*0:/,
       "$name never firing: its unit tests fail where it should fire")
        or diag $out;

    spew("$tmp/rbcs-rules.yaml", mutate($name, 'vector(1)'));
    ($rc, $out) = run($tmp, $promtool, 'test', 'rules', 'rbcs-rules.test.yaml');
    ok($rc != 0 && $out =~ /alertname: \Q$name\E, time: \S+,\s*exp:\[\],/,
       "$name always firing: its unit tests fail where it must not fire")
        or diag $out;
}

done_testing();
