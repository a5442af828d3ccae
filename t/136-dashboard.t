#!/usr/bin/perl
# The Grafana dashboard (k8s/monitoring/rbcs-dashboard.json) and the alert
# and recording rules (k8s/monitoring/rbcs-rules.yaml) against what a
# running instance exports, so that a renamed metric or label breaks the
# build instead of a dashboard:
#
#   - the dashboard is well formed: panels with ids, titles, places on the
#     24-column grid, targets with an expression, the data source a
#     variable, every template variable's query naming a real series;
#   - a real Prometheus scrapes a running instance (with the labels
#     namespace and pod, as a ServiceMonitor gives them) and loads the
#     rules: every rule evaluates without error, and every expression of
#     the dashboard and of the rules is accepted by its query API;
#   - every metric an expression names is on /metrics (or is a recording
#     rule of the rules file), every label it matches, groups or joins by
#     is a label of those metrics (or a target label), and every
#     {{label}} of a legend is one the query keeps;
#   - every metric family /metrics exports is on the dashboard.

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $dashboard_file = "$root/k8s/monitoring/rbcs-dashboard.json";
my $rules_file = "$root/k8s/monitoring/rbcs-rules.yaml";

my $prometheus = -x '/usr/bin/prometheus' ? '/usr/bin/prometheus' : undef;

# labels the scrape adds to every series: Prometheus's own, and those of a
# ServiceMonitor's target (set on the test's target below)
my %TARGET = map { $_ => 1 } qw(job instance namespace pod);

# --- the dashboard, as a document -----------------------------------------

my $dash = do {
    open(my $fh, '<:raw', $dashboard_file) or die "$dashboard_file: $!\n";
    local $/;
    my $s = <$fh>;
    eval { JSON::PP->new->utf8->decode($s) };
};
ok(ref $dash eq 'HASH', 'rbcs-dashboard.json is a JSON object') or BAIL_OUT($@);

ok(($dash->{uid} // '') =~ /^[\w-]{1,40}\z/, 'a uid');
ok(length($dash->{title} // ''), 'a title');
ok(($dash->{schemaVersion} // 0) >= 30, 'a schemaVersion of current Grafana');

my @vars = @{ $dash->{templating}{list} // [] };
my ($dsvar) = grep { $_->{type} eq 'datasource' && $_->{query} eq 'prometheus' } @vars;
ok($dsvar, 'a data source variable of type prometheus');
my $dsref = '${' . ($dsvar->{name} // 'datasource') . '}';

my (@exprs, %ids);    # [where, expression, legend]
my $bad_panels = 0;
for my $p (@{ $dash->{panels} // [] }) {
    my $where = "panel \"" . ($p->{title} // '?') . "\"";
    my $g = $p->{gridPos} // {};
    my @problems;
    push @problems, 'no id' unless defined $p->{id};
    push @problems, "id $p->{id} twice" if defined $p->{id} && $ids{ $p->{id} }++;
    push @problems, 'no title' unless length($p->{title} // '');
    push @problems, 'not on the grid'
        unless defined $g->{x} && defined $g->{y} && $g->{w} && $g->{h}
               && $g->{x} + $g->{w} <= 24;
    if (($p->{type} // '') ne 'row') {
        my @t = @{ $p->{targets} // [] };
        push @problems, 'no target' unless @t;
        push @problems, 'not on the data source variable'
            unless ($p->{datasource}{uid} // '') eq $dsref;
        my %ref;
        for my $t (@t) {
            push @problems, 'a target without expr' unless length($t->{expr} // '');
            push @problems, "refId $t->{refId} twice" if $ref{ $t->{refId} // '' }++;
            push @exprs, [ $where, $t->{expr}, $t->{legendFormat} ] if length($t->{expr} // '');
        }
    }
    $bad_panels++ if @problems;
    diag "$where: @problems" if @problems;
}
ok(keys %ids >= 10, scalar(keys %ids) . ' panels');
is($bad_panels, 0, 'every panel has an id, a title, a place, targets and the data source');

# template variables: label_values(METRIC{...}, LABEL)
my @label_values;
for my $v (grep { $_->{type} eq 'query' } @vars) {
    my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
    if ($q =~ /^label_values\((.+),\s*(\w+)\)\z/) {
        push @label_values, [ "variable $v->{name}", $1, $2 ];
    } else {
        fail("variable $v->{name}: a label_values() query ($q)");
    }
}
ok(@label_values >= 2, 'variables namespace and pod');

# --- PromQL, read far enough to name what it uses -------------------------

# Metric names with the labels matched on each, and the labels grouped,
# joined or kept by (by, without, on, ignoring, group_left/right); dies on
# what it cannot read.
my %KEYWORD = map { $_ => 1 }
    qw(and or unless by without on ignoring group_left group_right bool
       offset inf nan);
my %AGGREGATION = map { $_ => 1 }
    qw(sum min max avg group stddev stdvar count count_values bottomk topk
       quantile);

sub promql_names {
    my ($e) = @_;
    my @tok;
    while (1) {
        $e =~ s/^\s+//;
        last unless length $e;
        if ($e =~ s/^("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)//) {
            push @tok, [ 'str', $1 ];
        } elsif ($e =~ s/^\[[^\]]*\]//) {
            push @tok, [ 'range', '' ];
        } elsif ($e =~ s/^((?:\d+(?:ms|[smhdwy]))+)(?![\w:])//) {
            push @tok, [ 'duration', $1 ];
        } elsif ($e =~ s/^((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?![\w:])//i) {
            push @tok, [ 'num', $1 ];
        } elsif ($e =~ s/^([A-Za-z_:][\w:]*)//) {
            push @tok, [ 'id', $1 ];
        } elsif ($e =~ s/^(=~|!~|!=|==|>=|<=|[-+*\/%^(){},=<>])//) {
            push @tok, [ 'op', $1 ];
        } else {
            die "cannot read PromQL at: $e\n";
        }
    }

    my (%metrics, %grouped);
    my $matchers = sub {   # at '{': label names until '}'
        my ($i, $into) = @_;
        $i++;
        while ($i < @tok && $tok[$i][1] ne '}') {
            my ($l, $op, $v) = @tok[ $i .. $i + 2 ];
            die "a matcher expected\n"
                unless $l->[0] eq 'id' && $op && $op->[1] =~ /^(=|!=|=~|!~)\z/
                       && $v && $v->[0] eq 'str';
            $into->{ $l->[1] } = 1;
            $i += 3;
            $i++ if $i < @tok && $tok[$i][1] eq ',';
        }
        return $i;
    };
    for (my $i = 0; $i < @tok; $i++) {
        my ($t, $v) = @{ $tok[$i] };
        my $next = $tok[ $i + 1 ] ? $tok[ $i + 1 ][1] : '';
        if ($t eq 'id' && $KEYWORD{$v}) {
            if ($v =~ /^(by|without|on|ignoring|group_left|group_right)\z/
                && $next eq '(')
            {
                for ($i += 2; $i < @tok && $tok[$i][1] ne ')'; $i++) {
                    $grouped{ $tok[$i][1] } = 1 if $tok[$i][0] eq 'id';
                }
            }
        } elsif ($t eq 'id' && ($next eq '(' || $AGGREGATION{$v})) {
            # a function or an aggregation
        } elsif ($t eq 'id') {
            $metrics{$v} //= {};
            $i = $matchers->($i + 1, $metrics{$v}) if $next eq '{';
        } elsif ($t eq 'op' && $v eq '{') {
            die "a selector without a metric name\n";
        }
    }
    return (\%metrics, \%grouped);
}

# the reader itself, on what it must tell apart
{
    my ($m, $g) = promql_names('sum by (pod) (rate(a_total{x="1",y=~"b|c"}[5m]))'
        . ' / on (pod) group_left (z) max without (w) (b:rec) > bool 0.5'
        . ' unless histogram_quantile(0.9, c_bucket offset 5m)');
    is_deeply([ $m, $g ],
              [ { a_total => { x => 1, y => 1 }, 'b:rec' => {}, c_bucket => {} },
                { pod => 1, z => 1, w => 1 } ],
              'the PromQL reader finds metrics, matched labels and grouping labels');
}

# --- a running instance, and what it exports ------------------------------

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

$t->post_json('/accounts', { accountNumber => 'D1', initialBalance => '100.00' });
$t->post_json('/accounts', { accountNumber => 'D2' });
for my $i (1 .. 3) {
    $t->post_json('/accounts/transactions', {
        transactionId => "d-$i", sourceAccountNumber => 'D1',
        destinationAccountNumber => 'D2', amount => '1.00' });
}
$t->post_json('/accounts/transactions', {
    transactionId => 'd-poor', sourceAccountNumber => 'D2',
    destinationAccountNumber => 'D1', amount => '999.00' });
$t->get('/accounts/D1/balance') for 1 .. 3;
$t->get('/readyz');

my %scraped;      # series name => { label => 1 }
my %families;     # family name => type
RBCS::Test::wait_for(10, sub {
    my $body = $t->get('/metrics')->{body} // '';
    %scraped = ();
    %families = ();
    for (split /\n/, $body) {
        if (/^# TYPE (\S+) (\S+)$/) {
            $families{$1} = $2;
        } elsif (/^([A-Za-z_:][\w:]*)(?:\{(.*)\})? \S+$/) {
            my $labels = $scraped{$1} //= {};
            $labels->{$_} = 1 for ($2 // '') =~ /(\w+)="/g;
        }
    }
    ($scraped{rbcs_redis_subscribed} && keys %families > 20);
});
ok(keys %families > 20, scalar(keys %families) . ' metric families on /metrics');

# every family on the dashboard
my $all = join "\n", map { $_->[1] } @exprs;
my @missing = grep {
    my $f = $_;
    $all !~ /\b\Q$f\E(?:_bucket|_sum|_count)?\b/
} sort keys %families;
is(scalar @missing, 0, 'every metric family /metrics exports is on the dashboard')
    or diag "not on the dashboard: @missing";

# --- Prometheus, scraping it and evaluating the rules ---------------------

SKIP: {
    skip 'prometheus not installed (Debian package prometheus)', 5
        unless $prometheus;

    my $dir = tempdir(CLEANUP => 1);
    my $pport = RBCS::Test::free_port();
    my $pid = RBCS::Test::prometheus($prometheus, $dir, $pport, <<"YML");
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $rules_file
scrape_configs:
  - job_name: rbcs
    static_configs:
      - targets: ['127.0.0.1:${\ $t->port }']
        labels:
          namespace: rbcs-test
          pod: rbcs-test-0
YML

    # GET /api/v1/PATH?query=Q: the decoded answer, or undef
    my $api = sub { RBCS::Test::prometheus_api($pport, @_) };

    ok(RBCS::Test::wait_port($pport, 30), "Prometheus listens on 127.0.0.1:$pport")
        or diag(-s "$dir/prometheus.log"
                ? do { local (@ARGV, $/) = ("$dir/prometheus.log"); <> }
                : 'no prometheus.log');

    # scraped twice (rates need two samples), and every rule evaluated
    my $rules;
    my $t0 = time;
    while (time - $t0 < 30) {
        my $n = $api->('query', 'count_over_time(up{job="rbcs",pod="rbcs-test-0"}[1m])');
        $rules = $api->('rules');
        my @r = map { @{ $_->{rules} } } @{ $rules->{data}{groups} // [] };
        last if $n && @{ $n->{data}{result} // [] }
                && $n->{data}{result}[0]{value}[1] >= 3
                && @r && !grep { !$_->{lastEvaluation}
                                 || $_->{lastEvaluation} =~ /^0001-/ } @r;
        sleep 0.5;
    }
    my @rules = map { @{ $_->{rules} } } @{ $rules->{data}{groups} // [] };
    ok(@rules >= 20, scalar(@rules) . ' rules loaded from rbcs-rules.yaml');
    my @broken = grep { ($_->{health} // '') ne 'ok' } @rules;
    is(scalar @broken, 0, 'every rule evaluates without error')
        or diag join "\n", map { "$_->{name}: " . ($_->{lastError} // $_->{health} // '?') } @broken;

    my %recorded;   # recording rule name => labels it keeps
    for my $r (grep { $_->{type} eq 'recording' } @rules) {
        my (undef, $grouped) = eval { promql_names($r->{query}) };
        $recorded{ $r->{name} } = { %{ $grouped // {} }, %{ $r->{labels} // {} } };
    }
    push @exprs, map { [ "rule $_->{name}", $_->{query}, undef ] } @rules;

    # every expression: Prometheus accepts it; the names it uses exist
    my @problems;
    for my $x (@exprs) {
        my ($where, $e, $legend) = @$x;
        (my $q = $e) =~ s/\$__(?:rate_)?interval\b/1m/g;
        $q =~ s/\$\{?(\w+)\}?/.*/g;
        my $res = $api->('query', $q);
        if (!$res || ($res->{status} // '') ne 'success') {
            push @problems, "$where: Prometheus refuses $q: "
                . ($res ? $res->{error} // '?' : 'no answer');
            next;
        }
        my ($metrics, $grouped) = eval { promql_names($q) };
        if (!$metrics) {
            push @problems, "$where: $@";
            next;
        }
        my %known = %TARGET;
        for my $m (sort keys %$metrics) {
            my $has = $scraped{$m} // $recorded{$m};
            if (!$has) {
                push @problems, "$where: $m is not on /metrics nor a recording rule";
                next;
            }
            my %l = (%TARGET, %$has);
            $known{$_} = 1 for keys %l;
            push @problems, "$where: $m has no label $_"
                for grep { !$l{$_} } sort keys %{ $metrics->{$m} };
        }
        push @problems, "$where: no metric has the label $_ it groups by"
            for grep { !$known{$_} } sort keys %$grouped;
        if (defined $legend) {
            my %kept = %$grouped ? %$grouped : %known;
            push @problems, "$where: legend {{$_}} is not a label it keeps"
                for grep { !$kept{$_} } $legend =~ /\{\{\s*(\w+)\s*\}\}/g;
        }
    }
    for my $lv (@label_values) {
        my ($where, $sel, $label) = @$lv;
        (my $q = $sel) =~ s/\$\{?(\w+)\}?/.*/g;
        my ($metrics) = eval { promql_names($q) };
        my ($m) = keys %{ $metrics // {} };
        if (!$m || !$scraped{$m}) {
            push @problems, "$where: " . ($m // $sel) . ' is not on /metrics';
        } elsif (!$TARGET{$label} && !$scraped{$m}{$label}) {
            push @problems, "$where: $m has no label $label";
        }
    }
    is(scalar @problems, 0, scalar(@exprs) . ' expressions of the dashboard and the'
       . ' rules: accepted by Prometheus, naming only what /metrics exports')
        or diag join "\n", @problems;

    kill 'TERM', $pid;
    waitpid($pid, 0);
}

done_testing();
