package RBCS::Test;

# Test harness for the RBCS nginx module, in the spirit of nginx-tests'
# Test::Nginx.  Core Perl plus DBI/DBD::MariaDB (Debian: libdbd-mariadb-perl).
#
#   use Test::More;
#   use RBCS::Test;
#
#   my $t = RBCS::Test->new(conf => <<'EOF');   # the whole nginx.conf,
#   load_module ${MODULE};                       # ${NAME}: filled here
#   ...
#   EOF
#   my $res = $t->post_json('/accounts', { accountNumber => 'A1' });
#   is($res->{status}, 201);
#   is($res->json->{accountNumber}, 'A1');
#   done_testing();     # the harness adds one test: "no alerts in error.log"
#
# See the POD at the end of this file for everything else.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA ();
use Errno ();
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Test::More ();
use Time::HiRes qw(sleep time);
use File::Temp ();

our $VERSION = '0.01';

# --------------------------------------------------------------- settings --

our $ROOT = $ENV{RBCS_ROOT}
    // abs_path(dirname(abs_path(__FILE__)) . '/../../..');
our $MODULE      = $ENV{RBCS_MODULE}            // "$ROOT/build/ngx_rbcs_module.so";
our $NGINX       = $ENV{RBCS_NGINX}             // '/usr/sbin/nginx';
our $VAR         = $ENV{RBCS_TEST_VAR}          // "$ROOT/var/test";
our $MYSQL_PORT  = $ENV{RBCS_TEST_MYSQL_PORT}   // 13306;
our $MYSQL_SOCK  = $ENV{RBCS_TEST_MYSQL_SOCKET} // "$VAR/mariadb/mariadb.sock";
our $REDIS_PORT  = $ENV{RBCS_TEST_REDIS_PORT}   // 16379;
our $MARIADBD    = $ENV{RBCS_MARIADBD}          // _which('mariadbd', '/usr/sbin/mariadbd');
our $MARIADB_CLI = _which('mariadb', '/usr/bin/mariadb');
our $SCHEMA      = $ENV{RBCS_SCHEMA}            // "$ROOT/conf/schema.sql";
our $GRANTS      = "$ROOT/conf/grants.sql";
# Redis secrets of the test stack (conf/stack.sh redis_secrets): the
# service's ACL user "rbcs" and the pods' HMAC key (the admin's is
# redis_secret('admin'))
our $REDIS_PASSWORD_FILE = "$VAR/secrets/redis.password";
our $REDIS_HMAC_KEY_FILE = "$VAR/secrets/redis.hmac-key";
our $KEEP        = $ENV{RBCS_TEST_KEEP};        # keep databases of passed tests
our $TIMEOUT     = 10;                          # default request timeout, s

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my @INSTANCES;          # weak refs to every live RBCS::Test
my %PRIVATE;            # port => RBCS::Test::MariaDB (weak)
my @LOG_PROBLEMS;       # [ error.log, allow-patterns ] of stopped instances
my @LOG_PREFIXES;
my $STARTED = 0;        # instances started by this test file
my $CHECKED = 0;        # the error.log test was emitted
my $SEQ = 0;            # instances created (database / prefix suffix)
my $RUNSEQ = 0;
my $MAIN_PID = $$;

# Stop nginx and private servers on Ctrl-C / TERM too (END blocks run on exit).
my %SIGNO = (INT => 2, TERM => 15, HUP => 1);
for my $sig (keys %SIGNO) {
    $SIG{$sig} = sub { exit 128 + $SIGNO{$sig} }
        if !defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT';
}

# The "no alerts" test runs when done_testing() is called or, with a fixed
# plan, at END time (Test2 calls follow-ups exactly once in either case).
eval {
    require Test2::API;
    Test2::API::test2_add_callback_testing_done(sub { _final_check() });
    1;
};

END {
    if ($$ == $MAIN_PID) {
        local $?;
        _final_check();
        $_->stop for grep { defined } values %PRIVATE;
    }
}

sub _which {
    my ($name, $fallback) = @_;
    for my $d (split /:/, ($ENV{PATH} // '') . ':/usr/sbin:/usr/bin:/sbin:/bin') {
        return "$d/$name" if length $d && -x "$d/$name";
    }
    return $fallback;
}

# ------------------------------------------------------------ constructor --

sub new {
    my ($class, %o) = @_;

    my $self = bless {
        # as given: conf (nginx.conf, ${NAME} placeholders), tls ({ ca =>
        # file }: API over TLS), redis_prefix, mysql_socket, name
        (map { $_ => $o{$_} } qw(conf tls redis_prefix mysql_socket name)),
        env         => { %{ $o{env} // {} } },   # nginx's environment (the
                                                 # conf keeps it: env NAME;)
        allow_log   => [ @{ $o{allow_log} // [] } ],
        wait_healthz => $o{wait_healthz} // 1,
        schema      => exists $o{schema} ? $o{schema} : $SCHEMA,
        mysql_port  => $o{mysql_port}  // $MYSQL_PORT,
        redis_port  => $o{redis_port}  // $REDIS_PORT,
        vars        => { %{ $o{vars} // {} } },
        nginx       => $o{nginx} // $NGINX,      # another binary (static build)
    }, $class;
    croak 'RBCS::Test->new needs conf => the nginx.conf to run' unless defined $self->{conf};

    if (defined $o{nginx} || $MODULE eq '') {
        # a binary of the caller's (e.g. with the module compiled in): it
        # must be there, and needs no module file
        # (RBCS_MODULE empty: RBCS_NGINX is such a binary, e.g. the
        # sanitized one of `make test-sanitize`)
        croak "nginx binary $self->{nginx} not found" unless -x $self->{nginx};
    } else {
        _skip_all("nginx binary $NGINX not found") unless -x $NGINX;
        _skip_all("module $MODULE not built (run `make test`, or `make build` "
            . "and start the test stack with `eval \"\$(conf/stack.sh test-up)\"`)")
            unless -f $MODULE;
    }
    _skip_all("DBI/DBD::MariaDB missing (apt-get install libdbd-mariadb-perl)")
        unless eval { require DBI; require DBD::MariaDB; 1 };

    $self->{mysql_socket} //= $PRIVATE{ $self->{mysql_port} }
        ? $PRIVATE{ $self->{mysql_port} }->socket
        : $self->{mysql_port} == $MYSQL_PORT ? $MYSQL_SOCK : undef;

    # a socket the caller names is the server behind mysql_port even when
    # that port is not the server's own (a relay in front of it)
    $self->{admin_port} = defined $o{mysql_socket} ? undef : $self->{mysql_port};
    my $admin = eval { _admin_connect($self->{admin_port}, $self->{mysql_socket}) };
    unless ($admin) {
        my $why = $@ || 'unknown error';
        $why =~ s/\s+\z//;
        croak "MariaDB on port $self->{mysql_port} not reachable: $why"
            if $self->{mysql_port} != $MYSQL_PORT;   # a private one: a failure
        _skip_all("test MariaDB not reachable ($why); run `make test` or start it with "
            . "`eval \"\$(conf/stack.sh test-up)\"`");
    }
    $self->{admin} = $admin;

    # fresh database
    my $base = $self->{name} // basename($0);
    $base =~ s/\.t\z//;
    $base = lc $base;
    $base =~ s/[^a-z0-9]+/_/g;
    $base = substr($base, 0, 36);
    my $n = ++$SEQ;
    if ($o{pod_of}) {
        # another pod of the same deployment: same database, same Redis
        # prefix
        $self->{dbname} = $o{pod_of}->dbname;
        $self->{redis_prefix} //= $o{pod_of}->redis_prefix;
        $self->{shared_db} = 1;
    } else {
        $self->{dbname} = "rbcs_t_${base}_$$" . ($n > 1 ? "_$n" : '');
        my $dbh = $admin->{dbh};
        my $qdb = $dbh->quote_identifier($self->{dbname});
        $dbh->do("DROP DATABASE IF EXISTS $qdb");
        $dbh->do("CREATE DATABASE $qdb CHARACTER SET utf8mb4");
        $self->_apply_schema;
    }

    # nginx prefix
    $self->{prefix} = "$VAR/nginx/$base-$$-$n";
    remove_tree($self->{prefix});
    make_path($self->{prefix}, { mode => 0755 });
    chmod 0755, $VAR, "$VAR/nginx", $self->{prefix};

    $self->_start_nginx;

    push @INSTANCES, $self;
    weaken($INSTANCES[-1]);
    return $self;
}

# _accessors(NAME...): a read accessor of the caller's class for each field
sub _accessors {
    my $class = caller;
    no strict 'refs';
    for my $f (@_) { *{"${class}::$f"} = sub { $_[0]{$f} } }
}

sub _skip_all {
    my ($why) = @_;
    Test::More::plan(skip_all => $why);
    exit 0;
}

# ------------------------------------------------------------- accessors --

_accessors(qw(port prefix dbname mysql_port redis_port));
sub redis_prefix { $_[0]{redis_prefix} // "$_[0]{dbname}:" }
sub conf_file  { "$_[0]{prefix}/nginx.conf" }
sub url {
    my ($self, $path) = @_;
    return ($self->{tls} ? 'https' : 'http') . "://127.0.0.1:$self->{port}" . ($path // '/');
}

sub plan {   # $t->plan($n): Test::More::plan(tests => $n + 1) (the log check)
    my ($self, $n) = @_;
    Test::More::plan(tests => $n + 1);
    return $self;
}

sub allow_log {   # $t->allow_log(qr/.../, ...): lines the final check ignores
    my ($self, @re) = @_;
    push @{ $self->{allow_log} }, @re;
    return $self;
}

# ----------------------------------------------------------------- MariaDB --

# Admin connection: through the unix socket as the current OS user (root in
# make test; mariadb-install-db --auth-root-authentication-method=socket
# lets it in).  Never the service's user rbcs: it may create no database,
# apply no schema and, on purpose, not do what tests do to inject faults.
sub _admin_connect {
    my ($port, $socket) = @_;
    die "no unix socket of the server on port " . ($port // '?') . "\n"
        unless defined $socket && -S $socket;
    my $dbh = eval { _admin_dbi("mariadb_socket=$socket") }
        or die "socket $socket: " . ($DBI::errstr // $@) . "\n";
    my ($p) = $dbh->selectrow_array('SELECT @@port');
    return { dbh => $dbh, dsn => "mariadb_socket=$socket",
             cli => [ "--socket=$socket", "--user=" . _os_user() ] }
        if !defined $port || $p == $port;
    $dbh->disconnect;
    die "$socket serves port $p, not $port\n";
}

sub _os_user { getpwuid($>) // 'root' }

# _admin_dbi($dsn [, $database]): a DBI handle as the OS user (the
# administrator over a unix socket), RaiseError and AutoCommit
sub _admin_dbi {
    my ($dsn, $db) = @_;
    require DBI;
    return DBI->connect("DBI:MariaDB:$dsn;mariadb_connect_timeout=3"
                        . (defined $db ? ";database=$db" : ''), _os_user(), '',
        { RaiseError => 1, PrintError => 0, AutoCommit => 1,
          mariadb_auto_reconnect => 0 });
}

# RBCS::Test::redis_secret('password' | 'admin' | 'hmac-key'): its text
sub redis_secret {
    my $v = _slurp("$VAR/secrets/redis.$_[0]", 1);
    $v =~ s/\s+\z//;
    return $v;
}

# What a pod with the shared key writes to Redis (src/ngx_rbcs_redis.c):
# RBCS::Test::redis_tag($prefix, $text), redis_header($prefix, $publisher,
# $seq, $generation [, $ms]) (a message's first line) and
# redis_line($prefix, $generation, $account, $version, $scale, $currency,
# $state) (a message's balance line; its last field is the stored 't').
sub redis_tag {
    my ($prefix, $text) = @_;
    return substr(Digest::SHA::hmac_sha256_hex("$prefix\n$text",
                                               redis_secret('hmac-key')), 0, 32);
}

sub redis_header {
    my ($prefix, $pub, $seq, $gen, $ms) = @_;
    my $h = "#$pub $seq $gen " . ($ms // int(time * 1000));
    return "$h " . redis_tag($prefix, $h);
}

sub redis_line {
    my ($prefix, $gen, @f) = @_;   # account version scale currency state
    my $l = join ' ', @f;
    return "$l " . redis_tag($prefix, "$l $gen");
}

sub _apply_schema {
    my ($self) = @_;
    my $schema = $self->{schema};
    return unless defined $schema;
    unless (-f $schema) {
        Test::More::diag("RBCS::Test: $schema does not exist, database $self->{dbname} left empty");
        return;
    }
    my @cmd = ($MARIADB_CLI, '--no-defaults', @{ $self->{admin}{cli} },
               "--database=$self->{dbname}");
    # after the schema, the grants: the service's user gets this
    # database's tables through its role
    for my $file ($schema, $GRANTS) {
        my $out = _run_capture(\@cmd, stdin => $file);
        croak "applying $file to $self->{dbname} failed "
            . "(exit $out->{status}):\n$out->{output}" if $out->{status} != 0;
    }
}

# RBCS::Test::drop_database($admin_dbh, $name): the database and the role
# rbcs_service's grants on its tables, which MariaDB keeps after the tables
# are gone
sub drop_database {
    my ($adm, $db) = @_;
    my $tables = $adm->selectcol_arrayref(q{SELECT Table_name FROM mysql.tables_priv
        WHERE Db = ? AND User = 'rbcs_service' AND Host = ''}, undef, $db);
    $adm->do('REVOKE ALL PRIVILEGES ON ' . $adm->quote_identifier($db, $_)
             . ' FROM rbcs_service') for @$tables;
    $adm->do('DROP DATABASE IF EXISTS ' . $adm->quote_identifier($db));
}

# $t->dbh: DBI handle on the test database (RaiseError, AutoCommit), as the
# administrator: a test may do there what the service's user may not
sub dbh {
    my ($self) = @_;
    my $dbh = $self->{dbh};
    return $dbh if $dbh && eval { $dbh->ping };
    return $self->{dbh} = _admin_dbi($self->{admin}{dsn}, $self->{dbname});
}

# $t->lock_waits: how many connections to this instance's database wait
# for a row lock right now (InnoDB LOCK WAIT).  A test that holds a lock
# polls it (wait_for) to know its transfer has reached the database and is
# held there, instead of sleeping and hoping it has.
#
# InnoDB refreshes INFORMATION_SCHEMA.INNODB_TRX only when nobody read it
# for 0.1 s (trx_i_s cache): polled faster, it would never change.  So a
# call waits until 0.15 s have passed since the previous one.
my $TRX_READ = 0;

sub lock_waits {
    my ($self) = @_;
    my $a = $self->{admin};
    $self->{admin} = $a = _admin_connect($self->{admin_port}, $self->{mysql_socket})
        unless $a->{dbh} && eval { $a->{dbh}->ping };
    my $idle = $TRX_READ + 0.15 - time;
    sleep $idle if $idle > 0;
    my ($n) = $a->{dbh}->selectrow_array(q{
        SELECT COUNT(*) FROM information_schema.innodb_trx t
          JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
         WHERE t.trx_state = 'LOCK WAIT' AND p.db = ?}, undef, $self->{dbname});
    $TRX_READ = time;
    return $n // 0;
}

# ------------------------------------------------------------------- nginx --

# RBCS::Test::free_port(): a port of 127.0.0.1 nothing listens on now.  It
# is closed again, so whoever is given it binds it later and may lose it
# to another process in between: only for a program that binds it itself
# (nginx, prometheus, ...), whose user then waits for it with wait_port
# (or another poll with a deadline).  A test's own server binds
# LocalPort => 0 in the parent and forks with the socket listening.
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot bind 127.0.0.1:0: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# RBCS::Test::wait_port($port, $timeout_s): 1 once 127.0.0.1:$port accepts
# a connection, 0 when it still does not after $timeout_s (default 10).
sub wait_port {
    my ($port, $timeout) = @_;
    return wait_for($timeout // 10, sub { _can_connect($port) }) ? 1 : 0;
}

# RBCS::Test::prometheus($prometheus, $dir, $port, $yml): a Prometheus of
# the test's own, its configuration $yml written to $dir/prometheus.yml, its
# data and prometheus.log in $dir, listening on 127.0.0.1:$port (binding it
# itself: wait_port the caller); returns its pid.
# RBCS::Test::prometheus_api($port, $path [, $query]): GET
# /api/v1/$path?query=$query, the decoded answer, or undef.
sub prometheus {
    my ($bin, $dir, $port, $yml) = @_;
    _write("$dir/prometheus.yml", $yml);
    return _spawn([ $bin, "--config.file=$dir/prometheus.yml",
                    "--storage.tsdb.path=$dir/data",
                    "--web.listen-address=127.0.0.1:$port" ],
                  '>', "$dir/prometheus.log");
}

sub prometheus_api {
    my ($port, $path, $q) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5)
        or return undef;
    my $uri = "/api/v1/$path";
    if (defined $q) {
        $q =~ s/([^A-Za-z0-9_])/sprintf '%%%02X', ord $1/ge;
        $uri .= "?query=$q";
    }
    print $s "GET $uri HTTP/1.0\r\n\r\n";
    local $/;
    return eval { RBCS::Test::Response->parse(<$s> // '')->json };
}

# RBCS::Test::wait_for($timeout_s, sub { ... }, $interval_s): calls the sub
# until it returns a true value and returns that, or undef after
# $timeout_s.  For what a test must see happen before it goes on (a
# server up, a request queued, a log line written): a poll with a
# deadline, where a fixed sleep would be a guess.
sub wait_for {
    my ($timeout, $code, $interval) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return undef if time > $deadline;
        sleep($interval // 0.05);
    }
}

# RBCS::Test::parallel($n, $code): run $n child processes that each call
# $code->($k) once, all released at the same moment (half a second on);
# returns what each child's $code returned (a string, "ERROR ..." if it
# died), by $k.
sub parallel {
    my ($n, $code) = @_;
    my $dir = File::Temp::tempdir('rbcs-parallel-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $go = time + 0.5;
    my @pids;
    for my $k (0 .. $n - 1) {
        my $pid = fork // croak "fork: $!";
        if ($pid == 0) {
            sleep($go - time) if $go > time;
            my $out = eval { $code->($k) } // "ERROR $@";
            POSIX::_exit(eval { _write("$dir/out.$k", $out); 1 } ? 0 : 1);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
    return map { -e "$dir/out.$_" ? _slurp("$dir/out.$_")
                                  : croak "no output from child $_" } 0 .. $n - 1;
}

# nginx.conf: the test's conf, its ${NAME} placeholders filled with this
# instance's environment (and the caller's vars)
sub _render_conf {
    my ($self) = @_;
    my $t = $self->{conf};
    my $p = $self->{prefix};
    my %v = (
        # what every instance has, as nginx-tests' %%TEST_GLOBALS%%
        TEST_GLOBALS   => join("\n", ($MODULE eq '' ? () : "load_module $MODULE;"),
                               ($> == 0 ? 'user nobody nogroup;' : ()),
                               "pid $p/nginx.pid;"),
        TEST_GLOBALS_HTTP => join("\n", map { "${_}_temp_path $p/$_" . "_temp;" }
                                  qw(client_body proxy fastcgi uwsgi scgi)),
        MODULE         => $MODULE,
        PREFIX         => $self->{prefix},
        USER_DIRECTIVE => $> == 0 ? 'user nobody nogroup;' : '',
        HTTP_PORT      => $self->{port},
        MYSQL_PORT     => $self->{mysql_port},
        MYSQL_DATABASE => $self->{dbname},
        REDIS_PORT     => $self->{redis_port},
        REDIS_PREFIX   => $self->redis_prefix,
        REDIS_USER     => 'rbcs',
        REDIS_PASSWORD_FILE => $REDIS_PASSWORD_FILE,
        REDIS_HMAC_KEY_FILE => $REDIS_HMAC_KEY_FILE,
        %{ $self->{vars} },
    );
    # a binary with the module compiled in loads none
    $t =~ s/^[ \t]*load_module[ \t]*\$\{MODULE\};[ \t]*\n//mg if $MODULE eq '';
    render_template($t, "$self->{prefix}/nginx.conf", %v);
}

sub _start_nginx {
    my ($self) = @_;
    my $p = $self->{prefix};

    _on_free_port($self, "$p/error.log", sub {
        $self->_render_conf;
        unlink "$p/nginx.pid";
        local @ENV{ keys %{ $self->{env} } } = values %{ $self->{env} };
        local @ENV{qw(ASAN_OPTIONS UBSAN_OPTIONS)} = _sanitizer_env($p)
            if $ENV{RBCS_SANITIZE};
        my $out = _run_capture([ $self->{nginx}, '-p', "$p/", '-c', "$p/nginx.conf",
                                 '-e', "$p/error.log" ]);
        croak "nginx failed to start (prefix $p):\n$out->{output}" if $out->{status};
    });
    wait_for(10, sub { -s "$p/nginx.pid" }, 0.02)
        or croak "nginx started but wrote no pid file $p/nginx.pid\n" . $self->error_log;
    $STARTED++;
    $self->{running} = 1;
    $self->_wait_ready;
}

# _on_free_port($obj, $log, $start): $start->() with $obj->{port} a port
# of free_port's.  Another process may bind it first: when $start dies
# saying so ("Address already in use"), $log is removed and another port
# tried (5 in all).
sub _on_free_port {
    my ($obj, $log, $start) = @_;
    for my $attempt (1 .. 5) {
        $obj->{port} = free_port();
        return $obj if eval { $start->(); 1 };
        my $err = $@;
        croak $err unless $attempt < 5 && $err =~ /already in use/;
        unlink $log;
    }
}

# A sanitized nginx (make test-sanitize, RBCS_SANITIZE set) writes its
# AddressSanitizer, LeakSanitizer and UBSan reports into the instance's
# prefix, sanitizer/{asan,ubsan}.<pid>, one file per process that reports
# (workers run as nobody under root: the directory is open to all); the
# final check fails the test file for any of them.  The options of the
# environment are kept, the log path replaced.
sub _sanitizer_env {
    my ($p) = @_;
    my $dir = "$p/sanitizer";
    make_path($dir);
    chmod 0777, $dir;
    my @v;
    for my $which (qw(ASAN UBSAN)) {
        my $opts = $ENV{"${which}_OPTIONS"} // '';
        $opts =~ s/(?:^|:)log_path=[^:]*//g;
        $opts =~ s/^://;
        push @v, join ':', grep { length } $opts, "log_path=$dir/" . lc $which;
    }
    return @v;
}

sub _sanitizer_reports {
    my ($p) = @_;
    my @bad;
    for my $f (sort glob("$p/sanitizer/*")) {
        my $text = _slurp($f);
        next unless $text =~ /\S/;
        my ($first) = grep { /ERROR|runtime error|SUMMARY/ } split /\n/, $text;
        push @bad, "[alert] sanitizer report $f: " . ($first // 'see the file') . "\n";
    }
    return @bad;
}

sub _wait_ready {
    my ($self) = @_;
    wait_port($self->{port}, 10)
        or croak "nginx does not accept connections on 127.0.0.1:$self->{port} after 10s\n"
            . $self->error_log;
    return unless $self->{wait_healthz};
    # the module answers /healthz with 200 once it is ready; a module
    # without /healthz (404 and friends) is taken as ready as well
    my $status;
    return if wait_for(10, sub {
        my $res = eval { $self->request('GET', '/healthz', timeout => 2) };
        $status = $res ? $res->{status} : undef;
        return defined $status && $status < 500;
    }, 0.1);
    Test::More::diag("RBCS::Test: GET /healthz still answers "
        . ($status // 'nothing') . " after 10s, going on");
}

sub _can_connect {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub _read_pidfile { _slurp($_[0]) =~ /(\d+)/ ? $1 : undef }

# _slurp($file [, $must]): its text; '' when it cannot be read (croaks
# instead when $must)
sub _slurp {
    my ($file, $must) = @_;
    open my $fh, '<', $file or ($must ? croak "$file: $!" : return '');
    local $/;
    return <$fh> // '';
}

# _write($file, TEXT...): croaks when it cannot
sub _write {
    my ($file, @text) = @_;
    open my $fh, '>', $file or croak "$file: $!";
    print $fh @text;
    close $fh or croak "$file: $!";
}

# _proc_stat($stat_file): (state, parent pid) of /proc/PID[/task/TID]/stat,
# () when it is gone
sub _proc_stat { _slurp($_[0]) =~ /\)\s+(\S)\s+(\d+)/ }

sub _alive {   # exists and not a zombie
    my ($pid) = @_;
    return 0 unless $pid && kill(0, $pid);
    return ((_proc_stat("/proc/$pid/stat"))[0] // '') eq 'Z' ? 0 : 1;
}

sub _wait_gone {
    my ($pid, $secs) = @_;
    return wait_for($secs, sub { waitpid($pid, WNOHANG); !_alive($pid) },
                    0.02) ? 1 : 0;
}

# _kill_until_gone($pid, SIG => $secs, ...): each signal in turn, until
# the process is gone (waiting up to $secs after each)
sub _kill_until_gone {
    my ($pid, @steps) = @_;
    while (my ($sig, $secs) = splice @steps, 0, 2) {
        kill $sig, $pid;
        return 1 if _wait_gone($pid, $secs);
    }
    return 0;
}

sub master_pid { _read_pidfile("$_[0]{prefix}/nginx.pid") }

sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir my $d, '/proc' or return;
    for my $pid (grep { /^\d+\z/ } readdir $d) {
        my ($state, $parent) = _proc_stat("/proc/$pid/stat") or next;
        push @kids, $pid + 0 if $parent == $ppid && $state ne 'Z';
    }
    return sort { $a <=> $b } @kids;
}

# $t->nginx_pids: (master, workers...)
sub nginx_pids {
    my ($self) = @_;
    my $m = $self->master_pid or return ();
    return () unless _alive($m);
    return ($m, _children($m));
}

sub worker_pids { my (undef, @w) = $_[0]->nginx_pids; return @w }

# $t->reload(conf => TEXT): optionally another configuration, rewrite
# nginx.conf (same port) and HUP; waits for the new workers and for the old
# ones to exit (bounded).
sub reload {
    my ($self, %o) = @_;
    $self->{conf} = $o{conf} if defined $o{conf};
    $self->_render_conf;
    my ($m, @old) = $self->nginx_pids;
    croak "reload: nginx is not running" unless $m;
    kill 'HUP', $m;
    my %old = map { $_ => 1 } @old;
    wait_for(10, sub {
        grep({ !$old{$_} } _children($m)) >= $self->_workers
            && !grep { _alive($_) } @old;
    });
    croak "reload: nginx master $m is gone\n" . $self->error_log unless _alive($m);
    return $self;
}

# worker_processes of the configuration running now
sub _workers {
    my ($self) = @_;
    my ($n) = _slurp($self->conf_file, 1) =~ /^\s*worker_processes\s+(\d+)\s*;/m;
    return $n // 1;
}

# $t->stop: QUIT nginx (TERM/KILL after 10s), remember error.log for the
# final check, drop the database (unless RBCS_TEST_KEEP is set or a test
# failed).  Idempotent.
sub stop {
    my ($self) = @_;
    return $self unless $self->{running};
    $self->{running} = 0;
    my $m = $self->master_pid;
    _kill_until_gone($m, QUIT => 10, TERM => 5, KILL => 0) if $m && _alive($m);
    push @LOG_PROBLEMS, [ $self->error_log, $self->{allow_log} ];
    push @LOG_PREFIXES, $self->{prefix};
    # the database is kept for inspection when the test file is failing
    unless ($KEEP || $self->{shared_db} || !Test::More->builder->is_passing) {
        eval {
            $self->{dbh}->disconnect if $self->{dbh};
            delete $self->{dbh};
            my $adm = $self->{admin}{dbh};
            drop_database($adm, $self->{dbname}) if $adm && $adm->ping;
        };
    }
    return $self;
}

sub DESTROY {
    my ($self) = @_;
    return unless $$ == $MAIN_PID;
    local ($@, $!, $?);
    eval { $self->stop };
}

sub error_log { _slurp("$_[0]{prefix}/error.log") }

# One test per test file: no [alert]/[emerg], segfault or "signal N"
# (worker crashes) in the error logs of all the instances it started.
sub _final_check {
    return if $CHECKED || $$ != $MAIN_PID;
    $_->stop for grep { defined } @INSTANCES;
    return unless $STARTED;
    $CHECKED = 1;
    my @bad;
    for my $e (@LOG_PROBLEMS) {
        my ($log, $allow) = @$e;
        for my $line (split /\n/, $log) {
            next if $line =~ /\[(?:notice|info|debug)\]/;  # e.g. "signal 3 (SIGQUIT) received"
            next if grep { $line =~ $_ } @$allow;
            push @bad, "$line\n";
        }
    }
    push @bad, _sanitizer_reports($_) for @LOG_PREFIXES;
    Test::More::unlike(join('', @bad), qr/\[(alert|emerg)\]|segfault|signal \d+/,
        'no alerts in error.log')
        or Test::More::diag('error logs: '
            . join(' ', map { "$_/error.log" } @LOG_PREFIXES));
}

# ------------------------------------------------------------------ HTTP --

# $t->request($method, $path, body => $bytes, headers => { Name => value },
#             timeout => $s, http_version => '1.1')
# Adds Host, Connection: close and Content-Length (when there is a body)
# unless given; a header given as undef is not sent at all.
sub request {
    my ($self, $method, $path, %o) = @_;
    my $body = $o{body};
    if (defined $body && utf8::is_utf8($body)) {
        $body = "$body";
        utf8::encode($body);
    }
    my @h = (['Host', "127.0.0.1:$self->{port}"]);
    push @h, ['Content-Length', length $body] if defined $body;
    push @h, ['Connection', 'close'];
    my $user = $o{headers} // {};
    my @user = ref $user eq 'ARRAY' ? @$user : map { ($_, $user->{$_}) } sort keys %$user;
    while (my ($k, $v) = splice @user, 0, 2) {
        @h = grep { lc $_->[0] ne lc $k } @h;
        push @h, [$k, $v] if defined $v;
    }
    my $req = "$method $path HTTP/" . ($o{http_version} // '1.1') . "\r\n"
        . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n"
        . ($body // '');
    return $self->raw_request($req, timeout => $o{timeout});
}

sub get { my ($self, $path, %o) = @_; $self->request('GET', $path, %o) }
sub del { my ($self, $path, %o) = @_; $self->request('DELETE', $path, %o) }

sub post_json  { my $s = shift; $s->_json_request('POST', @_) }
sub patch_json { my $s = shift; $s->_json_request('PATCH', @_) }

sub _json_request {
    my ($self, $method, $path, $data, %o) = @_;
    my $body = ref $data ? $JSON->encode($data) : $data;
    my %h = ('Content-Type' => 'application/json', %{ $o{headers} // {} });
    return $self->request($method, $path, %o, body => $body, headers => \%h);
}

# The routes the cache tests lean on:
# $t->transfer($id, $source, $destination, $amount): the response;
# $t->balance($account [, '?query']): the balance's JSON plus {tier}, the
# tier that answered (X-RBCS-Cache), or undef unless 200 (also when the
# request failed: a test may have stopped the server);
# $t->metric($name): the value of that sample on /metrics, or undef.
sub transfer {
    my ($self, $id, $s, $d, $amount) = @_;
    return $self->post_json('/accounts/transactions', {
        transactionId => $id, sourceAccountNumber => $s,
        destinationAccountNumber => $d, amount => $amount });
}

sub balance {
    my ($self, $n, $q) = @_;
    my $r = eval { $self->get("/accounts/$n/balance" . ($q // '')) };
    return undef unless $r && ($r->{status} // 0) == 200;
    my $j = eval { $r->json } or return undef;
    $j->{tier} = $r->{headers}{'x-rbcs-cache'};
    return $j;
}

sub metric {
    my ($self, $name) = @_;
    my $body = eval { $self->get('/metrics')->{body} } // '';
    return $body =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

# $t->raw_request($bytes | [$part, $part...], timeout => $s, delay => $s)
# Sends exactly the bytes (parts separated by `delay` seconds), reads until
# the server closes the connection and parses the response.  Dies when the
# whole exchange takes longer than the timeout (default 10s).  A connection
# closed without any response gives status undef and raw ''.
sub raw_request {
    my ($self, $bytes, %o) = @_;
    my $timeout = $o{timeout} // $TIMEOUT;
    my $deadline = time + $timeout;
    my @parts = ref $bytes eq 'ARRAY' ? @$bytes : ($bytes);

    my $s = $self->connect(timeout => $timeout);
    $s->autoflush(1);
    binmode $s;
    my $sel = IO::Select->new($s);
    local $SIG{PIPE} = 'IGNORE';

    for my $i (0 .. $#parts) {
        my $buf = $parts[$i];
        utf8::encode($buf) if utf8::is_utf8($buf);
        while (length $buf) {
            my $left = $deadline - time;
            croak "request timed out after ${timeout}s while sending"
                if $left <= 0 || !$sel->can_write($left);
            my $n = syswrite($s, $buf);
            if (!defined $n) {
                next if $!{EINTR} || $!{EAGAIN};
                last;   # peer closed (e.g. 413 sent early); read what it said
            }
            substr($buf, 0, $n, '');
        }
        sleep $o{delay} if $o{delay} && $i < $#parts;
    }

    my $raw = '';
    while (1) {
        my $left = $deadline - time;
        # TLS: a record already read from the socket is not "readable"
        croak "request timed out after ${timeout}s, got so far: "
            . _excerpt($raw) if $left <= 0
                || !(($self->{tls} && $s->pending) || $sel->can_read($left));
        my $n = sysread($s, $raw, 65536, length $raw);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            last if $!{ECONNRESET};
            croak "read from 127.0.0.1:$self->{port}: $!";
        }
        last if $n == 0;
    }
    close $s;
    return RBCS::Test::Response->parse($raw);
}

# $t->connect(timeout => $s, tls => { IO::Socket::SSL options }): a
# connection to the API listener, through TLS when the instance has tls
# (verified against its ca, for the name 127.0.0.1); croaks when the
# connection or the handshake fails.
sub connect {
    my ($self, %o) = @_;
    my $timeout = $o{timeout} // $TIMEOUT;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => $timeout)
        or croak "connect to 127.0.0.1:$self->{port}: $!";
    return $s unless $self->{tls};
    require IO::Socket::SSL;
    IO::Socket::SSL->start_SSL($s,
        SSL_ca_file => $self->{tls}{ca}, SSL_verify_mode => 1,
        SSL_verifycn_name => '127.0.0.1', SSL_verifycn_scheme => 'http',
        Timeout => $timeout, %{ $o{tls} // {} })
        or croak "TLS handshake with 127.0.0.1:$self->{port}: "
            . IO::Socket::SSL::errstr();
    return $s;
}

# ---------------------------------------------------------- certificates --

# RBCS::Test::tls_ca($dir, $name): a certificate authority of the test's
# own, made by the openssl command (Debian: openssl): $dir/$name.crt and
# $dir/$name.key.  Returns { crt, key }.
my @EC_KEY = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');

sub tls_ca {
    my ($dir, $name) = @_;
    my %ca = (crt => "$dir/$name.crt", key => "$dir/$name.key");
    _openssl('req', '-x509', @EC_KEY, '-keyout', $ca{key}, '-out', $ca{crt}, '-days', 2,
             '-subj', "/CN=RBCS test CA $name",
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    chmod 0644, $ca{crt}, $ca{key};
    return \%ca;
}

# RBCS::Test::tls_cert($ca, $dir, $name, @san): a server certificate signed
# by $ca (from tls_ca) for the subjectAltName entries @san (e.g.
# 'IP:127.0.0.1', 'DNS:db.example'): $dir/$name.crt, $dir/$name.key, both
# readable by everyone (nginx's workers run as nobody in the tests).
# Returns { crt, key }.
sub tls_cert {
    my ($ca, $dir, $name, @san) = @_;
    my %c = (crt => "$dir/$name.crt", key => "$dir/$name.key");
    my ($cn) = map { /^\w+:(.*)/ } @san;
    _openssl('req', '-new', @EC_KEY, '-keyout', $c{key}, '-out', "$dir/$name.csr",
             '-subj', "/CN=" . ($cn // $name));
    _write("$dir/$name.ext", "basicConstraints=CA:FALSE\n",
           "extendedKeyUsage=serverAuth\n",
           (@san ? 'subjectAltName=' . join(',', @san) . "\n" : ''));
    _openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', $ca->{crt},
             '-CAkey', $ca->{key}, '-CAcreateserial', '-days', 2,
             '-extfile', "$dir/$name.ext", '-out', $c{crt});
    chmod 0644, $c{crt}, $c{key};
    return \%c;
}

sub _openssl {
    my $out = _run_capture([ _which('openssl', '/usr/bin/openssl'), @_ ]);
    croak "openssl @_[0, 1] failed (exit $out->{status}; Debian package openssl):\n"
        . $out->{output} if $out->{status} != 0;
}

sub _excerpt {
    my ($s) = @_;
    $s = substr($s, 0, 500) . '...' if length $s > 500;
    $s =~ s/([^\x20-\x7e\n])/sprintf('\\x%02x', ord $1)/ge;
    return "'$s'";
}

# ---------------------------------------------------------------- helpers --

# render_template(TEXT, OUT, NAME => VALUE...): TEXT, a template with
# ${NAME} placeholders, rendered into OUT by conf/stack.sh render (the one
# renderer of the scripts); a placeholder without a value croaks.
sub render_template {
    my ($t, $out, %v) = @_;
    _write("$out.in", $t);
    my $r = _run_capture(["$ROOT/conf/stack.sh", 'render', "$out.in", $out,
                          map { "$_=" . ($v{$_} // '') } sort keys %v]);
    unlink "$out.in";
    croak "rendering $out: $r->{output}" if $r->{status};
}

# _run_capture([cmd...], stdin => file): run, stdout+stderr captured
sub _run_capture {
    my ($cmd, %o) = @_;
    make_path($VAR) unless -d $VAR;
    my $tmp = "$VAR/.run-$$-" . ++$RUNSEQ . '.out';
    waitpid(_spawn($cmd, '>', $tmp, stdin => $o{stdin}), 0);
    my $status = $? >> 8;
    $status = 128 + ($? & 127) if $? & 127;
    my $output = _slurp($tmp);
    unlink $tmp;
    return { status => $status, output => $output };
}

# _spawn([cmd...], '>' | '>>', $file, stdin => $file, setsid => 1): fork
# and run the command, its stdout and stderr to $file; returns its pid
sub _spawn {
    my ($cmd, $mode, $out, %o) = @_;
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;
    POSIX::setsid() if $o{setsid};
    open STDIN, '<', $o{stdin} // '/dev/null' or POSIX::_exit(126);
    open STDOUT, $mode, $out or POSIX::_exit(126);
    open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
    exec { $cmd->[0] } @$cmd or POSIX::_exit(127);
}

# -------------------------------------------------------- private servers --

# RBCS::Test::private_mariadb(cnf => $lines): a mariadbd of its own
# (datadir, free port, socket under $RBCS_TEST_VAR/private-<pid>-<n>), same
# my.cnf settings, user rbcs/rbcs with the role rbcs_service
# (conf/grants.sql, applied to each database new() makes there), as on the
# shared test server.  For tests that SIGSTOP or kill the database, or need
# server settings of their own: cnf (optional) is added to its my.cnf as a
# second [mariadbd] group, whose settings win (e.g. ssl_cert,
# require_secure_transport).  Pass its ->port as mysql_port to new().
sub private_mariadb { _private('RBCS::Test::MariaDB', @_) }

# RBCS::Test::private_redis(): a redis-server of its own (free port, dir
# under $RBCS_TEST_VAR), no automatic snapshots; ->save writes dump.rdb,
# which ->start (after ->signal('KILL')) loads again: a Redis restarted from
# an old snapshot.
sub private_redis { _private('RBCS::Test::Redis', @_) }

sub _private {
    my $class = shift;
    shift if @_ && !ref $_[0] && $_[0] eq __PACKAGE__;
    my $server = $class->new(@_);
    $PRIVATE{ $server->port } = $server;
    weaken($PRIVATE{ $server->port });
    return $server;
}

# What the private servers share: a directory of their own, a free port
# (another one when it was lost), signal, stop, error_log ($self->{log})
package RBCS::Test::Server;

use strict;
use warnings;
use Carp qw(croak);
use File::Path qw(make_path remove_tree);
use POSIX qw(WNOHANG);

RBCS::Test::_accessors(qw(port pid dir));

my %SEQ;

# $class->_create($name, $signal_secs, $stop_secs, log => $file_in_dir...):
# the object, its directory $RBCS_TEST_VAR/$name-<pid>-<n> new and empty
sub _create {
    my ($class, $name, $signal_secs, $stop_secs, %in_dir) = @_;
    my $dir = "$RBCS::Test::VAR/$name-$$-" . ++$SEQ{$class};
    remove_tree($dir);
    make_path($dir);
    return bless { dir => $dir, signal_secs => $signal_secs,
                   stop_secs => $stop_secs,
                   map { $_ => "$dir/$in_dir{$_}" } keys %in_dir }, $class;
}

# start on a port of free_port's, another one when that one was lost
sub _start_on_free_port {
    my ($self) = @_;
    return RBCS::Test::_on_free_port($self, $self->{log}, sub { $self->start });
}

# start's first step: croaks when the server runs already
sub _not_running {
    my ($self, $what) = @_;
    croak "private $what already running (pid $self->{pid})"
        if $self->{pid} && RBCS::Test::_alive($self->{pid});
    waitpid(delete $self->{pid}, WNOHANG) if $self->{pid};
    $self->{owner} = $$;
}

sub error_log { RBCS::Test::_slurp($_[0]{log}) }

# $server->signal('STOP' | 'CONT' | 'KILL' ...).  After KILL it returns
# once the process is gone (at most signal_secs): its connections are
# broken and its port and socket closed, which is what a test of a killed
# server goes on to rely on.  After STOP, once every thread of it is
# stopped, so that what the caller does next finds the server frozen, not
# finishing what it had begun.
sub signal {
    my ($self, $sig) = @_;
    my $pid = $self->{pid} or return $self;
    kill $sig, $pid;
    RBCS::Test::_wait_gone($pid, $self->{signal_secs}) if $sig eq 'KILL';
    RBCS::Test::wait_for($self->{signal_secs}, sub {
        opendir my $dh, "/proc/$pid/task" or return 1;
        # a task gone meanwhile counts as stopped
        return !grep {
            ((RBCS::Test::_proc_stat("/proc/$pid/task/$_/stat"))[0] // 't') !~ /[tT]/
        } grep { /^\d+$/ } readdir $dh;
    }, 0.005) if $sig eq 'STOP';
    return $self;
}

# Stop a server started by this process: TERM (after CONT, in case it is
# frozen), wait stop_secs, then KILL.
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return $self;
    return $self unless ($self->{owner} // 0) == $$;
    if (RBCS::Test::_alive($pid)) {
        kill 'CONT', $pid;
        RBCS::Test::_kill_until_gone($pid, TERM => $self->{stop_secs}, KILL => 5);
    }
    waitpid($pid, WNOHANG);
    return $self;
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    eval { $self->stop };
}

package RBCS::Test::MariaDB;

use strict;
use warnings;
use Carp qw(croak);
our @ISA = ('RBCS::Test::Server');

RBCS::Test::_accessors(qw(socket));

sub new {
    my ($class, %o) = @_;
    # conf/stack.sh's layout of a stack directory; KILL waits 10s, TERM 30s
    my $self = $class->_create('private', 10, 30,
                               socket => 'mariadb/mariadb.sock',
                               pidfile => 'mariadb/mariadbd.pid',
                               log => 'mariadb/error.log');
    if (defined $o{cnf}) {
        $self->{cnf} = "$self->{dir}/extra.cnf";
        RBCS::Test::_write($self->{cnf}, "$o{cnf}\n");
    }
    # a port lost: stack.sh finds it taken, or mariadbd exits at once
    # ("Bind on TCP/IP port ... Address already in use")
    $self->_start_on_free_port;

    my $dbh = $self->admin_dbh;
    $dbh->do($_) for
        "CREATE ROLE IF NOT EXISTS rbcs_service",
        map { ("CREATE USER IF NOT EXISTS $_ IDENTIFIED BY 'rbcs'",
               "GRANT rbcs_service TO $_", "SET DEFAULT ROLE rbcs_service FOR $_") }
            "'rbcs'\@'127.0.0.1'", "'rbcs'\@'localhost'";
    $dbh->disconnect;
    return $self;
}

# (re)start on the same datadir and port, e.g. after kill -9.  conf/stack.sh
# launches it (a new data directory is a copy of the test stack's pristine
# one) in a session of its own: not a child of this process, so a killed
# one is reaped by init, and _alive counts its zombie as gone.
sub start {
    my ($self) = @_;
    $self->_not_running('mariadbd');
    my $tpl = "$RBCS::Test::VAR/mariadb-template";
    my $r = RBCS::Test::_run_capture([ "$RBCS::Test::ROOT/conf/stack.sh", 'mariadb-up',
            $self->{dir}, $self->{port}, -d "$tpl/mysql" ? $tpl : '', $self->{cnf} // () ]);
    croak "private mariadbd did not start:\n$r->{output}" if $r->{status};
    $self->{pid} = RBCS::Test::_read_pidfile($self->{pidfile})
        or croak "private mariadbd is up but $self->{pidfile} names no pid";
    return $self;
}

sub admin_dbh { RBCS::Test::_admin_dbi("mariadb_socket=$_[0]{socket}", $_[1]) }

package RBCS::Test::Redis;

use strict;
use warnings;
use Carp qw(croak);
use POSIX qw(WNOHANG);
our @ISA = ('RBCS::Test::Server');

sub new {
    my ($class) = @_;
    # KILL waits 5s, TERM 10s; a port lost: redis-server exits at once
    # (start says so)
    return $class->_create('private-redis', 5, 10, log => 'redis.log')
                 ->_start_on_free_port;
}

sub start {
    my ($self) = @_;
    $self->_not_running('redis-server');
    # the test stack's users and passwords (conf/redis.conf.in)
    my %sha = map { $_ => Digest::SHA::sha256_hex(RBCS::Test::redis_secret($_)) }
              qw(password admin);
    my $pid = $self->{pid} = RBCS::Test::_spawn(
        [ 'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
          '--dir', $self->{dir}, '--save', '', '--logfile', $self->{log},
          '--user', 'default', 'on', "#$sha{admin}", '~*', '&*', '+@all',
          '--user', 'rbcs', 'on', "#$sha{password}", qw(resetchannels ~rbcs* &rbcs*
                    -@all +@connection +info +eval +hmget +hset +pexpire
                    +publish +subscribe +unlink) ],
        '>>', "$self->{dir}/redis.out", setsid => 1);
    # Ready when the redis-server started here answers on the port: a
    # PONG alone could come from another one that took the port first.
    RBCS::Test::wait_for(10, sub {
        my $info = $self->cli('INFO', 'server') // '';
        return 1 if $info =~ /^process_id:(\d+)\r?$/m && $1 == $pid;
        return 0 unless waitpid($pid, WNOHANG) == $pid;
        delete $self->{pid};
        croak "private redis-server exited at startup:\n" . $self->error_log;
    }) or croak "private redis-server did not come up within 10s:\n" . $self->error_log;
    return $self;
}

# ->cli(ARGS): redis-cli as the admin; ->cli_as_service(ARGS): as the
# service's ACL user "rbcs", with its password (what a pod's would allow)
sub cli { my $self = shift; $self->_cli('admin', [], @_) }
sub cli_as_service { my $self = shift; $self->_cli('password', [ '--user', 'rbcs' ], @_) }

sub _cli {
    my ($self, $secret, $user, @args) = @_;
    local $ENV{REDISCLI_AUTH} = RBCS::Test::redis_secret($secret);
    my $r = RBCS::Test::_run_capture(
        [ 'redis-cli', @$user, '-h', '127.0.0.1', '-p', $self->{port}, @args ]);
    return $r->{status} ? undef : $r->{output};
}

sub save { $_[0]->cli('SAVE') }

# --------------------------------------------------------------- response --

package RBCS::Test::Response;

use strict;
use warnings;
use Carp qw(croak);

my $RJSON = JSON::PP->new->utf8->allow_nonref;

sub parse {
    my ($class, $raw) = @_;
    my $self = bless { raw => $raw, status => undef, headers => {},
                       header_lines => [], body => '' }, $class;
    return $self if $raw eq '';
    my $i = index($raw, "\r\n\r\n");
    my ($head, $rest) = $i >= 0 ? (substr($raw, 0, $i), substr($raw, $i + 4))
                                : ($raw, '');
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines // '';
    if ($sl =~ m{^HTTP/(\d\.\d)\s+(\d{3})(?:\s+(.*))?$}) {
        @$self{qw(version status reason)} = ($1, $2 + 0, $3 // '');
    }
    $self->{status_line} = $sl;
    for my $l (@lines) {
        next unless $l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/;
        my ($k, $v) = (lc $1, $2);
        push @{ $self->{header_lines} }, [$1, $v];
        $self->{headers}{$k} = exists $self->{headers}{$k}
            ? "$self->{headers}{$k}, $v" : $v;
    }
    my $te = $self->{headers}{'transfer-encoding'} // '';
    my $cl = $self->{headers}{'content-length'};
    if ($te =~ /chunked/i) {
        my $body = '';
        while ($rest =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $body .= substr($rest, 0, $n, '');
            $rest =~ s/^\r\n//;
        }
        $self->{body} = $body;
    } elsif (defined $cl && $cl =~ /^\d+$/) {
        $self->{body} = substr($rest, 0, $cl);
    } else {
        $self->{body} = $rest;
    }
    return $self;
}

sub header  { $_[0]{headers}{ lc $_[1] } }

sub json {
    my ($self) = @_;
    my $data = eval { $RJSON->decode($self->{body}) };
    return $data unless $@;
    my $err = $@;
    $err =~ s/\s+\z//;
    my $b = $self->{body};
    $b = substr($b, 0, 300) . '...' if length $b > 300;
    croak sprintf "response is not JSON (status %s, content-type %s): %s; body: '%s'",
        $self->{status} // 'none', $self->{headers}{'content-type'} // 'none', $err, $b;
}

package RBCS::Test;

1;

__END__

=head1 NAME

RBCS::Test - start nginx with the RBCS module against a throwaway database

=head1 SYNOPSIS

    use Test::More;
    use RBCS::Test;

    # the whole nginx.conf (t/010-accounts.t has one in full)
    my $t = RBCS::Test->new(conf => <<'EOF');
    ${TEST_GLOBALS}
    ...
        rbcs_mysql_server 127.0.0.1:${MYSQL_PORT};
        rbcs_mysql_database ${MYSQL_DATABASE};
    ...
            listen 127.0.0.1:${HTTP_PORT};
    ...
    EOF
    my $r = $t->post_json('/accounts', { accountNumber => 'A1' });
    is($r->{status}, 201, 'created');
    is($t->get('/accounts/A1')->json->{accountNumber}, 'A1');
    done_testing();

=head1 ENVIRONMENT

Set by C<make test> (conf/stack.sh); the defaults match its layout.

    RBCS_ROOT                 repository root
    RBCS_MODULE               build/ngx_rbcs_module.so (absolute)
    RBCS_TEST_VAR             var/test (nginx prefixes, private servers)
    RBCS_TEST_MYSQL_PORT      13306     RBCS_TEST_MYSQL_SOCKET  var/test/mariadb/mariadb.sock
    RBCS_TEST_MYSQL_PIDFILE   pid file of the shared test mariadbd
    RBCS_TEST_REDIS_PORT      16379
    RBCS_MARIADBD             mariadbd binary (for private instances)
    RBCS_NGINX                nginx binary (default /usr/sbin/nginx)
    RBCS_TEST_KEEP            keep the rbcs_t_* databases of passing tests too

=head1 CONSTRUCTOR OPTIONS

conf (required): the whole nginx.conf the instance runs, as the test
writes it.  The harness fills its ${NAME} placeholders with the values
that depend on the machine and the instance, and changes nothing else:

    TEST_GLOBALS    the main context's lines every instance has: the
                    module's load_module, "user nobody nogroup;" when the
                    tests run as root, and the pid file the harness reads
    TEST_GLOBALS_HTTP
                    the http context's temp paths, under PREFIX
    MODULE          build/ngx_rbcs_module.so (a load_module ${MODULE};
                    line is dropped when RBCS_MODULE is empty: a binary
                    with the module compiled in)
    PREFIX          the instance's nginx prefix (pid, logs, temp dirs)
    USER_DIRECTIVE  "user nobody nogroup;" when the tests run as root
    HTTP_PORT       the API port, chosen free at start
    MYSQL_PORT      mysql_port's (the shared test server by default)
    MYSQL_DATABASE  the instance's database (rbcs_t_*)
    REDIS_PORT      redis_port's (the shared test Redis by default)
    REDIS_PREFIX    the instance's Redis prefix ("<dbname>:")
    REDIS_USER      rbcs, the test stack's ACL user
    REDIS_PASSWORD_FILE, REDIS_HMAC_KEY_FILE
                    the test stack's Redis secrets

vars => { NAME => value } fills other placeholders, or replaces these
(e.g. a fake server's port, a production template's names).

mysql_port (and mysql_socket, the administrator's way in, e.g. behind a
relay's port) of another mariadbd, env => { NAME => value } (nginx's
environment; the conf keeps it for the workers with env NAME;),
allow_log (arrayref of regexes of error.log lines the final
check ignores), wait_healthz (0: only wait for the port), schema (file, or
undef for an empty database; after it, conf/grants.sql gives the service's
user rbcs its tables through the role rbcs_service), name (database/prefix name part), nginx (the
binary to run instead of $RBCS::Test::NGINX, e.g. one with the module
compiled in: no module file needed; set MODULE in vars, '' for none).

tls => { ca => $file }: the API listener is TLS (the configuration's
listen ... ssl); request() and friends, and connect(), go through TLS and
verify the server's certificate against $file for the name 127.0.0.1.

=head1 METHODS

port prefix dbname url(path) conf_file mysql_port redis_port;
connect(timeout =>, tls => { IO::Socket::SSL options }) (a socket to the
API listener, TLS handshake done when the instance has tls);
request(method, path, body =>, headers =>, timeout =>, http_version =>);
get del post_json patch_json; raw_request(bytes | [parts], delay =>,
timeout =>); dbh; reload(conf => text) (HUP, with the same or another configuration); stop; error_log; nginx_pids; master_pid;
worker_pids; plan(n) (plans n + 1: the error.log check); allow_log(qr//...).

Responses: $r->{status}, $r->{headers}{lc name}, $r->{body}, $r->{raw},
$r->{header_lines}, $r->json, $r->header(name).

dbh: a DBI handle on the instance's database as the administrator (the
OS user over the unix socket), not as the service's user rbcs, which may
only do what conf/grants.sql lets it.

lock_waits: how many connections to the instance's database wait for a
row lock now (poll it with wait_for before relying on a held transfer).

=head1 FUNCTIONS

RBCS::Test::free_port() (a port nothing listens on now; for a program that
binds it itself, whose user then waits for it), RBCS::Test::wait_port(port,
timeout) (1 once 127.0.0.1:port accepts a connection, 0 after timeout s),
RBCS::Test::wait_for(timeout, sub, interval) (the sub's first true value,
or undef after timeout s).  A server of a test's own binds LocalPort => 0
before it forks, so that its port is listening when fork returns.

RBCS::Test::tls_ca(dir, name) and RBCS::Test::tls_cert(ca, dir, name, san...)
make a test certificate authority and a server certificate signed by it
with the openssl command; each returns { crt => file, key => file }.

RBCS::Test::drop_database(admin dbh, name) drops a database and the grants
conf/grants.sql gave the role rbcs_service on its tables.

RBCS::Test::private_mariadb(cnf => $text) (cnf: optional my.cnf lines for
the server, which win over conf/my.cnf.in's) returns an object with port,
pid, socket, stop,
start (restart on the same datadir and port), signal(SIG) (after KILL it
waits until the process is gone), admin_dbh, error_log.

RBCS::Test::private_redis() returns an object with port, pid, dir, start
(restart on the same dir: loads the last ->save), stop, signal(SIG), save,
cli(args), error_log.  Both are ready when they return: the server started
there answers (another port is taken when its free port was lost).

pod_of => $t makes an instance that shares $t's database and Redis
prefix: a second pod.  A private_redis's ->port goes to new() as
redis_port; every instance's Redis keys and channel carry the prefix "<dbname>:" (redis_prefix to choose another, e.g. two instances that
stand for two pods of one deployment share one prefix and one database).

=cut
