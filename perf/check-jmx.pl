#!/usr/bin/perl

# perf/check-jmx.pl - check that the JMeter plan perf/jmeter/rbcs.jmx is
# well-formed and in step with the wrk scenarios.
#
#   perf/check-jmx.pl [plan.jmx]          (from anywhere; exit 0: all good)
#
# No JMeter is needed (Debian's jmeter 2.13 cannot load JMeter 5 plans on
# bookworm).  Core Perl only; xmllint (libxml2-utils) is used as a second
# opinion on well-formedness when it is installed.  It checks that the plan
# is well-formed XML with JMeter's element/<hashTree> pairing, and has one
# enabled thread group per wrk scenario (perf/wrk/*.lua with a
# "-- scenario: NAME" line), and none other, with the same parameters
# (every env("NAME", "default") of the Lua is a variable NAME of the plan,
# ${__P(name,default)}; the port, duration and thread counts the defaults
# of perf/lib.sh and perf/run-all.sh), the same routes, methods, headers
# and JSON bodies as perf/wrk/common.lua builds them, and the same
# behaviour (hot accounts, the rate timer, the mix and card switches,
# holds, deposits from PREFIX-EXT, captures and voids of the hold before).
# Each failure message says what was expected.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;

my $perf = File::Spec->rel2abs(dirname(__FILE__));
my $plan = shift // "$perf/jmeter/rbcs.jmx";

my @problems;
my $checks = 0;

# the prototype gives both arguments scalar context: a failed match is
# false, not an empty list
sub check ($$) {
    my ($ok, $what) = @_;
    $checks++;
    push @problems, $what unless $ok;
    return $ok;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!\n";
    local $/;
    my $t = <$fh>;
    close $fh;
    return $t;
}

# ------------------------------------------------------------ XML parser --

my %ENT = (amp => '&', lt => '<', gt => '>', quot => '"', apos => "'");

sub decode {
    my ($s, $where) = @_;
    $s =~ s{&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z]+);|(&)}{
        defined $2 ? die "bare '&' $where\n"
        : substr($1, 0, 2) eq '#x' ? chr(hex substr($1, 2))
        : substr($1, 0, 1) eq '#' ? chr(substr($1, 1))
        : exists $ENT{$1} ? $ENT{$1} : die "unknown entity &$1; $where\n"
    }ge;
    return $s;
}

# parse_xml(TEXT): the root element as { name, attrs, kids => [...], text },
# or die with a line number
sub parse_xml {
    my ($t) = @_;
    my $doc = { name => '#document', kids => [], text => '' };
    my @stack = ($doc);
    my $line = sub { my $p = shift; 1 + (substr($t, 0, $p) =~ tr/\n//) };
    my $roots = 0;

    $t =~ s/\A\x{FEFF}//;
    $t =~ /\G<\?xml\s[^?]*\?>/gc;

    while ((pos($t) // 0) < length $t) {
        my $at = pos($t) // 0;
        my $where = "at line " . $line->($at);

        if ($t =~ /\G<!--(.*?)-->/gcs) {
            die "'--' inside a comment $where\n" if $1 =~ /--/;

        } elsif ($t =~ /\G<!\[CDATA\[(.*?)\]\]>/gcs) {
            die "text outside the root element $where\n" if @stack == 1;
            $stack[-1]{text} .= $1;

        } elsif ($t =~ /\G<[!?]/gc) {
            die "unexpected declaration or processing instruction $where\n";

        } elsif ($t =~ /\G<\/([A-Za-z_][\w.:-]*)\s*>/gc) {
            die "closing </$1> without an open element $where\n" if @stack == 1;
            die "closing </$1> does not match <$stack[-1]{name}> $where\n"
                if $stack[-1]{name} ne $1;
            pop @stack;

        } elsif ($t =~ /\G<([A-Za-z_][\w.:-]*)/gc) {
            my $e = { name => $1, attrs => {}, kids => [], text => '',
                      line => $line->($at) };
            while ($t =~ /\G\s+([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/gc) {
                die "attribute $1 twice $where\n" if exists $e->{attrs}{$1};
                $e->{attrs}{$1} = decode($2 // $3, $where);
            }
            $t =~ /\G\s*(\/?)>/gc or die "malformed tag <$e->{name}> $where\n";
            my $empty = $1;
            die "a second root element <$e->{name}> $where\n"
                if @stack == 1 && $roots++;
            push @{ $stack[-1]{kids} }, $e;
            push @stack, $e unless $empty;

        } elsif ($t =~ /\G([^<]+)/gc) {
            my $text = $1;
            if (@stack == 1) {
                die "text outside the root element $where\n" if $text =~ /\S/;
            } else {
                $stack[-1]{text} .= decode($text, $where);
            }

        } else {
            die "unexpected '<' $where\n";
        }
    }

    die "unclosed <$stack[-1]{name}> (opened at line $stack[-1]{line})\n"
        if @stack > 1;
    die "no root element\n" unless $roots;
    return $doc->{kids}[0];
}

# ------------------------------------------------------------ JMeter tree --

# JMeter pairs every test element with the <hashTree> that follows it,
# which holds the element's children.
sub pairs_of {
    my ($ht) = @_;
    my @k = @{ $ht->{kids} };
    my @p;
    for (my $i = 0; $i < @k; $i++) {
        my $e = $k[$i];
        die "<$e->{name}> at line $e->{line}: a test element was expected, "
          . "not a <hashTree>\n" if $e->{name} eq 'hashTree';
        my $h = $k[$i + 1];
        die "<$e->{name}> at line $e->{line} is not followed by its <hashTree>\n"
            unless $h && $h->{name} eq 'hashTree';
        push @p, [ $e, $h ];
        $i++;
    }
    return @p;
}

sub prop {   # prop(ELEMENT, NAME): the text of its *Prop named NAME
    my ($e, $name) = @_;
    for my $k (@{ $e->{kids} }) {
        return $k->{text} if $k->{name} =~ /Prop$/ && ($k->{attrs}{name} // '') eq $name;
    }
    return undef;
}

sub find_all {   # every descendant element named NAME
    my ($e, $name) = @_;
    my @r;
    for my $k (@{ $e->{kids} }) {
        push @r, $k if $k->{name} eq $name;
        push @r, find_all($k, $name);
    }
    return @r;
}

sub enabled { ($_[0]{attrs}{enabled} // 'true') eq 'true' }

# the elements that configure the samplers in their scope: header managers
# and HTTP Request Defaults
sub config { $_[0]{name} eq 'HeaderManager' || $_[0]{name} eq 'ConfigTestElement' }

# walk(HASHTREE, CONTEXT, CALLBACK): every enabled test element with the
# config elements in its scope (CONTEXT: those of the levels above)
sub walk {
    my ($ht, $headers, $cb, @path) = @_;
    my @pairs = grep { enabled($_->[0]) } pairs_of($ht);
    my @h = (@$headers, grep { config($_->[0]) } @pairs);
    for my $p (@pairs) {
        my ($e, $sub) = @$p;
        my @own = grep { config($_->[0]) && enabled($_->[0]) } pairs_of($sub);
        $cb->($e, [ map { $_->[0] } @h, @own ], @path);
        walk($sub, \@h, $cb, @path, $e);
    }
}

# ------------------------------------------------------------- the sources --

my $common = slurp("$perf/wrk/common.lua");
my $libsh = slurp("$perf/lib.sh");
my $runall = slurp("$perf/run-all.sh");

my (%scenario, %env);
for my $f (sort glob("$perf/wrk/*.lua")) {
    my $src = slurp($f);
    if ($src =~ /^--\s*scenario:\s*([A-Za-z0-9_-]+)\s*$/m) {
        $scenario{$1} = $src;
    }
    while ($src =~ /\benv\(\s*"([A-Z_][A-Z0-9_]*)"\s*(?:,\s*("[^"]*"|[^)]*?))?\s*\)/g) {
        my ($name, $def) = ($1, $2);
        my $d = defined $def && $def =~ /^"(.*)"$/ ? $1 : undef;   # literal
        push @{ $env{$name} }, [ $d, $f =~ s{.*/}{}r ];
    }
    while ($src =~ /os\.getenv\(\s*"([A-Z_][A-Z0-9_]*)"\s*\)/g) {
        $env{$1} //= [];
    }
}

my ($perf_port) = $libsh =~ /^PERF_PORT="\$\{PERF_PORT:-(\d+)\}"/m;
my ($duration) = $runall =~ /^DEFAULT_DURATION=(\d+)s$/m;
my ($conns) = $runall =~ /^DEFAULT_CONNECTIONS="([\d ]+)"$/m;

check(scalar(keys %scenario) >= 5,
      "perf/wrk: expected at least the five scenarios, found: "
      . join(', ', sort keys %scenario));
check(defined $perf_port, "perf/lib.sh: no PERF_PORT default");
check(defined $duration, "perf/run-all.sh: no DURATION default (in seconds)");
check(defined $conns, "perf/run-all.sh: no CONNECTIONS default");
$conns //= '';
my %conn = map { $_ => 1 } split ' ', $conns;

# the request shapes wrk sends (perf/wrk/common.lua)
my %route = (
    balance  => qr{^\$\{BASE\}/accounts/\$\{(\w+)\}/balance$},
    transfer => qr{^\$\{BASE\}/accounts/transactions$},
    resolve  => qr{^\$\{BASE\}/accounts/transactions/\$\{(\w+)\}/(capture|void)$},
);
# what the plan copies from common.lua, in common.lua's words
for my $said ('M.base .. "/accounts/" .. M.account(i) .. "/balance"',
              'wrk.format("GET", M.base', 'string.format("%s-%06d", M.prefix',
              'wrk.format("POST", M.base .. "/accounts/transactions"',
              (map { "M.base .. \"/accounts/transactions/\" .. id .. \"/$_\"" } qw(capture void)),
              q(',"hold":true'), q(',"expiresIn":%d'), 'M.external = M.prefix .. "-EXT"') {
    check(index($common, $said) >= 0,
          "common.lua: no $said any more: update the plan and this check");
}
my ($lua_body) = $common =~ /local body = string\.format\(\s*'(.*?)'\s*\.\.\s*'(.*?)',/s
    ? ("$1$2") : ();
check(defined $lua_body, 'common.lua: no transfer body format found');
my @body_keys = defined $lua_body ? ($lua_body =~ /"(\w+)":/g) : ();

# ------------------------------------------------------------- the plan --

my $xml = eval { slurp($plan) };
check(defined $xml, "cannot read $plan: $@");

my $root;
if (defined $xml) {
    $root = eval { parse_xml($xml) };
    check(defined $root, "$plan is not well-formed XML: $@");
}

if (defined $xml && -x '/usr/bin/xmllint') {
    my $out = `/usr/bin/xmllint --noout '$plan' 2>&1`;
    check($? == 0, "xmllint: $out");
}

if ($root) {
    check($root->{name} eq 'jmeterTestPlan', "root element is <$root->{name}>, not <jmeterTestPlan>");
    check(($root->{attrs}{version} // '') eq '1.2', 'jmeterTestPlan version is not "1.2"');
    check(($root->{attrs}{properties} // '') eq '5.0', 'jmeterTestPlan properties is not "5.0"');
    my ($top) = grep { $_->{name} eq 'hashTree' } @{ $root->{kids} };
    eval { check_plan($top) };
    check(!$@, "$plan: $@") if $@;
}

sub check_plan {
    my ($top) = @_;
    my @tp = pairs_of($top);
    check(@tp == 1 && $tp[0][0]{name} eq 'TestPlan', 'the plan has not exactly one TestPlan');
    my ($tp, $tree) = @{ $tp[0] };
    check((prop($tp, 'TestPlan.serialize_threadgroups') // '') eq 'true',
          'TestPlan.serialize_threadgroups is not true (scenarios would run at the same time)');

    # user-defined variables
    my %udv;
    for my $a (find_all($tp, 'elementProp')) {
        next unless ($a->{attrs}{elementType} // '') eq 'Argument';
        $udv{ prop($a, 'Argument.name') // '' } = prop($a, 'Argument.value') // '';
    }

    my %exempt = (CONNS => 1, THREADS => 1);
    for my $name (sort keys %env) {
        next if $exempt{$name};
        my @d = @{ $env{$name} };
        my %defs = map { (defined $_->[0] ? $_->[0] : '(computed)') => 1 } @d;
        check(keys(%defs) <= 1, "$name has different defaults in the wrk scripts: "
              . join(', ', map { (defined $_->[0] ? "\"$_->[0]\"" : 'computed') . " in $_->[1]" } @d));
        my $prop = lc $name;
        my $v = $udv{$name};
        if (!check(defined $v, "the plan has no variable $name (wrk scripts read \$$name)")) {
            next;
        }
        if ($name eq 'RUN_ID') {
            check($v =~ /^\$\{__P\(run_id,.+\)\}$/, "RUN_ID is not \${__P(run_id,...)}: $v");
            next;
        }
        my ($def) = keys %defs;
        check($v eq "\${__P($prop,$def)}",
              "$name is '$v' in the plan, wrk's default is \"$def\": expected \${__P($prop,$def)}");
    }
    for my $u ([ HOST => '127.0.0.1', '' ],
               [ PORT => $perf_port, ' (PERF_PORT of perf/lib.sh)' ],
               [ DURATION => $duration, ' (perf/run-all.sh DURATION)' ]) {
        my ($name, $def, $from) = @$u;
        my $want = '${__P(' . lc($name) . ',' . ($def // '?') . ')}';
        check(defined $def && ($udv{$name} // '') eq $want, "$name is not $want$from");
    }

    # account numbers and ids
    my @pre = grep { $_->{name} eq 'JSR223PreProcessor' } map { $_->[0] } pairs_of($tree);
    my $script = join "\n", map { prop($_, 'script') // '' } @pre;
    # accounts formatted as wrk does, every variable set, the previous
    # sampler's id kept, the EXTERNAL account PREFIX-EXT
    for my $said ("String.format('%s-%06d'", (map { "vars.put('$_'" }
                      qw(account hot_account src dst hot_src hot_dst txid prev_txid
                         external hold_expiry card_expiry)),
                  "vars.put('prev_txid', vars.get('txid')", "vars.put('external', p + '-EXT')") {
        check(index($script, $said) >= 0, "the plan-level JSR223 PreProcessor has no $said");
    }

    # thread groups
    my %tg;
    for my $p (pairs_of($tree)) {
        my ($e, $sub) = @$p;
        next unless $e->{name} eq 'ThreadGroup';
        next unless enabled($e);
        my $n = $e->{attrs}{testname} // '';
        check(!$tg{$n}, "two thread groups named '$n'");
        $tg{$n} = [ $e, $sub ];
    }
    for my $s (sort keys %scenario) {
        check($tg{$s}, "no thread group for the wrk scenario $s");
    }
    for my $n (sort keys %tg) {
        check($scenario{$n}, "thread group '$n' has no wrk scenario perf/wrk/$n.lua");
        next unless $scenario{$n};
        check_group($n, @{ $tg{$n} },
                    [ grep { config($_->[0]) && enabled($_->[0]) } pairs_of($tree) ]);
    }
}

sub check_group {
    my ($n, $tg, $tree, $plan_config) = @_;
    my $lua = $scenario{$n};

    check((prop($tg, 'ThreadGroup.scheduler') // '') eq 'true', "$n: scheduler is off");
    check((prop($tg, 'ThreadGroup.duration') // '') eq '${DURATION}', "$n: duration is not \${DURATION}");
    my ($lc) = grep { ($_->{attrs}{name} // '') eq 'ThreadGroup.main_controller' } @{ $tg->{kids} };
    check($lc && (prop($lc, 'LoopController.loops') // '') eq '-1', "$n: does not loop until the duration ends");
    my $threads = prop($tg, 'ThreadGroup.num_threads') // '';
    if (check($threads =~ /^\$\{__P\(threads\.\Q$n\E,\$\{__P\(threads,(\d+)\)\}\)\}$/,
              "$n: threads are not \${__P(threads.$n,\${__P(threads,N)})}: $threads")) {
        check($conn{$1}, "$n: default threads $1 is not one of perf/run-all.sh's CONNECTIONS ($conns)");
    }

    my (@get, @post, @deposit, @hold, %resolve, %seen);
    my $lua_card = $lua =~ /rbcs\.card_amount/;
    walk($tree, $plan_config, sub {
        my ($e, $headers) = @_;
        $seen{ $e->{name} }++;
        if ($e->{name} eq 'ConstantThroughputTimer') {
            check((prop($e, 'throughput') // '') eq '${__jexl3(${RATE} * 60)}',
                  "$n: the Constant Throughput Timer is not \${RATE} per second");
            check((prop($e, 'calcMode') // '') eq '4',
                  "$n: the Constant Throughput Timer is not shared by the thread group (calcMode 4)");
        }
        if ($e->{name} eq 'SwitchController') {
            my $v = prop($e, 'SwitchController.value') // '';
            if ($lua =~ /card_void_pct/) {
                check($v =~ /CARD_VOID_PCT/ && $v =~ /CARD_PARTIAL_PCT/,
                      "$n: the switch does not choose by CARD_VOID_PCT and CARD_PARTIAL_PCT");
            } else {
                check($v =~ /READ_PCT/, "$n: the switch does not choose by READ_PCT");
            }
        }
        return unless $e->{name} eq 'HTTPSamplerProxy';
        my $m = prop($e, 'HTTPSampler.method') // '';
        my $path = prop($e, 'HTTPSampler.path') // '';
        my $label = "$n: sampler '" . ($e->{attrs}{testname} // '') . "'";
        # the sampler's own value, else that of the nearest HTTP Request
        # Defaults in scope, as JMeter merges them
        my $http = sub {
            my ($v) = grep { defined && length } map { prop($_, "HTTPSampler.$_[0]") }
                $e, reverse grep { $_->{name} eq 'ConfigTestElement' } @$headers;
            return $v // '';
        };
        check($http->('domain') eq '${HOST}', "$label: domain is not \${HOST}");
        check($http->('port') eq '${PORT}', "$label: port is not \${PORT}");
        if ($m eq 'GET') {
            if (check($path =~ $route{balance}, "$label: GET $path is not \${BASE}/accounts/\${...}/balance")) {
                my $var = $1;
                check($n =~ /hot/ ? $var eq 'hot_account' : $var eq 'account',
                      "$label: reads \${$var}, not the scenario's accounts");
            }
            push @get, $e;
        } elsif ($m eq 'POST') {
            check((prop($e, 'HTTPSampler.postBodyRaw') // '') eq 'true', "$label: the body is not raw");
            my ($arg) = grep { ($_->{attrs}{elementType} // '') eq 'HTTPArgument' } find_all($e, 'elementProp');
            my $body = $arg ? prop($arg, 'Argument.value') // '' : '';
            my $ct = grep {
                my $h = $_;
                grep { (prop($_, 'Header.name') // '') =~ /^content-type$/i
                       && (prop($_, 'Header.value') // '') eq 'application/json' }
                     find_all($h, 'elementProp')
            } @$headers;
            check($ct, "$label: no Content-Type: application/json header");
            if (my ($idvar, $kind) = $path =~ $route{resolve}) {
                # a capture or void of the hold the sampler before made
                check($idvar eq 'prev_txid', "$label: resolves \${$idvar}, not the hold before it (\${prev_txid})");
                check(@hold, "$label: no hold sampler before this $kind");
                if ($body eq '{}') {
                    push @{ $resolve{$kind} }, $e;
                } elsif ($kind eq 'capture' && $body eq '{"amount":"${AMOUNT}"}') {
                    push @{ $resolve{partial} }, $e;
                } else {
                    check(0, "$label: body '$body' is not {} (or {\"amount\":\"\${AMOUNT}\"} for a capture)");
                }
                return;
            }
            check($path =~ $route{transfer}, "$label: POST $path is not \${BASE}/accounts/transactions"
                  . " or \${BASE}/accounts/transactions/\${prev_txid}/capture|void");
            my $hold = $body =~ s/,"hold":true(\$\{(\w+)\})?\}\z/}/;
            my $expiry = $2;
            my @keys = $body =~ /"(\w+)":/g;
            check("@keys" eq "@body_keys", "$label: body keys (@keys"
                  . ($hold ? ' hold' : '') . ") are not wrk's (@body_keys" . ($hold ? ' hold' : '') . ")");
            my $amount = $hold && $lua_card ? 'CARD_AMOUNT' : 'AMOUNT';
            check($body =~ /"amount":"\$\{$amount\}"/, "$label: amount is not \${$amount}");
            check($body =~ /"transactionId":"\$\{txid\}"/, "$label: transactionId is not \${txid}");
            my ($src, $dst) = $body =~ /"sourceAccountNumber":"\$\{(\w+)\}".*"destinationAccountNumber":"\$\{(\w+)\}"/;
            my $want = $n =~ /hot/ ? 'hot_src hot_dst' : $n eq 'deposit' ? 'external dst' : 'src dst';
            check(defined $src && "$src $dst" eq $want,
                  "$label: accounts \${" . ($src // '?') . "}, \${" . ($dst // '?') . "} are not the scenario's");
            if ($hold) {
                my $x = $lua_card ? 'card_expiry' : 'hold_expiry';
                check(($expiry // '') eq $x, "$label: a hold without \${$x} (its \"expiresIn\" member) at the end");
                push @hold, $e;
            } elsif (($src // '') eq 'external') {
                push @deposit, $e;
            } else {
                push @post, $e;
            }
        } else {
            check(0, "$label: method '$m'");
        }
    });

    # what wrk does (a call in the Lua), the samplers that do it, and the
    # words of the problem when the plan lacks them
    for my $d ([ qr/rbcs\.balance\(/, \@get, 'reads balances', 'has no GET sampler' ],
               [ qr/rbcs\.(?:hot_)?transfer\(/, \@post, 'posts transfers', 'has no POST sampler' ],
               [ qr/rbcs\.capture\(id\)/, $resolve{capture}, 'captures whole' ],
               [ qr/rbcs\.deposit\(/, \@deposit, 'deposits' ],
               [ qr/rbcs\.hold\(/, \@hold, 'holds' ],
               [ qr/rbcs\.capture\(id, rbcs\.amount\)/, $resolve{partial}, 'captures AMOUNT' ],
               [ qr/rbcs\.void\(/, $resolve{void}, 'voids' ]) {
        my ($re, $samplers, $what, $lacks) = @$d;
        my $lua_does = $lua =~ $re;
        my $plan_does = @{ $samplers || [] };
        check(!$lua_does || $plan_does, "$n: wrk $what, the thread group " . ($lacks // 'does not'));
        check($lua_does || !$plan_does, "$n: the thread group $what, wrk does not");
    }
    check($n !~ /hot/ || $lua =~ /rbcs\.hot(?:_transfer)?\(/, "$n: a hot scenario that does not use rbcs.hot()/hot_transfer()");
    if ($lua =~ /rbcs\.rate\b/) {
        check($seen{ConstantThroughputTimer}, "$n: wrk throttles to RATE, the thread group has no Constant Throughput Timer");
    }
    if ($lua =~ /read_pct/) {
        check($seen{SwitchController}, "$n: wrk mixes by READ_PCT, the thread group has no switch");
    }
}

# ------------------------------------------------------------------ report --

if (@problems) {
    print "not ok - $plan: ", scalar(@problems), " of $checks checks failed\n";
    print "#   $_\n" for @problems;
    exit 1;
}
print "ok - $plan: $checks checks, ", scalar(keys %scenario), " scenarios: ",
      join(', ', sort keys %scenario), "\n";
exit 0;
