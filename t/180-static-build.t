#!/usr/bin/perl

# The Docker packaging (docker/), without a Docker engine.
#
#   - docker/Dockerfile, read here: the build stage runs docker/build-static.sh
#     with subcommands it has, every COPY source is in the repository (and
#     the module's files are all copied), the runtime stage is
#     bookworm-slim with uid 10001, ports 8080/9145, STOPSIGNAL SIGQUIT, a
#     HEALTHCHECK, and k8s/rbcs-entrypoint.sh as its entrypoint; the
#     build arguments' defaults are k8s/base/nginx-conf.env's;
#   - docker/compose.yaml and docker/prometheus.yml: yamllint, promtool, and
#     the stack wired together (rbcs after healthy MariaDB and Redis, the
#     names it is built with are the services', the schema, the mounts);
#   - docker/build-static.sh source with fake apt tools: the source versions
#     it tries, in order (the installed one, then other Debian revisions of
#     the same upstream release), and RBCS_NGINX_VERSION;
#   - docker/build-static.sh, the image's build path, run here: nginx from
#     Debian's source with the module compiled in (the first run fetches
#     and builds, ~1 minute; later runs reuse it when nothing changed, which
#     is checked too; skipped, saying so, when the first run cannot reach
#     the network);
#   - the binary: the module is in (nginx -V, nginx -t of the production
#     template without load_module), the libraries it links are exactly
#     those the runtime stage installs (and libc);
#   - it serves: through the harness, and started the image's way (the
#     entrypoint filling the credentials, nginx in the foreground with the
#     access log on stdout, stopped by SIGQUIT), an account + transfer +
#     balance round trip against the test MariaDB and Redis; the image's
#     HEALTHCHECK script against it.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);
use RBCS::Test;

my $root   = $RBCS::Test::ROOT;
my $docker = "$root/docker";
my $script = "$docker/build-static.sh";
my $static = $ENV{RBCS_STATIC_DIR} // "$root/build/static";
my $bin    = "$static/root/usr/sbin/nginx";
my $tmp    = tempdir('rbcs-static-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub spew {
    my ($f, $s, $mode) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $s;
    close $fh or die "$f: $!";
    chmod $mode, $f if defined $mode;
}

sub run {   # run(\%env, CMD...): (exit status, output with stderr)
    my ($env, @cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open(STDERR, '>&', \*STDOUT);
        exec { $cmd[0] } @cmd or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub which {
    my ($name) = @_;
    for my $d (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/bin') {
        return "$d/$name" if length $d && -x "$d/$name";
    }
    return undef;
}

# a port for nginx to bind; whoever uses it then waits for it
sub free_port { RBCS::Test::free_port() }

my %env_conf;   # k8s/base/nginx-conf.env: the ConfigMap's (and the image's) values
for (split /\n/, slurp("$root/k8s/base/nginx-conf.env")) {
    next if /^\s*(#|$)/;
    /^([A-Z_]+)=(.*)$/ or die "nginx-conf.env: $_";
    $env_conf{$1} = $2;
}

# ------------------------------------------------------- the Dockerfile --

# instructions, continuation lines joined, comments dropped
my @ins;
{
    my $text = slurp("$docker/Dockerfile");
    $text =~ s/^[ \t]*#.*\n//mg;
    $text =~ s/\\\n//g;
    for (split /\n/, $text) {
        next unless /\S/;
        /^\s*([A-Za-z]+)\s+(.*?)\s*$/ or die "Dockerfile: cannot read: $_";
        push @ins, [ uc $1, $2 ];
    }
}
my (%global_arg, @stages);
for my $i (@ins) {
    my ($op, $arg) = @$i;
    if ($op eq 'FROM') {
        my ($image, $name) = $arg =~ /^(\S+)(?:\s+AS\s+(\S+))?$/i or die "FROM $arg";
        $image =~ s/\$\{(\w+)\}/$global_arg{$1} \/\/ die "FROM: no ARG $1"/ge;
        push @stages, { image => $image, name => $name // '', ins => [] };
    } elsif (!@stages) {
        $global_arg{$1} = $2 if $op eq 'ARG' && $arg =~ /^(\w+)=(\S+)$/;
    } else {
        push @{ $stages[-1]{ins} }, $i;
    }
}
is(scalar @stages, 2, 'Dockerfile: two stages');
my ($build, $runtime) = @stages;
is($build->{image}, 'debian:bookworm', 'the build stage is debian:bookworm');
is($build->{name}, 'build', '... named build');
is($runtime->{image}, 'debian:bookworm-slim', 'the runtime stage is debian:bookworm-slim');

sub of { my ($stage, $op) = @_; return map { $_->[1] } grep { $_->[0] eq $op } @{ $stage->{ins} } }

# docker/build-static.sh: the build stage's only build path, with
# subcommands the script has
my ($usage) = slurp($script) =~ /usage: \$0 \[([^\]]+)\]/ or die 'no usage line in build-static.sh';
my %sub = map { (split ' ', $_)[0] => 1 } split /\|/, $usage;
my @calls = map { /docker\/build-static\.sh\s+([\w-]+)/g } of($build, 'RUN');
ok(@calls, 'the build stage runs docker/build-static.sh');
ok($sub{$_}, "... build-static.sh $_ is a subcommand of the script") for @calls;
ok((grep { $_ eq 'build' || $_ eq 'all' } @calls), '... and builds with it');
ok((grep { $_ eq 'render-conf' } @calls), '... and renders the default nginx.conf with it');
unlike(join("\n", of($build, 'RUN')), qr/\b(?:\.\/configure|make)\b/,
       'no build command of its own beside the script');

# COPY sources: in the repository; the module's files all reach the build
my (@copied, %copy_dest);
for my $st (@stages) {
    for my $c (of($st, 'COPY')) {
        my @w = split ' ', $c;
        my @opt = grep { /^--/ } @w;
        @w = grep { !/^--/ } @w;
        my $dest = pop @w;
        my ($from) = map { /^--from=(\S+)/ ? $1 : () } @opt;
        if (defined $from) {
            ok((grep { $_->{name} eq $from } @stages), "COPY --from=$from: a stage of this file");
            is($w[0], '/src/build/static/root/', "COPY --from=$from takes build-static.sh's root/")
                if $from eq 'build';
            next;
        }
        for my $s (@w) {
            ok(-e "$root/$s", "COPY source $s exists in the repository");
            push @copied, $s if $st eq $build;
            $copy_dest{$s} = $dest;
        }
    }
}
# the context's ignore file leaves every COPY source in
my @ignored = grep { !/^\s*(#|$)/ } split /\n/, slurp("$docker/Dockerfile.dockerignore");
for my $src (sort keys %copy_dest) {
    my @hit = grep { my $p = s{/$}{}r; $p !~ /[*?]/ && ($src eq $p || index($src, "$p/") == 0) } @ignored;
    ok(!@hit, "COPY source $src is not excluded by docker/Dockerfile.dockerignore");
}

my @need = ('config', 'ngx_rbcs_module.c', 'docker/build-static.sh', 'conf/nginx.prod.conf.in',
            'k8s/base/nginx-conf.env',
            map { s{^\Q$root\E/}{}r } glob("$root/src/*.c"), glob("$root/src/*.h"));
my @missing = grep { my $f = $_; !grep { $_ eq $f || (m{/$} && index($f, $_) == 0) } @copied } @need;
is_deeply(\@missing, [], 'the build stage copies every file the build needs');
is((of($build, 'WORKDIR'))[-1], '/src', 'the build stage works in /src (root/ is /src/build/static/root)');

# the default configuration: the build arguments default to the ConfigMap's
# values, and each reaches render-conf
my %arg = map { /^(\w+)=(.*)$/ ? ($1 => $2) : () } of($build, 'ARG');
my ($render) = grep { /build-static\.sh render-conf/ } of($build, 'RUN');
for my $k (sort keys %arg) {
    is($arg{$k}, $env_conf{$k}, "ARG $k defaults to k8s/base/nginx-conf.env's value");
    like($render // '', qr/"\Q$k\E=\$\{\Q$k\E\}"/, "... and is passed to render-conf");
}
like($render // '', qr{render-conf build/static/root/etc/rbcs/nginx\.conf\b},
     'the default configuration goes to /etc/rbcs/nginx.conf');

# the runtime stage
my @run_rt = of($runtime, 'RUN');
my ($pkgs) = join("\n", @run_rt) =~ /apt-get install .*?--no-install-recommends\s+(.*?)\s*(?:&&|$)/m;
my @runtime_pkgs = sort split ' ', $pkgs // '';
ok(@runtime_pkgs, "runtime packages: @runtime_pkgs");
like(join("\n", @run_rt), qr/groupadd\b.*--gid 10001 rbcs/, 'group rbcs, gid 10001');
like(join("\n", @run_rt), qr/useradd\b.*--uid 10001 --gid 10001\b/, 'user rbcs, uid 10001');
like(join("\n", @run_rt), qr/install -d -o 10001 -g 10001 -m 0700 \/var\/lib\/rbcs/,
     '/var/lib/rbcs belongs to it');
is((of($runtime, 'USER'))[-1], '10001:10001', 'USER 10001 (numeric: runAsNonRoot can check it)');
is_deeply([ sort map { split ' ' } of($runtime, 'EXPOSE') ], [ 8080, 9145 ], 'EXPOSE 8080 9145');
is((of($runtime, 'STOPSIGNAL'))[-1], 'SIGQUIT', 'STOPSIGNAL SIGQUIT (graceful)');
is((of($runtime, 'ENTRYPOINT'))[-1], '["/usr/local/bin/rbcs-entrypoint"]', 'ENTRYPOINT rbcs-entrypoint');
is($copy_dest{'k8s/rbcs-entrypoint.sh'}, '/usr/local/bin/rbcs-entrypoint',
   'the entrypoint is k8s/rbcs-entrypoint.sh (one source)');
like(slurp("$root/k8s/rbcs-entrypoint.sh"), qr{copies it to /usr/local/bin/rbcs-entrypoint},
     '... where its header says the image has it');
my ($hc) = of($runtime, 'HEALTHCHECK');
like($hc // '', qr{CMD \["/usr/local/bin/rbcs-healthcheck"\]}, 'HEALTHCHECK rbcs-healthcheck');
is($copy_dest{'docker/healthcheck'}, '/usr/local/bin/rbcs-healthcheck', '... which is docker/healthcheck');

# the compiler flags: conf/stack.sh's (the module's own build), -fPIE for
# -fPIC, and -Werror
my ($stack_cc) = slurp("$root/conf/stack.sh") =~ /^CC_OPT="([^"]*)"/m;
my ($static_cc) = slurp($script) =~ /^CC_OPT="([^"]*)"/m;
my %have = map { $_ => 1 } split ' ', $static_cc // '';
is_deeply([ grep { !$have{$_} } grep { $_ ne '-fPIC' } split ' ', $stack_cc // '' ], [],
          "build-static.sh's CC_OPT has conf/stack.sh's flags");
ok($have{'-Werror'}, '... and -Werror');

SKIP: {
    skip 'not a git checkout', 1 unless -d "$root/.git" && !system("git --version >/dev/null 2>&1");
    is(system('git', '-C', $root, 'check-ignore', '-q', 'build/static/root/usr/sbin/nginx'), 0,
       'build/static is git-ignored');
}

# ------------------------------------------- compose.yaml, prometheus.yml --

SKIP: {
    skip 'yamllint missing', 1 unless which('yamllint');
    my ($rc, $out) = run({}, 'yamllint', '-c', "$root/k8s/.yamllint",
                         "$docker/compose.yaml", "$docker/prometheus.yml");
    is($rc, 0, 'yamllint: docker/compose.yaml, docker/prometheus.yml') or diag($out);
}
SKIP: {
    skip 'promtool missing', 1 unless which('promtool');
    my ($rc, $out) = run({}, 'promtool', 'check', 'config', "$docker/prometheus.yml");
    is($rc, 0, 'promtool check config docker/prometheus.yml') or diag($out);
}

my $compose = do {
    my ($rc, $out) = run({}, '/usr/bin/python3', '-c',
        'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))',
        "$docker/compose.yaml");
    $rc == 0 ? decode_json($out) : do { diag("compose.yaml not read: $out"); undef };
};
SKIP: {
    skip 'no python3 with yaml to read compose.yaml', 1 unless $compose;
    my $svc = $compose->{services};
    is_deeply([ sort keys %$svc ], [ qw(mariadb prometheus rbcs redis) ],
              'compose: rbcs, mariadb, redis, prometheus');
    my $r = $svc->{rbcs};
    is($r->{build}{dockerfile}, 'docker/Dockerfile', 'rbcs is built from docker/Dockerfile');
    is($r->{build}{context}, '..', '... with the repository as context');
    for my $k (sort keys %{ $r->{build}{args} // {} }) {
        ok(exists $arg{$k}, "build arg $k is an ARG of the Dockerfile");
    }
    is($r->{build}{args}{MYSQL_HOST}, 'mariadb', 'the configuration names the mariadb service');
    is($r->{build}{args}{REDIS_HOST}, 'redis', '... and the redis service');
    for my $d (qw(mariadb redis)) {
        is($r->{depends_on}{$d}{condition}, 'service_healthy',
           "rbcs starts after $d is healthy (names are resolved at start)");
        ok($svc->{$d}{healthcheck}{test}, "$d has a healthcheck");
    }
    my %published = map { (/:(\d+)$/)[0] => 1 } @{ $r->{ports} // [] };
    ok($published{8080} && $published{9145}, 'rbcs publishes 8080 and 9145');

    # every bind mount's source exists; what the rbcs container finds there
    my %mount;   # service => { target => source (absolute) }
    for my $name (sort keys %$svc) {
        for my $v (@{ $svc->{$name}{volumes} // [] }) {
            my ($src, $dst) = split /:/, $v;
            next unless $src =~ m{^[./]};
            my $abs = $src =~ m{^/} ? $src : "$docker/$src";
            ok(-e $abs, "$name: mount source $src exists");
            $mount{$name}{$dst} = $abs;
        }
    }
    my $db = $mount{rbcs}{'/etc/rbcs/db'};
    ok($db && -s "$db/username" && -s "$db/password", 'rbcs: /etc/rbcs/db with username and password');
    my $keys = $mount{rbcs}{ $env_conf{KEYS_FILE} };
    ok($keys, "rbcs: the keys file at $env_conf{KEYS_FILE}");
    my @keys = grep { !/^\s*(#|$)/ } split /\n/, $keys ? slurp($keys) : '';
    ok(@keys && !grep({ !/^\S+\s+\S{32,}\s+[a-z,]+\s*$/ } @keys), '... in the keys format');
    ok($r->{read_only} && (grep { $_ eq '/var/lib/rbcs' } @{ $r->{tmpfs} // [] }),
       'rbcs: read-only root, /var/lib/rbcs in memory');
    ok(($r->{environment}{RBCS_TLS_SELF_SIGNED} // '') eq '1' || $mount{rbcs}{'/etc/rbcs/tls'},
       'rbcs: a certificate for the TLS listener (mounted, or self-signed at start)');

    my $m = $svc->{mariadb};
    is($m->{image}, 'mariadb:10.11', 'MariaDB 10.11');
    ok((grep { $_ eq '--innodb-flush-log-at-trx-commit=1' } @{ $m->{command} // [] }),
       'innodb_flush_log_at_trx_commit=1');
    is($mount{mariadb}{'/docker-entrypoint-initdb.d/schema.sql'}, "$docker/../conf/schema.sql",
       'conf/schema.sql in /docker-entrypoint-initdb.d');
    is($m->{environment}{MARIADB_DATABASE}, $arg{MYSQL_DATABASE}, 'the database the image uses');
    is($mount{mariadb}{'/etc/rbcs/db'}, $db, 'MariaDB creates the user from the files rbcs reads');
    is($mount{mariadb}{'/docker-entrypoint-initdb.d/service-grants.sql'}, "$docker/../conf/grants.sql",
       '... with the role of conf/grants.sql');
    is($mount{mariadb}{'/docker-entrypoint-initdb.d/service-user.sh'},
       "$docker/../k8s/overlays/dev/service-user.sh", '... made by the dev overlay\'s service-user.sh');
    ok(!grep(/^MARIADB_(USER|PASSWORD)/, keys %{ $m->{environment} }),
       '... not by the image (MARIADB_USER would get ALL on the database)');

    like($svc->{redis}{image}, qr/^redis:7\b/, 'Redis 7');
    like(join(' ', map { $_ eq '' ? '""' : $_ } @{ $svc->{redis}{command} // [] }), qr/--save ""/,
         'Redis with save ""');

    is($mount{prometheus}{'/etc/prometheus/prometheus.yml'}, "$docker/./prometheus.yml",
       'Prometheus reads docker/prometheus.yml');
    my $p = slurp("$docker/prometheus.yml");
    like($p, qr/targets:\s*\["rbcs:\Q$env_conf{OPS_PORT}\E"\]/, 'it scrapes rbcs on the operations port');
    like($p, qr{metrics_path:\s*/metrics}, '... /metrics');
}

# ------------------------- build-static.sh source: which versions it tries --
#
# `build-static.sh source` with fakes of dpkg-query, apt-cache, apt-get and
# dpkg-source first on PATH: no network, no root, no dpkg-dev, no apt
# configuration involved.  The installed nginx is 1.22.1-9+deb12u11 (or
# none); apt offers sources of upstream 1.22.1 in four Debian revisions,
# and of 1.24.0.  apt-get logs what it is asked for and fetches only the
# version in RBCS_FAKE_OK (nothing when empty).  Before the real build, so
# that it runs when that one fails.
{
    my $fake = "$tmp/fake-apt";
    mkdir $_ or die "$_: $!" for $fake, "$fake/bin";
    spew("$fake/bin/dpkg-query", <<'SH', 0755);
#!/bin/sh
# only what source_candidates asks: the installed nginx's version
# (RBCS_FAKE_INSTALLED; none when empty)
[ "$*" = '-W -f=${Version} nginx' ] && [ -n "$RBCS_FAKE_INSTALLED" ] || exit 1
printf '%s' "$RBCS_FAKE_INSTALLED"
SH
    spew("$fake/bin/apt-cache", <<'SH', 0755);
#!/bin/sh
[ "$*" = 'showsrc --only-source nginx' ] || { echo "fake apt-cache: $*" >&2; exit 100; }
for v in 1.22.1-9+deb12u9 1.22.1-9+deb12u11 1.22.1-9 1.24.0-2 1.22.1-9+deb12u10; do
    printf 'Package: nginx\nVersion: %s\n\n' "$v"
done
SH
    spew("$fake/bin/apt-get", <<'SH', 0755);
#!/bin/sh
printf '%s\n' "$*" >> "$RBCS_FAKE_LOG"
v=
for a in "$@"; do
    case $a in nginx=*) v=${a#nginx=} ;; esac
done
if [ -n "$v" ] && [ "$v" = "${RBCS_FAKE_OK:-}" ]; then
    printf 'Format: 3.0 (quilt)\nSource: nginx\nVersion: %s\n' "$v" > "nginx_$v.dsc"
    exit 0
fi
echo "E: fake apt-get: no source files of nginx${v:+ $v}" >&2
exit 100
SH
    spew("$fake/bin/dpkg-source", <<'SH', 0755);
#!/bin/sh
# dpkg-source --no-copy -x DSC DIR: a tree with a configure script
[ "$1" = --no-copy ] && [ "$2" = -x ] && [ -f "$3" ] && [ -n "$4" ] ||
    { echo "fake dpkg-source: $*" >&2; exit 2; }
mkdir -p "$4" && printf '#!/bin/sh\nexit 0\n' > "$4/configure" && chmod 0755 "$4/configure"
echo "dpkg-source: info: extracting nginx in $4"
SH

    my $case = 0;
    my $source = sub {   # (rc, output, versions apt-get was asked for, work dir)
        my (%env) = @_;
        my $dir = "$fake/static" . ++$case;
        my $log = "$fake/apt-get.$case.log";
        my ($rc, $out) = run({ PATH => "$fake/bin:$ENV{PATH}", RBCS_STATIC_DIR => $dir,
                               RBCS_FAKE_LOG => $log, RBCS_FAKE_OK => '',
                               RBCS_FAKE_INSTALLED => '1.22.1-9+deb12u11',
                               RBCS_NGINX_VERSION => '', %env },
                             $script, 'source');
        my @asked = map { /\bnginx=(\S+)/ ? $1 : "?($_)" } split /\n/, (-e $log ? slurp($log) : '');
        return ($rc, $out, \@asked, $dir);
    };
    my @same_upstream = qw(1.22.1-9+deb12u11 1.22.1-9+deb12u10 1.22.1-9+deb12u9 1.22.1-9);

    # no version can be fetched
    my ($rc, $out, $asked, $dir) = $source->();
    isnt($rc, 0, 'source, no version fetchable: fails');
    is_deeply($asked, \@same_upstream,
              '... after trying the installed version, then the same upstream release, newest first')
        or diag($out);
    like($out, qr/ERROR: apt-get source nginx failed for every version tried: \Q@same_upstream\E$/m,
         '... and names every version it tried');
    ok(!grep({ $_ eq '1.24.0-2' } @$asked), '... never another upstream release');
    ok(!-e "$dir/nginx-src", '... and unpacks nothing');

    # only an older revision can be fetched: it is taken
    ($rc, $out, $asked, $dir) = $source->(RBCS_FAKE_OK => '1.22.1-9+deb12u10');
    is($rc, 0, 'source, the installed version missing, an older revision there: succeeds')
        or diag($out);
    is_deeply($asked, [ qw(1.22.1-9+deb12u11 1.22.1-9+deb12u10) ],
              '... stopping at the first version fetched');
    like($out, qr/^==> nginx source 1\.22\.1-9\+deb12u10 unpacked/m, '... says which it unpacked');
    is(-e "$dir/nginx-src/.rbcs-source" ? slurp("$dir/nginx-src/.rbcs-source") : undef,
       "1.22.1-9+deb12u10\n", '... and records it in nginx-src/.rbcs-source');

    # a version asked for is the only one tried
    ($rc, $out, $asked, $dir) = $source->(RBCS_NGINX_VERSION => '1.22.1-9+deb12u9');
    isnt($rc, 0, 'source, RBCS_NGINX_VERSION not fetchable: fails');
    is_deeply($asked, [ '1.22.1-9+deb12u9' ], '... having tried that version only') or diag($out);
    ($rc, $out, $asked, $dir) = $source->(RBCS_NGINX_VERSION => '1.24.0-2', RBCS_FAKE_OK => '1.24.0-2');
    is($rc, 0, 'source, RBCS_NGINX_VERSION of another upstream release: succeeds') or diag($out);
    is_deeply($asked, [ '1.24.0-2' ], '... fetching just that one');
    is(-e "$dir/nginx-src/.rbcs-source" ? slurp("$dir/nginx-src/.rbcs-source") : undef,
       "1.24.0-2\n", '... and unpacking it');

    # no nginx installed: the newest upstream release apt offers
    ($rc, $out, $asked, $dir) = $source->(RBCS_FAKE_INSTALLED => '');
    isnt($rc, 0, 'source, no nginx installed, nothing fetchable: fails');
    is_deeply($asked, [ '1.24.0-2' ], '... having tried the newest upstream release\'s versions')
        or diag($out);
}

# --------------------------------------------- build-static.sh, run here --

# The first run downloads (build packages, Debian's nginx source).  A
# machine that cannot reach the mirror at all cannot build: the tests of
# the build are skipped then, saying why; any other failure is one.
my $offline = join '|', 'Temporary failure resolving', 'Could not resolve',
    'Network is unreachable', 'Could not connect to', 'Unable to connect to',
    'Connection timed out', 'Connection refused';
my ($rc, $out);
my $t0 = time;
($rc, $out) = run({}, 'nice', '-n', '10', $script);
my $took = time - $t0;
if ($rc != 0 && $out =~ /$offline/) {
    diag($out);
    SKIP: { skip "docker/build-static.sh could not download what it needs (no network?)", 1 }
    done_testing();
    exit;
}
is($rc, 0, sprintf('docker/build-static.sh (%.0fs)', $took)) or diag($out);
like($out, qr/^==> (?:built static nginx in \d+s|static nginx up to date) \(key [0-9a-f]{64}\)$/m,
     '... built, or found its build up to date');
if ($out =~ /up to date/) { note(sprintf('static nginx reused (%.0fs)', $took)) }
else                       { diag(sprintf('static nginx built in %.0fs', $took)) }
unless ($rc == 0 && -x $bin) {
    done_testing();
    exit;
}

# (how long it takes is not checked: on a loaded machine that says
# nothing; "up to date" says nothing was rebuilt)
($rc, $out) = run({}, $script);
is($rc, 0, 'run again') or diag($out);
like($out, qr/^==> static nginx up to date/m, '... nothing left to do');
my ($key) = $out =~ /up to date \(key ([0-9a-f]{64})\)/;
is(slurp("$static/built.stamp"), ($key // 'none') . "\n", 'the stamp is the key of the sources');
($rc, my $key2) = run({}, $script, 'stamp');
is($key2, ($key // 'none') . "\n", '... which build-static.sh stamp prints');

# ----------------------------------------------------------- the binary --

($rc, $out) = run({}, $bin, '-V');
is($rc, 0, 'nginx -V');
like($out, qr/--add-module=\Q$root\E(\s|$)/, 'the module is compiled in (--add-module)');
unlike($out, qr/--add-dynamic-module/, '... not as a dynamic module');
like($out, qr/--with-$_\b/, "with $_") for qw(http_ssl_module http_stub_status_module
                                              http_realip_module threads);
like($out, qr/built with OpenSSL 3/, 'OpenSSL 3');

($rc, $out) = run({}, 'ldd', $bin);
is($rc, 0, 'ldd nginx');
like($out, qr/^\s*lib$_[\w.-]*\.so\S* => \//m, "links lib$_") for qw(mariadb hiredis yajl crypto);
unlike($out, qr/not found/, 'every library found');
# the Debian package of each library: the runtime stage must install
# exactly those (libc6 is in every image)
my %lib_pkg;
for my $path ($out =~ /=> (\/\S+)/g) {
    my @try = ($path, $path =~ m{^/usr(/.*)} ? $1 : "/usr$path");
    my $pkg;
    for my $p (@try) {
        my ($r, $o) = run({}, 'dpkg-query', '-S', $p);
        if ($r == 0 && $o =~ /^([^:,\s]+)(?::\w+)?: /) { $pkg = $1; last }
    }
    $lib_pkg{$path} = $pkg // "?($path)";
}
my %pkg = map { $_ => 1 } values %lib_pkg;
delete $pkg{libc6};
ok((grep { $_ eq 'openssl' } @runtime_pkgs),
   'the runtime stage installs openssl (the entrypoint\'s self-signed certificate in development)');
is_deeply([ sort keys %pkg ], [ grep { $_ ne 'openssl' } @runtime_pkgs ],
          'and the packages of the libraries nginx links')
    or diag(explain(\%lib_pkg));

# the production template, rendered by build-static.sh: the image's default
# is the ConfigMap's nginx.conf; with MODULE empty (no load_module) and test
# paths, nginx -t accepts it
($rc, $out) = run({}, $script, 'render-conf', "$tmp/image.conf");
is($rc, 0, 'build-static.sh render-conf: the image\'s default nginx.conf') or diag($out);
is(slurp("$tmp/image.conf"), slurp("$root/k8s/base/nginx.conf"),
   '... is k8s/base/nginx.conf, the ConfigMap\'s');

my %keys = (
    'ops-admin' => [ 'a' x 40, 'read,transfer,admin' ],
    'reader'    => [ 'r' x 40, 'read' ],
);
spew("$tmp/keys", join('', map { "$_ $keys{$_}[0] $keys{$_}[1]\n" } sort keys %keys), 0644);

# the API listener's certificate, for 127.0.0.1, from a CA of the test's
chmod 0755, $tmp;
my $ca = RBCS::Test::tls_ca($tmp, 'ca');
my $cert = RBCS::Test::tls_cert($ca, $tmp, 'api', 'IP:127.0.0.1');

mkdir "$tmp/t" or die;
chmod 0755, "$tmp/t";
($rc, $out) = run({}, $script, 'render-conf', "$tmp/t/nginx.conf",
    "PREFIX=$tmp/t", "KEYS_FILE=$tmp/keys", 'ACCESS_LOG=/dev/null',
    'MYSQL_HOST=127.0.0.1', "MYSQL_PORT=$RBCS::Test::MYSQL_PORT", 'MYSQL_USER=rbcs',
    'MYSQL_PASSWORD=rbcs', 'REDIS_HOST=127.0.0.1', "REDIS_PORT=$RBCS::Test::REDIS_PORT",
    "REDIS_PASSWORD_FILE=$RBCS::Test::REDIS_PASSWORD_FILE",
    "REDIS_HMAC_KEY_FILE=$RBCS::Test::REDIS_HMAC_KEY_FILE",
    'HTTP_PORT=' . free_port(), 'OPS_PORT=' . free_port(),
    "TLS_CERT=$cert->{crt}", "TLS_KEY=$cert->{key}",
    'USER_DIRECTIVE=' . ($> == 0 ? 'user nobody nogroup;' : ''));
is($rc, 0, 'render-conf with test values') or diag($out);
unlike(slurp("$tmp/t/nginx.conf"), qr/^\s*load_module/m, '... no load_module in it');
($rc, $out) = run({}, $bin, '-t', '-p', "$tmp/t/", '-c', "$tmp/t/nginx.conf", '-e', 'stderr');
is($rc, 0, 'nginx -t: the production configuration, with no module to load') or diag($out);

# ------------------------------------------------------------ it serves --

sub signer {   # signer(sub { request(method, path, body, headers) }) -> sub
    my ($send) = @_;
    return sub {
        my ($method, $path, $body, $id) = @_;
        $body //= '';
        my $ts = int time;
        my ($p, $q) = split /\?/, $path, 2;
        my $sig = hmac_sha256_hex(join("\n", $method, $p, $q // '', $ts, sha256_hex($body)),
                                  $keys{$id}[0]);
        my %h = ('X-RBCS-Key-Id' => $id, 'X-RBCS-Timestamp' => $ts, 'X-RBCS-Signature' => $sig);
        $h{'Content-Type'} = 'application/json' if length $body;
        return $send->($method, $path, $body, \%h);
    };
}
my $json = JSON::PP->new->canonical;
sub jget { my ($r, $k) = @_; my $j = eval { decode_json($r->{body}) }; return $j ? $j->{$k} : undef }

my $ops = free_port();
my $template = slurp("$root/conf/nginx.prod.conf.in");
my $t = RBCS::Test->new(
    nginx => $bin,
    conf  => $template,
    vars  => {
        MODULE => '', OPS_PORT => $ops, KEYS_FILE => "$tmp/keys", ACCESS_LOG => "$tmp/access.log",
        MYSQL_HOST => '127.0.0.1', MYSQL_USER => 'rbcs', MYSQL_PASSWORD => 'rbcs',
        REDIS_HOST => '127.0.0.1', TLS_CERT => $cert->{crt}, TLS_KEY => $cert->{key},
        WORKERS => 2, HTTP_CONF => '', SERVER_CONF => '',
    },
    tls => { ca => $ca->{crt} },      # the API listener is TLS
);
my $signed = signer(sub {
    my ($m, $path, $body, $h) = @_;
    my $r = $t->request($m, $path, length $body ? (body => $body) : (), headers => $h);
    return { status => $r->{status}, body => $r->{body} };
});

is($signed->('POST', '/accounts', $json->encode({ accountNumber => 'ST-1', initialBalance => '100.00' }),
             'ops-admin')->{status}, 201, 'static nginx: an account opened');
is($signed->('POST', '/accounts', $json->encode({ accountNumber => 'ST-2' }), 'ops-admin')->{status},
   201, '... and another');
my $r = $signed->('POST', '/accounts/transactions', $json->encode({
    transactionId => 'st-1', sourceAccountNumber => 'ST-1',
    destinationAccountNumber => 'ST-2', amount => '30.00' }), 'ops-admin');
is($r->{status}, 201, 'a transfer applied');
is(jget($r, 'sourceBalance'), '70.00', '... the source balance after it');
is(jget($signed->('GET', '/accounts/ST-1/balance', '', 'reader'), 'balance'), '70.00', 'balance of ST-1');
is(jget($signed->('GET', '/accounts/ST-2/balance?consistency=strong', '', 'reader'), 'balance'), '30.00',
   'balance of ST-2, from MariaDB');
is($t->request('GET', '/accounts/ST-1/balance')->{status}, 401, 'unsigned: 401 (auth is on)');

my $http = HTTP::Tiny->new(timeout => 5, verify_SSL => 1,
                           SSL_options => { SSL_ca_file => $ca->{crt} });
my $m = $http->get("http://127.0.0.1:$ops/metrics");
is($m->{status}, 200, '/metrics on the operations listener');
like($m->{content}, qr/^rbcs_transfers_total\{outcome="completed"\} 1$/m, '... counts the transfer');

($rc, $out) = run({}, "$docker/healthcheck", $ops);
is($rc, 0, 'docker/healthcheck (the HEALTHCHECK) passes') or diag($out);
like($out, qr/GET \/healthz: 200/, '... on GET /healthz');
{
    # a port bound here and not listening: refused for sure, and nobody
    # else's meanwhile
    my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                       Proto => 'tcp') or die "bind: $!";
    ($rc, $out) = run({}, "$docker/healthcheck", $closed->sockport);
    isnt($rc, 0, 'and fails where nothing listens');
}

# ----------------------------------------- started the image's way --

# k8s/rbcs-entrypoint.sh with the image's default configuration
# (render-conf: credentials left for the entrypoint, the access log on
# stdout), the paths of the container moved here, on the harness' database
my $e = "$tmp/entry";
mkdir $_ or die "$_: $!" for $e, "$e/prefix", "$e/db";
chmod 0755, $e, "$e/prefix";
spew("$e/db/username", "rbcs\n");
spew("$e/db/password", "rbcs\n");
my ($http_port, $ops_port) = (free_port(), free_port());
$ops_port = free_port() while $ops_port == $http_port;   # two listeners, not one
($rc, $out) = run({}, $script, 'render-conf', "$e/nginx.conf",
    "PREFIX=$e/prefix", "KEYS_FILE=$tmp/keys", 'MYSQL_HOST=127.0.0.1',
    "MYSQL_PORT=$RBCS::Test::MYSQL_PORT", 'MYSQL_DATABASE=' . $t->dbname,
    'REDIS_HOST=127.0.0.1', "REDIS_PORT=$RBCS::Test::REDIS_PORT",
    'REDIS_PREFIX=' . $t->redis_prefix, "HTTP_PORT=$http_port", "OPS_PORT=$ops_port",
    "REDIS_PASSWORD_FILE=$RBCS::Test::REDIS_PASSWORD_FILE",
    "REDIS_HMAC_KEY_FILE=$RBCS::Test::REDIS_HMAC_KEY_FILE",
    "TLS_CERT=$cert->{crt}", "TLS_KEY=$cert->{key}");
is($rc, 0, 'the image\'s configuration, for this machine') or diag($out);

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    @ENV{qw(RBCS_CONF_IN RBCS_DB_DIR RBCS_PREFIX RBCS_NGINX)} =
        ("$e/nginx.conf", "$e/db", "$e/prefix", $bin);
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$e/stdout" or die;
    open STDERR, '>', "$e/stderr" or die;
    setpgrp(0, 0);
    exec "$root/k8s/rbcs-entrypoint.sh" or exit 127;
}
# ready: /readyz answers 200 on the operations port (nginx has bound both
# ports by then, and reaches MariaDB); given up when it exits, or after 30 s
my $exited;
my $ready = RBCS::Test::wait_for(30, sub {
    $exited = 1 if waitpid($pid, WNOHANG) == $pid;
    return $exited || $http->get("http://127.0.0.1:$ops_port/readyz")->{status} == 200;
}, 0.1) && !$exited;
ok($ready, 'entrypoint + static nginx in the foreground: /readyz 200')
    or diag(-e "$e/stderr" ? slurp("$e/stderr") : 'no stderr');
my $esigned = signer(sub {
    my ($m, $path, $body, $h) = @_;
    my $res = $http->request($m, "https://127.0.0.1:$http_port$path",
                             { headers => $h, length $body ? (content => $body) : () });
    return { status => $res->{status}, body => $res->{content} };
});
my $er = $esigned->('POST', '/accounts/transactions', $json->encode({
    transactionId => 'st-2', sourceAccountNumber => 'ST-2',
    destinationAccountNumber => 'ST-1', amount => '5.00' }), 'ops-admin');
is($er->{status}, 201, 'a transfer through it');
is(jget($esigned->('GET', '/accounts/ST-2/balance', '', 'reader'), 'balance'), '25.00',
   '... and the balance');
is(jget($signed->('GET', '/accounts/ST-1/balance?consistency=strong', '', 'reader'), 'balance'),
   '75.00', 'the other instance (the harness\' nginx) reads it');
# nginx logs a request when it is done with it, which may be after the
# client has the answer (HTTP::Tiny keeps the connection): wait for it
ok(RBCS::Test::wait_for(5, sub {
       grep { ($_->{transaction_id} // '') eq 'st-2' && $_->{status} == 201 }
       map { eval { decode_json($_) } // () } split /\n/, slurp("$e/stdout") }),
   'the JSON access log is on stdout');
is(readlink("$e/prefix/error.log"), '/dev/stderr', 'the error log is stderr');

kill 'QUIT', $pid;
my $status;
my $gone = RBCS::Test::wait_for(30, sub {
    return 0 unless waitpid($pid, WNOHANG) == $pid;
    $status = $?;
    return 1;
}, 0.1);
ok($gone, 'SIGQUIT (the STOPSIGNAL) stops it');
is($gone ? $status : -1, 0, '... with exit status 0');
unless ($gone) {
    kill 'KILL', -$pid;
    waitpid($pid, 0);
}
my $stderr = -e "$e/stderr" ? slurp("$e/stderr") : '';
unlike($stderr, qr/\[(?:alert|emerg|crit)\]|signal \d+/, 'no alert in its error log') or diag($stderr);

done_testing();
