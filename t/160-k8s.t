#!/usr/bin/perl

# The Kubernetes manifests (k8s/), offline: no cluster, no image.
#
#   - k8s/check.sh passes: every overlay renders with Debian's kubectl
#     (kustomize), every object validates against the Kubernetes API schemas
#     (npm kubernetes-models, unknown fields included), the overlays hold
#     what the service needs (the rules of k8s/validate.mjs: the Deployment's
#     replicas, probes, drain, security context, spread, resources and
#     mounts, the Service, the HPA, the PodDisruptionBudget, the scraping,
#     the databases of each overlay), and yamllint is clean;
#   - k8s/base/nginx.conf is conf/nginx.prod.conf.in rendered here with
#     k8s/base/nginx-conf.env;
#   - the entrypoint fills the credentials in, and nginx -t accepts the
#     result;
#   - broken copies of the tree (a required object removed, a field of the
#     wrong type, an unknown field, a stale nginx.conf, bad YAML, a rule of
#     k8s/validate.mjs broken, ...) make k8s/check.sh fail, each with the
#     reason.

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use JSON::PP;
use Test::More;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $tmp = tempdir('rbcs-k8s-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub run {   # run(\%env, CMD...): (exit status, output)
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

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub spew {
    my ($f, $s) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $s;
    close $fh or die "$f: $!";
}

# ------------------------------------------------------- k8s/check.sh --

ok(-x "$root/k8s/check.sh", 'k8s/check.sh is there and executable');
like(slurp("$root/.gitignore"), qr{^/?k8s/node_modules/?$}m, 'k8s/node_modules is git-ignored');
my $lock = decode_json(slurp("$root/k8s/package-lock.json"));
like($lock->{packages}{'node_modules/kubernetes-models'}{version} // '', qr/^\d+\.\d+\.\d+$/,
     'k8s/package-lock.json pins kubernetes-models');

my ($rc, $out) = run({}, "$root/k8s/check.sh");
my ($kubectl) = $out =~ /^==> kubectl: (\S+)/m;

# The first run installs k8s/check.sh's tools into the checkout (npm ci
# into k8s/node_modules; Debian's kubectl into k8s/.tools when
# /usr/bin/kubectl is another package's).  A machine that cannot reach the
# network then cannot check the manifests: what needs the tools is skipped,
# saying why.  Any other failure is one (e.g. a lock file out of step).
my $offline = $rc != 0
    && $out =~ /npm ci failed|apt-get download kubernetes-client failed/
    && $out =~ /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|npm ERR! network|
                Temporary[ ]failure[ ]resolving|Could[ ]not[ ]resolve|Could[ ]not[ ]connect[ ]to|
                Unable[ ]to[ ]connect[ ]to|Network[ ]is[ ]unreachable/x;
diag("k8s/check.sh could not install its tools:\n$out") if $offline;

my @overlays = map { m{/([^/]+)/kustomization\.yaml$} ? $1 : () }
               glob("$root/k8s/overlays/*/kustomization.yaml");
is_deeply([ sort @overlays ], [ qw(dev prod) ], 'the overlays: dev and prod');

SKIP: {
    skip 'k8s/check.sh could not install its tools (no network?)', 1 if $offline;
    is($rc, 0, 'k8s/check.sh: every overlay renders, validates and lints') or diag($out);
    like($out, qr/^==> k8s\/base\/nginx\.conf is conf\/nginx\.prod\.conf\.in rendered/m,
         'nginx.conf of the ConfigMap is a fresh rendering of the production template');
    like($out, qr/^==> yamllint: k8s\/ sources clean$/m, 'yamllint: the sources');
    like($out, qr/^==> yamllint: rendered overlays clean$/m, 'yamllint: the rendered overlays');
    for my $o (@overlays) {
        like($out, qr/^==> rendered overlays\/$o: \d+ objects$/m, "$o renders (kubectl kustomize)");
        like($out, qr/^ok - $o: (\d+)\/\1 objects valid against the Kubernetes API schemas/m,
             "$o: every object valid against the API schemas");
        like($out, qr/^ok - $o: required objects and fields$/m, "$o: required objects and fields");
    }
}

# ----------------------------------------- nginx.conf, rendered here --

# conf/nginx.prod.conf.in with k8s/base/nginx-conf.env, rendered here, apart
# from k8s/check.sh's renderer (k8s/validate.mjs checks that the overlays'
# ConfigMaps hold k8s/base/nginx.conf)
my %val;
for (split /\n/, slurp("$root/k8s/base/nginx-conf.env")) {
    next if /^\s*(#|$)/;
    /^([A-Z_]+)=(.*)$/ or die "nginx-conf.env: $_";
    $val{$1} = $2;
}
(my $conf = slurp("$root/conf/nginx.prod.conf.in"))
    =~ s/\$\{([A-Z_]+)\}/exists $val{$1} ? $val{$1} : die "no value for $1"/ge;
is(slurp("$root/k8s/base/nginx.conf"), $conf, 'k8s/base/nginx.conf = conf/nginx.prod.conf.in rendered');

# ------------------------------------- the entrypoint and nginx -t --

# k8s/rbcs-entrypoint.sh fills the credentials into the ConfigMap's
# nginx.conf; the result, with the dev overlay's keys file, must be a
# configuration that nginx and the module accept.  Paths of the pod are
# moved into a temporary directory, the database names to 127.0.0.1 (they
# are resolved when the configuration is read), and the module loaded with
# load_module (the image has it compiled in).
SKIP: {
    my $module = $ENV{RBCS_MODULE} // "$root/build/ngx_rbcs_module.so";
    my $nginx = $ENV{RBCS_NGINX} // '/usr/sbin/nginx';
    skip "module $module not built or no $nginx (make test builds it)", 17
        unless -f $module && -x $nginx;
    my $e = "$tmp/entry";
    mkdir $_ or die "$_: $!" for $e, "$e/prefix", "$e/db", "$e/tls";
    (my $c = slurp("$root/k8s/base/nginx.conf")) =~ s{^}{load_module $module;\n};
    $c =~ s{/var/lib/rbcs\b}{$e/prefix}g;
    $c =~ s{\Q$val{KEYS_FILE}\E}{$root/k8s/overlays/dev/dev-keys}g;
    $c =~ s{/etc/rbcs/redis\b}{$e/redis}g;   # the Secret rbcs-redis
    mkdir "$e/redis" or die "$e/redis: $!";
    spew("$e/redis/password", "dev-only-redis-not-a-secret\n");
    spew("$e/redis/hmac-key", 'k' x 40 . "\n");
    $c =~ s{\b(?:rbcs-mysql|rbcs-redis):}{127.0.0.1:}g;
    $c =~ s{/etc/rbcs/tls/}{$e/tls/}g;
    spew("$e/nginx.conf", $c);
    my $password = q{p"a\\ss;{$x}'};
    spew("$e/db/username", "rbcs\n");
    spew("$e/db/password", $password);
    my %eenv = (RBCS_CONF_IN => "$e/nginx.conf", RBCS_DB_DIR => "$e/db",
                RBCS_PREFIX => "$e/prefix", RBCS_NGINX => $nginx,
                RBCS_TLS_DIR => "$e/tls");

    # the API listener's certificate: none in the Secret's directory
    my ($erc, $eout) = run(\%eenv, "$root/k8s/rbcs-entrypoint.sh", '-t');
    isnt($erc, 0, 'no certificate in the TLS Secret\'s directory: nginx -t fails');
    like($eout, qr/cannot load certificate "\Q$e\E\/tls\/tls\.crt"/, '... on ssl_certificate');
    # development: a self-signed one, made at start
    ($erc, $eout) = run({ %eenv, RBCS_TLS_SELF_SIGNED => 1 }, "$root/k8s/rbcs-entrypoint.sh", '-t');
    is($erc, 0, 'RBCS_TLS_SELF_SIGNED=1: nginx -t passes') or diag($eout);
    like($eout, qr/a self-signed certificate for development/, '... and says it made one');
    like(slurp("$e/prefix/nginx.conf"),
         qr{^\s*ssl_certificate\s+\Q$e\E/prefix/tls/tls\.crt;\s*\n\s*ssl_certificate_key\s+\Q$e\E/prefix/tls/tls\.key;}m,
         '... which the filled configuration uses');
    like(`openssl x509 -in '$e/prefix/tls/tls.crt' -noout -ext subjectAltName 2>&1`,
         qr/DNS:localhost, DNS:rbcs, IP Address:127\.0\.0\.1/, '... for localhost and rbcs');
    # the Secret's certificate wins over a self-signed one
    system('cp', "$e/prefix/tls/tls.crt", "$e/prefix/tls/tls.key", "$e/tls/") == 0 or die;
    unlink "$e/prefix/tls/tls.crt", "$e/prefix/tls/tls.key";
    ($erc, $eout) = run({ %eenv, RBCS_TLS_SELF_SIGNED => 1 }, "$root/k8s/rbcs-entrypoint.sh", '-t');
    is($erc, 0, 'a certificate in the Secret\'s directory: nginx -t passes') or diag($eout);
    ok(!-e "$e/prefix/tls/tls.crt" && slurp("$e/prefix/nginx.conf") =~ m{ssl_certificate\s+\Q$e\E/tls/tls\.crt;},
       '... with it, even with RBCS_TLS_SELF_SIGNED=1');

    ($erc, $eout) = run(\%eenv, "$root/k8s/rbcs-entrypoint.sh", '-t');
    is($erc, 0, 'rbcs-entrypoint.sh -t: nginx accepts the filled configuration') or diag($eout);
    like($eout, qr/test is successful/, '... nginx -t says so');
    my $filled = slurp("$e/prefix/nginx.conf");
    like($filled, qr/^\s*rbcs_mysql_user "rbcs";$/m, 'the user, quoted');
    like($filled, qr/^\s*rbcs_mysql_password "p\\"a\\\\ss;\{\$x\}'";$/m,
         'the password, quoted and escaped for nginx');
    is(sprintf('%o', (stat "$e/prefix/nginx.conf")[2] & 0777), '600',
       'the filled nginx.conf is readable by its owner only');
    is(readlink("$e/prefix/error.log"), '/dev/stderr', 'error.log is the container\'s stderr');
    unlike($filled, qr/\@MYSQL_(USER|PASSWORD)\@/, 'no placeholder left');

    spew("$e/db/password", "two\nlines\n");
    ($erc, $eout) = run(\%eenv, "$root/k8s/rbcs-entrypoint.sh", '-t');
    isnt($erc, 0, 'a password with a line break is refused');
    like($eout, qr/holds a line break/, '... with the reason');
}

# ----------------------------------------------------- broken copies --

if ($offline) {     # each copy would try to install the tools again
    done_testing();
    exit;
}

# a copy of what k8s/check.sh reads, with the same node_modules
sub copy_tree {
    my ($dir) = @_;
    mkdir $dir or die "$dir: $!";
    mkdir "$dir/conf" or die;
    system('cp', '-p', "$root/conf/nginx.prod.conf.in", "$root/conf/stack.sh",
           "$root/conf/schema.sql", "$root/conf/grants.sql", "$dir/conf/") == 0 or die;
    mkdir "$dir/k8s" or die;
    opendir my $dh, "$root/k8s" or die;
    for my $e (grep { !/^(\.|\.\.|node_modules|\.tools)$/ } readdir $dh) {
        system('cp', '-a', "$root/k8s/$e", "$dir/k8s/") == 0 or die "cp $e";
    }
    closedir $dh;
    symlink("$root/k8s/node_modules", "$dir/k8s/node_modules") or die;
}

sub edit {   # edit(FILE, sub { s/// on $_ }): dies when nothing changed
    my ($f, $code) = @_;
    local $_ = slurp($f);
    my $before = $_;
    $code->();
    die "$f: the edit changed nothing" if $_ eq $before;
    spew($f, $_);
}

my @broken = (
    [ 'the PodDisruptionBudget removed',
      sub { edit("$_[0]/k8s/base/kustomization.yaml", sub { s/^  - pdb\.yaml\n//m }) },
      qr/PodDisruptionBudget: none covers the rbcs pods/ ],
    [ 'the HPA without its requests-per-second metric',
      sub { edit("$_[0]/k8s/base/hpa.yaml", sub { s/name: rbcs_http_requests_per_second/name: rbcs_requests/ }) },
      qr/no Pods metric rbcs_http_requests_per_second/ ],
    [ 'replicas of the wrong type',
      sub { edit("$_[0]/k8s/overlays/prod/rbcs-patch.yaml", sub { s/replicas: 3/replicas: three/ }) },
      qr{Deployment/rbcs .*schema: /spec/replicas must be integer} ],
    [ 'a misspelt field (readinesProbe)',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/readinessProbe:/readinesProbe:/ }) },
      qr{schema: unknown field /spec/template/spec/containers/0/readinesProbe} ],
    [ 'a misspelt field in the ServiceMonitor',
      sub { edit("$_[0]/k8s/overlays/prod/servicemonitor.yaml", sub { s/scrapeTimeout:/scrapeTimout:/ }) },
      qr{ServiceMonitor/rbcs .*unknown field /spec/endpoints/0/scrapeTimout} ],
    [ 'the keys Secret not mounted',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s{mountPath: /etc/rbcs/keys}{mountPath: /etc/rbcs/api-keys} }) },
      qr{/etc/rbcs/keys is not the Secret rbcs-keys mounted read-only, without subPath, giving /etc/rbcs/keys/keys} ],
    [ 'a writable root filesystem',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/ }) },
      qr/readOnlyRootFilesystem is not true/ ],
    [ 'the production template changed, nginx.conf not rendered again',
      sub { edit("$_[0]/conf/nginx.prod.conf.in", sub { s/rbcs_mysql_pool_size 16;/rbcs_mysql_pool_size 8;/ }) },
      qr/k8s\/base\/nginx\.conf is not a fresh rendering of conf\/nginx\.prod\.conf\.in/ ],
    [ 'the schema changed, its dev copy not',
      sub { edit("$_[0]/conf/schema.sql", sub { $_ .= "-- changed\n" }) },
      qr/k8s\/overlays\/dev\/schema\.sql differs from conf\/schema\.sql/ ],
    [ 'the grants changed, their dev copy not',
      sub { edit("$_[0]/conf/grants.sql", sub { $_ .= "-- changed\n" }) },
      qr/k8s\/overlays\/dev\/grants\.sql differs from conf\/grants\.sql/ ],
    [ 'an overlay that does not render',
      sub { edit("$_[0]/k8s/overlays/dev/kustomization.yaml", sub { s/- redis\.yaml/- valkey.yaml/ }) },
      qr/overlays\/dev does not render/ ],
    [ 'a YAML lint error (a duplicate key)',
      sub { edit("$_[0]/k8s/base/service.yaml", sub { s/^  type: ClusterIP$/  type: ClusterIP\n  type: ClusterIP/m }) },
      qr/duplication of key "type"/ ],
    [ 'an unknown kind',
      sub { edit("$_[0]/k8s/overlays/prod/servicemonitor.yaml", sub { s/kind: ServiceMonitor/kind: ServiceMonitr/ }) },
      qr/no Kubernetes schema for apiVersion monitoring\.coreos\.com\/v1 kind ServiceMonitr/ ],
    [ 'a namespace that does not enforce the restricted Pod Security Standard',
      sub { edit("$_[0]/k8s/overlays/prod/namespace.yaml", sub { s/enforce: restricted/enforce: baseline/ }) },
      qr{prod: Namespace/rbcs: does not enforce the restricted Pod Security Standard} ],
    [ 'a module to load (the image has it compiled in)',
      sub { edit("$_[0]/k8s/base/nginx-conf.env", sub { s{^MODULE=$}{MODULE=load_module modules/ngx_rbcs_module.so;}m }) },
      qr/MODULE is not empty/ ],
    [ 'a user directive (the pod runs as uid 10001)',
      sub { edit("$_[0]/k8s/base/nginx-conf.env", sub { s/^USER_DIRECTIVE=$/USER_DIRECTIVE=user nobody;/m }) },
      qr/USER_DIRECTIVE is not empty/ ],
    [ 'an operations port the image does not expose',
      sub { edit("$_[0]/k8s/base/nginx-conf.env", sub { s/^OPS_PORT=9145$/OPS_PORT=9146/m }) },
      qr/HTTP_PORT 8080 and OPS_PORT 9146 are not the ports the image exposes, 8080 and 9145/ ],
    [ 'the image without a tag',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/image: rbcs:latest$/image: rbcs/m }) },
      qr/dev: Deployment\/rbcs container rbcs: image rbcs is not the rbcs image with a tag/ ],
    [ 'a container port beyond http and ops',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub {
          s/^(( +)- name: ops\n +containerPort: 9145\n +protocol: TCP\n)/$1$2- name: debug\n$2  containerPort: 9999\n/m }) },
      qr/ports are \{.*"debug":9999\}, not only http 8080 and ops 9145/ ],
    [ 'the startup probe on /readyz',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s{(startupProbe:\n +httpGet:\n +path:) /healthz}{$1 /readyz} }) },
      qr{startupProbe is not httpGet /healthz on the ops port 9145} ],
    [ 'prod: a request that is not a limit',
      sub { edit("$_[0]/k8s/overlays/prod/rbcs-patch.yaml", sub {
          s/^( +)(requests:\n(?:\1  .*\n)+)/$1$2$1  ephemeral-storage: 1Gi\n/m }) },
      qr/prod: .*requests are not equal to limits/ ],
    [ 'the pod without runAsUser (the container\'s alone)',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/^ {8}runAsUser: 10001\n//m }) },
      qr/does not run as uid 10001/ ],
    [ 'the container without runAsNonRoot (the pod\'s alone)',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/^ {12}runAsNonRoot: true\n//m }) },
      qr/runAsNonRoot is not true for the pod and the container/ ],
    [ 'the pod without a seccompProfile (the container\'s alone)',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/^ {8}seccompProfile:\n {10}type: RuntimeDefault\n//m }) },
      qr/seccompProfile is not RuntimeDefault for the pod and the container/ ],
    [ 'capabilities dropped: not ["ALL"]',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/drop: \["ALL"\]/drop: ["ALL", "NET_RAW"]/ }) },
      qr/capabilities do not drop \["ALL"\]/ ],
    [ 'the database credentials from another Secret',
      sub { edit("$_[0]/k8s/base/deployment.yaml", sub { s/secretName: rbcs-db$/secretName: rbcs-database/m }) },
      qr{/etc/rbcs/db is not the Secret rbcs-db mounted read-only} ],
    [ 'dev: an empty database user name',
      sub { edit("$_[0]/k8s/overlays/dev/kustomization.yaml", sub { s/- username=rbcs$/- username=/m }) },
      qr/Secret rbcs-db has no key username, or it is empty/ ],
    [ 'the Service without its type',
      sub { edit("$_[0]/k8s/base/service.yaml", sub { s/^  type: ClusterIP\n//m }) },
      qr{Service/rbcs: is not a ClusterIP Service} ],
    [ 'the Service exposing the operations port',
      sub { edit("$_[0]/k8s/base/service.yaml", sub { $_ .= "    - name: ops\n      port: 9145\n      targetPort: ops\n" }) },
      qr{Service/rbcs: ports are 80>http, 9145>ops, not only 80 to the container port http} ],
    [ 'prod: the scrape annotation left on',
      sub { edit("$_[0]/k8s/overlays/prod/rbcs-patch.yaml", sub { s/prometheus\.io\/scrape: "false"/prometheus.io\/scrape: "true"/ }) },
      qr{prod: Deployment/rbcs: prometheus\.io/scrape is not "false"} ],
    [ 'dev: the grants under a name that runs before the schema',
      sub { edit("$_[0]/k8s/overlays/dev/kustomization.yaml", sub { s/- service-grants\.sql=grants\.sql/- grants.sql/ }) },
      qr{not a ConfigMap holding conf/grants\.sql as service-grants\.sql} ],
    [ 'dev: MariaDB told to make the service\'s user (MARIADB_USER)',
      sub { edit("$_[0]/k8s/overlays/dev/mariadb.yaml", sub {
          s/^( +)(- name: MARIADB_DATABASE\n)/$1- name: MARIADB_USER\n$1  value: rbcs\n$1$2/m }) },
      qr/sets MARIADB_USER or MARIADB_PASSWORD/ ],
);

# the kubectl the real run used (not fetched again per copy); one kustomize
my %env = (RBCS_K8S_SECOND_KUBECTL => 'none', ($kubectl ? (RBCS_KUBECTL => $kubectl) : ()));
my $n = 0;
for my $b (@broken) {
    my ($what, $break, $expect) = @$b;
    my $dir = "$tmp/broken" . ++$n;
    copy_tree($dir);
    $break->($dir);
    my ($brc, $bout) = run(\%env, "$dir/k8s/check.sh");
    isnt($brc, 0, "broken copy fails: $what");
    like($bout, $expect, "... and says why") or diag($bout);
}

# the unbroken copy passes (so the failures above are the breakages')
copy_tree("$tmp/intact");
($rc, $out) = run(\%env, "$tmp/intact/k8s/check.sh");
is($rc, 0, 'an intact copy passes') or diag($out);

done_testing();
