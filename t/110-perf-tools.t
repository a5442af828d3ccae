#!/usr/bin/perl

# The benchmark tools of perf/ must not rot: this checks them without
# running any load and without the stacks (a few seconds).
#
#   - perf/check-jmx.pl: the JMeter plan is well-formed and in step with the
#     wrk scenarios (same thread groups, parameters, routes, bodies);
#   - every perf/wrk/*.lua compiles (luac -p, when a Lua is installed), and
#     the scenarios, run under a stub of wrk's API, build the requests they
#     should: routes, methods, Content-Type, JSON bodies, account numbers
#     in range, unique transaction ids, the hot pair alternating, deposits
#     from PREFIX-EXT, holds, and the two-phase scenarios (capture, card)
#     resolving each hold answered PENDING once; done() prints RBCS-STATS
#     with the per-kind counts of the two-phase scenarios;
#   - perf/dbclient.c compiles (make -C perf dbclient into a temporary
#     directory), answers a bad option with its usage and -? with both
#     modes, and reads the columns the module reads in its round trip 1
#     (src/ngx_rbcs_batch.h), so that --mode batch stays the module's SQL;
#   - the shell scripts parse (bash -n), perf/report.pl remakes the
#     committed results.md from its raw data, the report generator embedded
#     in perf/bench-accounts.sh compiles (perl -c),
#     perf/plot.gp draws two PNGs from sample data (when gnuplot is
#     installed).

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $perf = "$root/perf";
my $tmp = tempdir('rbcs-perf-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub which {
    for my $name (@_) {
        for my $dir (split /:/, $ENV{PATH} // '/usr/bin:/bin') {
            return "$dir/$name" if -x "$dir/$name" && !-d _;
        }
    }
    return undef;
}

sub run {   # run(CMD...): (exit status, output)
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec { $cmd[0] } @cmd or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# ------------------------------------------------------------- JMeter plan --

{
    my ($rc, $out) = run($^X, "$perf/check-jmx.pl");
    is($rc, 0, 'perf/check-jmx.pl: the JMeter plan matches the wrk scenarios')
        or diag($out);
}

# ------------------------------------------------------------- wrk scripts --

my @lua = sort glob("$perf/wrk/*.lua");

my %scenario;
for my $f (@lua) {
    open my $fh, '<', $f or die "$f: $!";
    while (<$fh>) { $scenario{$1} = $f if /^--\s*scenario:\s*(\S+)/ }
    close $fh;
}
is_deeply([ sort keys %scenario ],
          [ qw(balance-hot balance-uniform capture card deposit hold mix
               transfer-hot transfer-rate transfer-uniform) ],
          'the wrk scenarios');

SKIP: {
    my $luac = which(qw(luac5.1 luac));
    skip 'no Lua compiler (luac5.1 from Debian lua5.1)', scalar @lua unless $luac;
    for my $f (@lua) {
        my ($rc, $out) = run($luac, '-p', $f);
        is($rc, 0, "luac -p perf/wrk/" . ($f =~ s{.*/}{}r)) or diag($out);
    }
}

# Run each scenario under a stub of wrk's API (setup, init, request,
# response, done) and print what it would send.
my $stub = <<'LUA';
local script, nreq = arg[1], tonumber(arg[2])
local threads = {}
local function new_thread()
    local t = { vars = {} }
    function t:set(k, v) self.vars[k] = v end
    function t:get(k) return self.vars[k] end
    function t:stop() end
    return t
end
wrk = {
    format = function(method, path, headers, body)
        local h = {}
        for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
        table.sort(h)
        return method .. " " .. path .. "\n" .. table.concat(h, "\n") .. "\n\n" .. (body or "")
    end,
}
local t = new_thread()
-- one Lua state plays main and thread: get() reads the thread's globals
function t:get(k)
    if self.vars[k] ~= nil then return self.vars[k] end
    return _G[k]
end
wrk.thread = t
dofile(script)
setup(t)
tid = t.vars.tid
init({})
statuses = t.vars.statuses or statuses
-- the answers a service would give: a hold 201 PENDING, its capture 200
-- COMPLETED, its void 200 VOIDED (the transaction resource starts with its
-- id); anything else 201 with no body
for i = 1, nreq do
    local req = request()
    io.write("REQ\n", req, "\n")
    local body = req:match("\n\n(.*)$") or ""
    local id, kind = req:match("^POST [^ ]*/accounts/transactions/([^/ ]+)/(%a+)\n")
    if id then
        response(200, {}, string.format('{"transactionId":"%s","status":"%s"}',
                                        id, kind == "capture" and "COMPLETED" or "VOIDED"))
    elseif body:find('"hold":true', 1, true) then
        response(201, {}, string.format('{"transactionId":"%s","status":"PENDING"}',
                                        body:match('"transactionId":"([^"]+)"')))
    else
        response(201, {}, "")
    end
end
io.write("END\n")
done({ duration = 1e6, requests = nreq,
       errors = { connect = 0, read = 0, write = 0, timeout = 0, status = 0 } },
     { percentile = function(self, p) return 1000 end, max = 2000 }, nil)
LUA

SKIP: {
    my $lua = which(qw(lua5.1 lua luajit));
    skip 'no Lua interpreter (lua5.1)', 1 unless $lua;
    open my $fh, '>', "$tmp/stub.lua" or die;
    print $fh $stub;
    close $fh;

    local $ENV{ACCOUNTS} = 50;
    local $ENV{PREFIX} = 'T';
    local $ENV{RUN_ID} = 'unit';
    local $ENV{HOT_KEYS} = 3;
    delete local $ENV{BASE};
    delete local $ENV{RATE};
    delete local @ENV{qw(AMOUNT HOLD_EXPIRES_IN CARD_AMOUNT CARD_EXPIRES_IN CARD_VOID_PCT CARD_PARTIAL_PCT)};

    for my $name (sort keys %scenario) {
        subtest "requests of $name" => sub {
            my ($rc, $out) = run($lua, "$tmp/stub.lua", $scenario{$name}, 200);
            is($rc, 0, 'runs under the stub') or return diag($out);
            my ($stats) = $out =~ /^RBCS-STATS (.*)$/m;
            $out =~ s/^END\n.*\z//ms;
            my @req = map { s/\n\z//r } split /^REQ\n/m, $out;
            shift @req;
            is(scalar @req, 200, '200 requests');
            my (%ids, %dir, %held, %resolved, %n, $reads, $transfers, @bad, @order);
            for my $r (@req) {
                my ($line, $head, $body) = $r =~ /\A(.*?)\n(.*?)\n\n(.*)\z/s
                    or do { push @bad, "unparsable: $r"; next };
                if ($line =~ m{^GET /accounts/(T-(\d{6}))/balance$}) {
                    my ($acc, $i) = ($1, $2);
                    $reads++;
                    push @bad, "account out of range: $acc" if $i < 1 || $i > 50;
                    push @bad, "hot read of $acc" if $name =~ /hot/ && $i > 3;
                    push @bad, "GET with a body" if length $body;
                    next;
                }
                push @bad, "no JSON Content-Type: $head" unless $head eq 'Content-Type: application/json';
                if ($line eq 'POST /accounts/transactions') {
                    $transfers++;
                    if (my ($id, $s, $d, $amount, $hold, $exp) = $body =~ /\A\{"transactionId":"(unit-1-\d+)","sourceAccountNumber":"T-(\d{6}|EXT)","destinationAccountNumber":"T-(\d{6})","amount":"(0\.0[12])"(,"hold":true(?:,"expiresIn":(\d+))?)?\}\z/) {
                        push @bad, "id $id twice" if $ids{$id}++;
                        push @bad, "same account $s" if $s eq $d;
                        push @bad, "account out of range: $s $d" if $d < 1 || $d > 50 || ($s ne 'EXT' && ($s < 1 || $s > 50));
                        push @bad, "source $s: deposits come from T-EXT, nothing else does"
                            if ($s eq 'EXT') != ($name eq 'deposit');
                        my $want_hold = $name =~ /^(hold|capture|card)$/;
                        push @bad, ($hold ? 'a hold' : 'not a hold') . ": $body" if !$hold != !$want_hold;
                        if ($hold) {
                            $held{$id} = 1;
                            push @order, 'hold';
                            $n{hold}++;
                            my ($a, $e) = $name eq 'card' ? ('0.02', 604800) : ('0.01', undef);
                            push @bad, "hold of $amount" if $amount ne $a;
                            push @bad, "expiresIn " . ($exp // 'none') if ($exp // 'none') ne ($e // 'none');
                        } else {
                            push @bad, "amount $amount" if $amount ne '0.01';
                        }
                        $dir{"$s>$d"}++;
                    } else {
                        push @bad, "body: $body";
                    }
                } elsif (my ($id, $kind) = $line =~ m{^POST /accounts/transactions/(unit-1-\d+)/(capture|void)$}) {
                    push @bad, "$kind in $name" unless $name =~ /^(capture|card)$/;
                    push @bad, "$kind of $id, which is not a hold answered PENDING" unless $held{$id};
                    push @bad, "$id resolved twice" if $resolved{$id}++;
                    push @order, 'resolve';
                    if ($kind eq 'void') {
                        $n{void}++;
                        push @bad, "void body $body" if $body ne '{}';
                    } elsif ($body eq '{}') {
                        $n{capture}++;
                    } elsif ($body eq '{"amount":"0.01"}' && $name eq 'card') {
                        $n{partial}++;
                    } else {
                        push @bad, "capture body $body";
                    }
                } else {
                    push @bad, "request: $line";
                }
            }
            ok(!@bad, 'well-formed requests') or diag(join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
            if ($name =~ /^balance/) {
                is($reads, 200, 'balance reads only');
            } elsif ($name eq 'mix') {
                ok($reads > 140 && $transfers > 3, "reads and transfers mixed ($reads / $transfers)");
            } elsif ($name =~ /^(capture|card)$/) {
                is(join(' ', @order), join(' ', ('hold resolve') x 100),
                   'each hold answered PENDING is resolved by the next request');
                if ($name eq 'capture') {
                    is($n{capture}, 100, 'every hold captured whole');
                } else {
                    my ($v, $p, $c) = map { $_ // 0 } @n{qw(void partial capture)};
                    ok($v > 0 && $v < 35 && $p > 0 && $p < 45 && $c > 40,
                       "authorisations voided ($v), captured in part ($p) or whole ($c)");
                }
                like($stats // '', qr/\bop_hold_n=100 .*\bop_capture_n=\d+ .*\bop_void_n=\d+ /,
                     'RBCS-STATS counts the answers by kind');
                my ($nc, $nv) = ($stats // '') =~ /\bop_capture_n=(\d+) .*\bop_void_n=(\d+) /;
                is(($nc // 0) + ($nv // 0), 100, 'captures and voids add up to the holds');
            } else {
                is($transfers, 200, 'transfers only');
            }
            like($stats // '', qr/^scenario=\Q$name\E requests=200 .* status_201=\d+/,
                 'done() prints RBCS-STATS');
            if ($name eq 'transfer-hot') {
                is_deeply(\%dir, { '000001>000002' => 100, '000002>000001' => 100 },
                          'the hot pair, alternating direction');
            }
        };
    }

    # BASE moves every request under the static twin's prefix
    local $ENV{BASE} = '/static';
    my ($rc, $out) = run($lua, "$tmp/stub.lua", $scenario{mix}, 50);
    my @lines = $out =~ /^(GET|POST) (\S+)$/mg;
    my @paths = @lines[ grep { $_ % 2 } 0 .. $#lines ];
    ok(@paths == 50 && !grep({ !m{^/static/accounts/} } @paths), 'BASE=/static prefixes every path')
        or diag($out);
    # the static twin never answers PENDING: the two-phase scenarios send
    # the same alternation of holds and captures there all the same
    for my $name (qw(capture card)) {
        ($rc, $out) = run($lua, "$tmp/stub.lua", $scenario{$name}, 20);
        @lines = $out =~ m{^POST (/static/accounts/transactions\S*)$}mg;
        my $shape = join ' ', map { m{/(capture|void)$} ? 'resolve' : 'hold' } @lines;
        is($shape, join(' ', ('hold resolve') x 10), "BASE=/static: $name alternates holds and their resolutions")
            or diag($out);
    }
}

# --------------------------------------------------------------- dbclient --

SKIP: {
    skip 'no make', 5 unless which('make');
    skip 'no MariaDB Connector/C (libmariadb-dev)', 5
        unless which('mariadb_config') || -e '/usr/include/mariadb/mysql.h';
    my ($rc, $out) = run('make', '-s', '-C', $perf, 'dbclient', "OUT=$tmp");
    is($rc, 0, 'make -C perf dbclient compiles perf/dbclient.c') or diag($out);
    ($rc, $out) = run("$tmp/dbclient", '-m', 'nowhere');
    ok($rc == 2 && $out =~ /^usage:/m, 'dbclient: a bad option gives the usage') or diag($out);
    ($rc, $out) = run("$tmp/dbclient", '--mode', 'nowhere');
    ok($rc == 2 && $out =~ /^usage:/m, 'dbclient: a bad --mode gives the usage') or diag($out);
    ($rc, $out) = run("$tmp/dbclient", '--mode', 'lean', '--batch', '2');
    ok($rc == 2 && $out =~ /^usage:/m, 'dbclient: the lean mode has no batches') or diag($out);
    ($rc, $out) = run("$tmp/dbclient", '-?');
    ok($rc == 2 && $out =~ /--mode lean\b/ && $out =~ /--mode batch\b/ && $out =~ /--batch B/
       && $out !~ /invalid option/, 'dbclient -? describes both modes') or diag($out);
}

# --mode batch sends the module's round trip 1: the same columns, read by
# position, as src/ngx_rbcs_batch.h defines them
# (round trip 1 is one result set: the account columns after a tag, the
# transaction columns as they are)
{
    my $cols = sub {
        my ($file, $name) = @_;
        open my $fh, '<', $file or return undef;
        my $src = do { local $/; <$fh> };
        close $fh;
        my ($def) = $src =~ /^#define\s+\Q$name\E\s*\\\n((?:.*\\\n)*.*\n)/m or return undef;
        return join '', $def =~ /"((?:[^"\\]|\\.)*)"/g;
    };
    for my $c (qw(ACC_FIELDS TX_COLUMNS)) {
        my $module = $cols->("$root/src/ngx_rbcs_batch.h", "NGX_RBCS_$c");
        my $client = $cols->("$perf/dbclient.c", $c);
        ok(defined $client && defined $module && $client eq $module,
           "dbclient's $c are the module's NGX_RBCS_$c")
            or diag("module: " . ($module // 'not found') . "\nclient: " . ($client // 'not found'));
    }

    # and the same shape of each round trip: one result set, one compound
    # statement
    my %src;
    for my $f ("$root/src/ngx_rbcs_batch.c", "$perf/dbclient.c") {
        open my $fh, '<', $f or next;
        $src{$f} = do { local $/; <$fh> };
    }
    for my $piece ('START TRANSACTION;SELECT \'', ',UTC_TIMESTAMP(3)', ' UNION ALL (SELECT \'',
                   ') ORDER BY account_number FOR UPDATE)', 'BEGIN NOT ATOMIC ', 'COMMIT;END') {
        my @has = grep { index($src{$_} // '', $piece) >= 0 } keys %src;
        is(scalar @has, 2, "the module and dbclient both send \"$piece\"");
    }
}

# ------------------------------------------------- shell, report, gnuplot --

for my $sh (qw(run-all.sh lib.sh gen-accounts.sh bench-balance.sh bench-accounts.sh)) {
    next unless -e "$perf/$sh";
    my ($rc, $out) = run('bash', '-n', "$perf/$sh");
    is($rc, 0, "bash -n perf/$sh") or diag($out);
}

# perf/report.pl makes results.md from raw/runs.txt and raw/meta.txt: on
# the committed raw data it writes the committed results.md, less its list
# of commands (which it reads from the raw files beside the plot directory,
# in the order of their times, which a checkout does not keep)
{
    my ($rc, $out) = run($^X, '-c', "$perf/report.pl");
    is($rc, 0, 'perf/report.pl compiles') or diag($out);
    my $raw = "$perf/results/raw";
    SKIP: {
        skip 'no committed run in perf/results/raw', 2
            unless -s "$raw/runs.txt" && -s "$raw/meta.txt" && -s "$perf/results/results.md";
        mkdir "$tmp/report-plot";
        ($rc, $out) = run($^X, "$perf/report.pl", "$raw/runs.txt", "$raw/meta.txt",
            "$tmp/report-plot",
            'balance-uniform balance-hot transfer-uniform transfer-hot mix hold capture deposit card',
            "$tmp/results.md");
        is($rc, 0, 'perf/report.pl runs on the committed raw data') or diag($out);
        my $slurp = sub { open my $f, '<', $_[0] or return ''; local $/; <$f> };
        (my $want = $slurp->("$perf/results/results.md")) =~ s/^## Commands\n.*?(?=^## )//ms;
        is($slurp->("$tmp/results.md"), $want, '... and writes the committed tables');
    }
}

# the twin's nginx.conf (perf/lib.sh twin_render): every placeholder of the
# template filled, the zone resized, the static routes in
{
    my $twin = "$tmp/twin";
    my ($rc, $out) = run('bash', '-c',
        ". '$perf/lib.sh' && TWIN='$twin' && twin_render 'location /static/ { return 204; }' 1m",
        );
    is($rc, 0, 'perf/lib.sh twin_render renders the twin\'s nginx.conf') or diag($out);
    open my $fh, '<', "$twin/nginx.conf";
    my $conf = $fh ? do { local $/; <$fh> } : '';
    unlike($conf, qr/\$\{[A-Z_]+\}/, '... with no placeholder left');
    like($conf, qr/rbcs_cache_zone\s+zone=\w+:1m\b/, '... its zone resized');
    like($conf, qr{location /static/ \{ return 204; \}}, '... and the static routes in');
}

# conf/stack.sh render, the one renderer of the scripts (twin_render, the
# tests, k8s/check.sh, docker/build-static.sh): ${NAME} filled, nginx's own
# $variables kept, and a placeholder without a value an error naming it
{
    my $tpl = "$tmp/render.in";
    open my $fh, '>', $tpl or die "$tpl: $!";
    print $fh "listen \${PORT};\nset \$a \$uri;\nroot \${ROOT_DIR}/x;\n";
    close $fh;
    my ($rc, $out) = run("$root/conf/stack.sh", 'render', $tpl, "$tmp/render.out",
                         'PORT=8', 'ROOT_DIR=/srv');
    is($rc, 0, 'stack.sh render fills a template') or diag($out);
    open $fh, '<', "$tmp/render.out";
    my $text = $fh ? do { local $/; <$fh> } : '';
    is($text, "listen 8;\nset \$a \$uri;\nroot /srv/x;\n",
       '... its placeholders, nginx variables untouched');
    unlink "$tmp/render.out";
    ($rc, $out) = run("$root/conf/stack.sh", 'render', $tpl, "$tmp/render.out",
                      'PORT=8');
    isnt($rc, 0, '... fails on a placeholder without a value');
    like($out, qr/no value for \$\{ROOT_DIR\}/, '... naming it');
    ok(!-e "$tmp/render.out", '... and writes no file');
}

for my $sh (qw(bench-accounts.sh)) {
    open my $fh, '<', "$perf/$sh" or die;
    my $src = do { local $/; <$fh> };
    close $fh;
    my ($report) = $src =~ /^perl - .*<<'PERL'\n(.*?)^PERL$/ms;
    open my $o, '>', "$tmp/report.pl" or die;
    print $o $report // '';
    close $o;
    my ($rc, $out) = run($^X, '-c', "$tmp/report.pl");
    ok(defined $report && $rc == 0, "the report generator of $sh compiles")
        or diag($out);
}

SKIP: {
    my $gp = which('gnuplot');
    skip 'no gnuplot (gnuplot-nox)', 2 unless $gp;
    mkdir "$tmp/plot";
    for my $s (qw(a b)) {
        for my $f ("$tmp/plot/$s.dat", "$tmp/plot/static-$s.dat") {
            open my $o, '>', $f or die;
            print $o "# connections rps p50_ms p99_ms\n8 1000 1.0 5.0\n32 2000 2.0 9.0\n";
            close $o;
        }
    }
    my ($rc, $out) = run($gp, '-e', "datadir='$tmp/plot'; outdir='$tmp'; scenarios='a b'; dbceil=1500",
                         "$perf/plot.gp");
    is($rc, 0, 'perf/plot.gp runs') or diag($out);
    ok(-s "$tmp/throughput.png" && -s "$tmp/p99.png", 'and draws throughput.png and p99.png');
}

done_testing();
