#!/usr/bin/env bash
# conf/stack.sh - install, build, start and stop the RBCS stacks.
#
# The Makefile is a thin wrapper around this script:
#
#   conf/stack.sh deps       install missing Debian packages (apt-get)
#   conf/stack.sh build      build build/ngx_rbcs_module.so
#   conf/stack.sh unit       build the C unit tests (t/unit/Makefile*)
#   conf/stack.sh run        deps + build + local stack (MariaDB, Redis, nginx)
#   conf/stack.sh stop       stop the local stack
#   conf/stack.sh status     show what is running
#   conf/stack.sh test       deps + build + unit + disposable test stack + prove
#   conf/stack.sh test-up    start the test stack (without prove) and print the
#                            environment the tests need (eval-able)
#   conf/stack.sh test-down  stop the test stack and everything tests left
#   conf/stack.sh clean      stop everything, remove build/ and var/
#   conf/stack.sh test-sanitize, coverage, fuzz [-t SECONDS] [-j JOBS] [NAME]
#                            as make test-sanitize, coverage, fuzz (Makefile)
#
# Everything lives under the repository: build/ (compiler output), var/run
# (local stack of `make run`) and var/test (disposable stack of `make test`).
# Services are plain background processes (no systemd), bound to 127.0.0.1,
# tracked by pid files.
#
# Environment:
#   RBCS_HTTP_PORT (8080) RBCS_MYSQL_PORT (3306) RBCS_REDIS_PORT (6379)
#       ports of the local stack (make run)
#   RBCS_TEST_MYSQL_PORT (13306) RBCS_TEST_REDIS_PORT (16379)
#       ports of the test stack (make test)
#   TESTS (t/)  PROVE_JOBS (2)  PROVE_ARGS ()
#       what and how `make test` runs: prove -j$PROVE_JOBS $PROVE_ARGS -r -I t/lib $TESTS
#   RBCS_COVERAGE_MIN (80)  the percent of lines under which coverage fails

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR=$PWD   # relative paths given to `render`
cd "$ROOT"

PACKAGES=(nginx nginx-dev mariadb-server mariadb-client redis-server
          libmariadb-dev libhiredis-dev libyajl-dev libpcre2-dev zlib1g-dev
          libdbd-mariadb-perl libjson-pp-perl curl wrk gcc make
          # the ${NAME} templates (conf/*.in) are rendered by envsubst
          gettext-base
          # make coverage: gcov reports (HTML, text, JSON summary)
          gcovr
          # t/unit/: the C unit tests are written on cmocka
          libcmocka-dev
          # t/130-metrics.t: promtool, and a Prometheus server that scrapes
          prometheus
          # t/094-cache-clock.t: a pod's wall clock set back (libfaketime)
          libfaketime
          # perf/: plots, Lua syntax of the wrk scenarios, the JMeter plan
          gnuplot-nox lua5.1 libxml2-utils
          # docs/diagrams: dot renders the architecture diagrams (t/190-docs.t)
          graphviz
          # TLS tests (t/150-gateway.t, t/240-mysql-tls.t): certificates made
          # at run time, and a TLS client in Perl
          openssl libio-socket-ssl-perl
          # docker/build-static.sh (t/180-static-build.t): nginx from Debian's
          # source (apt-get source) with the module compiled in
          build-essential dpkg-dev libssl-dev
          # make test-sanitize and the fuzzers (fuzz/, t/250-fuzz.t): gcc's
          # ASan/UBSan runtimes, clang 14 with libFuzzer
          libasan8 libubsan1 clang libclang-rt-14-dev
          # k8s/check.sh; npm and kubectl from Debian unless a package of another
          # origin (which Debian's would conflict with) already provides them
          yamllint nodejs $([ -e /usr/bin/npm ] || echo npm) $([ -e /usr/bin/kubectl ] || echo kubernetes-client))

NGINX_BIN="${RBCS_NGINX:-/usr/sbin/nginx}"
NGX_DEV_SRC=/usr/share/nginx/src
BUILD="$ROOT/build"
NGX_BUILD="$BUILD/nginx-src"
MODULE="$BUILD/ngx_rbcs_module.so"
CC_OPT="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2 -Wall -Wextra"
LD_OPT="-Wl,-z,relro -Wl,-z,now -fPIC"
JOBS="$(nproc 2>/dev/null || echo 2)"

RUN_VAR="$ROOT/var/run"
TEST_VAR="$ROOT/var/test"

HTTP_PORT="${RBCS_HTTP_PORT:-8080}"
MYSQL_PORT="${RBCS_MYSQL_PORT:-3306}"
REDIS_PORT="${RBCS_REDIS_PORT:-6379}"
TEST_MYSQL_PORT="${RBCS_TEST_MYSQL_PORT:-13306}"
TEST_REDIS_PORT="${RBCS_TEST_REDIS_PORT:-16379}"

COV_DIR="$BUILD/coverage"
COV_MIN="${RBCS_COVERAGE_MIN:-80}"

log()  { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
die_log() {   # LOG LINES MESSAGE: the log's tail (+1: all of it), then die
    tail -n "$2" "$1" >&2 2>/dev/null || true
    die "$3"
}

mariadbd_bin() {
    echo "${RBCS_MARIADBD:-$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)}"
}

# As root, mariadbd runs as root and nginx's workers as nobody.
AS_ROOT=
[ "$(id -u)" -ne 0 ] || AS_ROOT=1

# ---------------------------------------------------------------- helpers --

# render TEMPLATE OUTPUT NAME=VALUE...: replace ${NAME} by VALUE (any text)
# with envsubst, given the template's own names only so that nginx's
# $variables stay; a placeholder without a value is an error, not "".
render() {
    local in=$1 out=$2 names n; shift 2
    [ -f "$in" ] || die "template $in is missing"
    names=$(grep -o '\${[A-Z_][A-Z0-9_]*}' "$in" | sort -u) || true
    for n in $names; do
        n=${n#??}; n=${n%?}
        env -i -- "$@" printenv -- "$n" >/dev/null || die "$in: no value for \${$n}"
    done
    env -- "$@" envsubst "$names" <"$in" >"$out.tmp" \
        && mv -f "$out.tmp" "$out" || die "$out: rendering failed"
}

pid_alive() {   # pid: exists and is not a zombie
    [ -n "$1" ] && [ -e "/proc/$1" ] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

pid_gone() { ! pid_alive "$1"; }

# running_pid PIDFILE COMM: print the pid if the file names a live process
# whose command name starts with COMM.
running_pid() {
    local f=$1 comm=$2 pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc '0-9' < "$f")
    pid_alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]] || return 1
    echo "$pid"
}

# wait_for SECONDS PID CMD...: run CMD every 0.1s until it succeeds, for at
# most SECONDS and, when PID is not empty, while that process lives
wait_for() {
    local n=$(($1 * 10)) pid=$2 i; shift 2
    for ((i = 0; i < n; i++)); do
        "$@" && return 0
        [ -z "$pid" ] || pid_alive "$pid" || return 1
        sleep 0.1
    done
    return 1
}

# stop_pidfile LABEL PIDFILE COMM SECONDS SIGNAL...: each SIGNAL in turn,
# then KILL, until the process is gone (SECONDS for the first, 5 for the
# others)
stop_pidfile() {
    local label=$1 f=$2 comm=$3 secs=$4 pid sig; shift 4
    if ! pid=$(running_pid "$f" "$comm"); then
        rm -f "$f"
        return 1
    fi
    kill -CONT "$pid" 2>/dev/null || true    # a test may have SIGSTOPped it
    for sig in "$@" KILL; do
        kill "-$sig" "$pid" 2>/dev/null || true
        wait_for "$secs" "" pid_gone "$pid" && break
        warn "$label (pid $pid) did not stop within ${secs}s of SIG$sig"
        secs=5
    done
    rm -f "$f"
    log "stopped $label (pid $pid)"
}

check_port_free() {   # port what
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then
        die "port $1 ($2) is already in use on 127.0.0.1; set another port (see README) or stop what uses it"
    fi
}

# already_running LABEL PORT PIDFILE COMM: whether PIDFILE names a
# running COMM; if not, PORT must be free
already_running() {
    local pid
    if pid=$(running_pid "$3" "$4"); then
        log "$1 already running (pid $pid, port $2)"
        return 0
    fi
    check_port_free "$2" "$1"
    return 1
}

# start_bg LABEL PORT PIDFILE OUT CMD...: CMD started detached (own
# session, no tty, no stdin, output to OUT); its pid in BG_PID
start_bg() {
    log "starting $1 on 127.0.0.1:$2"
    rm -f "$3"
    setsid "${@:5}" </dev/null >>"$4" 2>&1 &
    BG_PID=$!
}

# wait_started LABEL LOG SECONDS CMD...: wait_for CMD while the process of
# start_bg lives; if it does not succeed, LOG's tail and an error
wait_started() {
    local label=$1 logf=$2 secs=$3; shift 3
    wait_for "$secs" "$BG_PID" "$@" && return 0
    pid_alive "$BG_PID" || die_log "$logf" 30 "$label exited at startup, see $logf"
    kill -TERM "$BG_PID" 2>/dev/null || true
    die_log "$logf" 30 "$label did not come up within ${secs}s, see $logf"
}

# ------------------------------------------------------------------- deps --

cmd_deps() {
    local missing=() p sudo=() apt policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing missing packages: ${missing[*]}"
    if [ -z "$AS_ROOT" ]; then
        command -v sudo >/dev/null || die "packages missing (${missing[*]}) and not root; install them as root"
        sudo=(sudo)
    fi
    apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q)
    # Keep the packages' init scripts from starting system-wide nginx,
    # MariaDB or Redis (they would take ports 80/3306/6379): a temporary
    # policy-rc.d refusing all service starts, removed afterwards.
    if [ ! -e "$policy" ]; then
        "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        created_policy=1
    fi
    { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } ||
        rc=$?
    [ $created_policy -eq 0 ] || "${sudo[@]}" rm -f "$policy"
    [ $rc -eq 0 ] || die "apt-get failed (exit $rc)"
}

# ------------------------------------------------------------------ build --

cmd_build() {
    [ -f "$ROOT/config" ] || die "$ROOT/config (the module's nginx addon script) is missing"
    [ -f "$NGX_DEV_SRC/conf_flags" ] || die "$NGX_DEV_SRC/conf_flags not found (is nginx-dev installed?)"
    mkdir -p "$BUILD"

    # 1. private copy of Debian's nginx-dev tree, refreshed when it changes
    local want
    want="nginx-dev $(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || true) $(stat -c %Y "$NGX_DEV_SRC/configure" "$NGX_DEV_SRC/conf_flags" | tr '\n' ' ')"
    if [ "$(cat "$NGX_BUILD/.rbcs-source" 2>/dev/null || true)" != "$want" ]; then
        log "copying $NGX_DEV_SRC to build/nginx-src"
        rm -rf "$NGX_BUILD" "$NGX_BUILD.tmp"
        cp -a "$NGX_DEV_SRC" "$NGX_BUILD.tmp"
        printf '%s\n' "$want" > "$NGX_BUILD.tmp/.rbcs-source"
        mv "$NGX_BUILD.tmp" "$NGX_BUILD"
    fi

    # 2. configure, when objs/ is missing or `config`/the flags changed
    local NGX_CONF_FLAGS=()
    # shellcheck disable=SC1091
    source "$NGX_BUILD/conf_flags"
    local args=("${NGX_CONF_FLAGS[@]}" "--with-cc-opt=$CC_OPT" "--with-ld-opt=$LD_OPT"
                "--add-dynamic-module=$ROOT")
    local stamp
    stamp="$(printf '%s\n' "${args[@]}"; sha256sum "$ROOT/config" | cut -d' ' -f1)"
    if [ ! -f "$NGX_BUILD/objs/Makefile" ] ||
       [ "$(cat "$NGX_BUILD/.rbcs-configured" 2>/dev/null || true)" != "$stamp" ]; then
        log "configuring nginx for the module (log: build/configure.log)"
        rm -rf "$NGX_BUILD/objs" "$NGX_BUILD/.rbcs-configured"
        (cd "$NGX_BUILD" &&
         env -u CFLAGS -u CPPFLAGS -u LDFLAGS -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
             ./configure "${args[@]}") >"$BUILD/configure.log" 2>&1 ||
            die_log "$BUILD/configure.log" 40 "nginx ./configure failed, see build/configure.log"
        printf '%s' "$stamp" > "$NGX_BUILD/.rbcs-configured"
    fi

    # 3. compile (objs/Makefile tracks the sources and ngx_module_deps)
    log "compiling ngx_rbcs_module"
    (cd "$NGX_BUILD" && submake -j"$JOBS" -f objs/Makefile modules) || die "module build failed"

    # 4. install atomically (a running nginx keeps its mapping of the old file)
    cp "$NGX_BUILD/objs/ngx_rbcs_module.so" "$BUILD/.ngx_rbcs_module.so.new"
    mv -f "$BUILD/.ngx_rbcs_module.so.new" "$MODULE"
    log "built $MODULE"
}

# submake ARGS...: make, without the make variables of a calling make
submake() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make "$@"; }

cmd_unit() {
    local mk
    for mk in t/unit/Makefile t/unit/Makefile.json; do
        log "building unit tests: make -f $mk"
        submake -j"$JOBS" -f "$mk" || die "unit test build failed ($mk)"
    done
}

# unit_build_into DIR FLAGS: the unit tests built afresh in DIR with FLAGS
# added (their Makefiles do not track flags)
unit_build_into() {
    local out=$1 cflags="-std=gnu11 -Wall -Wextra -Werror"
    rm -rf "$out"
    mkdir -p "$out"
    submake -s -j"$JOBS" -f t/unit/Makefile OUT="$out" CFLAGS="$cflags $2" ||
        die "unit test build failed (t/unit/Makefile)"
    submake -s -f t/unit/Makefile.json JSON_TEST="$out/test_json" \
        JSON_CFLAGS="$cflags -Isrc $2" || die "unit test build failed (t/unit/Makefile.json)"
}

# ---------------------------------------------------------------- MariaDB --
# Layout for a stack directory V (var/run or var/test):
#   V/my.cnf  V/mariadb/{data,tmp,mariadb.sock,mariadbd.pid,error.log}

mysql_paths() {   # V
    MY_CNF="$1/my.cnf"
    MY_DIR="$1/mariadb"
    MY_DATA="$MY_DIR/data"
    MY_SOCK="$MY_DIR/mariadb.sock"
    MY_PID="$MY_DIR/mariadbd.pid"
    MY_LOG="$MY_DIR/error.log"
}

# mysql_launch V PORT [TEMPLATE [CNF]]: mariadbd started on V's layout,
# unless it runs already.  A new data directory is a copy of TEMPLATE when
# that holds one, else made by mariadb-install-db and, with TEMPLATE given,
# copied there too (a pristine copy for the tests' private servers).  CNF's
# lines go into V/my.cnf as a second [mariadbd] group, whose settings win.
mysql_launch() {
    local v=$1 port=$2 template=${3:-} cnf=${4:-}
    mysql_paths "$v"
    mkdir -p "$MY_DIR/tmp"
    [ ${#MY_SOCK} -lt 100 ] || die "socket path $MY_SOCK is too long for a unix socket; move the repository to a shorter path"
    render "$ROOT/conf/my.cnf.in" "$MY_CNF" \
        "MYSQL_PORT=$port" "DATADIR=$MY_DATA" "SOCKET=$MY_SOCK" "PIDFILE=$MY_PID" \
        "LOG_ERROR=$MY_LOG" "TMPDIR=$MY_DIR/tmp" "USER=${AS_ROOT:+user=root}" \
        "REDO_LOG_SIZE=${REDO_LOG_SIZE:-96M}"
    if [ -n "$cnf" ]; then
        printf '\n[mariadbd]\n' >>"$MY_CNF" && cat "$cnf" >>"$MY_CNF" ||
            die "$cnf: not added to $MY_CNF"
    fi

    already_running mariadbd "$port" "$MY_PID" mariadbd && return 0
    if [ ! -d "$MY_DATA/mysql" ] && [ -n "$template" ] && [ -d "$template/mysql" ]; then
        rm -rf "$MY_DATA"
        cp -a "$template" "$MY_DATA" || die "copying $template failed"
    elif [ ! -d "$MY_DATA/mysql" ]; then
        log "initialising MariaDB data directory $MY_DATA"
        rm -rf "$MY_DATA" "$MY_DATA.tmp"
        mariadb-install-db --defaults-file="$MY_CNF" ${AS_ROOT:+--user=root} \
            --datadir="$MY_DATA.tmp" --auth-root-authentication-method=socket \
            --skip-test-db >"$MY_DIR/install.log" 2>&1 ||
            die_log "$MY_DIR/install.log" 30 "mariadb-install-db failed, see $MY_DIR/install.log"
        mv "$MY_DATA.tmp" "$MY_DATA"
        if [ -n "$template" ]; then
            rm -rf "$template"
            cp -a "$MY_DATA" "$template"
        fi
    fi
    start_bg mariadbd "$port" "$MY_PID" "$MY_DIR/mariadbd.out" \
        "$(mariadbd_bin)" --defaults-file="$MY_CNF"
    wait_started mariadbd "$MY_LOG" 30 mysql_ping
}

mysql_ping() {
    mariadb-admin --defaults-file="$MY_CNF" --connect-timeout=1 ping >/dev/null 2>&1
}

# mysql_start V PORT [TEMPLATE]: mariadbd up, with the database rbcs, its
# schema and the service's user.
# The service's user rbcs/rbcs (the nginx configurations' credentials):
# the role rbcs_service of conf/grants.sql and nothing else; the schema is
# root's (over the socket).  Made afresh at every start, so that a stack
# made when the user had more loses it.  The tests' databases get the
# role's grants from the harness (t/lib/RBCS/Test.pm), each as it is made.
mysql_start() {
    mysql_launch "$@"
    mariadb --defaults-file="$MY_CNF" -e 'CREATE DATABASE IF NOT EXISTS rbcs CHARACTER SET utf8mb4' ||
        die "creating database rbcs failed"
    local f
    for f in schema grants; do
        mariadb --defaults-file="$MY_CNF" --database=rbcs < "$ROOT/conf/$f.sql" ||
            die "applying conf/$f.sql to database rbcs failed"
    done
    log "applied conf/schema.sql and conf/grants.sql to database rbcs"
    mariadb --defaults-file="$MY_CNF" <<'SQL' || die "making the user rbcs failed"
CREATE ROLE IF NOT EXISTS rbcs_service;
DROP USER IF EXISTS 'rbcs'@'127.0.0.1', 'rbcs'@'localhost';
CREATE USER 'rbcs'@'127.0.0.1' IDENTIFIED BY 'rbcs';
CREATE USER 'rbcs'@'localhost' IDENTIFIED BY 'rbcs';
GRANT rbcs_service TO 'rbcs'@'127.0.0.1', 'rbcs'@'localhost';
SET DEFAULT ROLE rbcs_service FOR 'rbcs'@'127.0.0.1';
SET DEFAULT ROLE rbcs_service FOR 'rbcs'@'localhost';
SQL
    log "user rbcs: the role rbcs_service of conf/grants.sql"
}

# ------------------------------------------------------------------ Redis --
# V/redis.conf  V/redis/{redis.pid,redis.log}
# V/secrets/redis.password   the service's ACL user "rbcs" (nginx reads it)
# V/secrets/redis.admin      the "default" user's, for operators and tests
# V/secrets/redis.hmac-key   the key the pods tag Redis values with
# Made once per stack, random; redis.conf holds only the passwords' SHA-256.

redis_secrets() {   # V
    local s="$1/secrets" f
    mkdir -p "$s"
    chmod 700 "$s"
    for f in redis.password redis.admin redis.hmac-key; do
        if [ ! -s "$s/$f" ]; then
            (umask 077; head -c 48 /dev/urandom | base64 -w0 | tr -d '\n=+/' > "$s/$f.tmp")
            mv "$s/$f.tmp" "$s/$f"
        fi
    done
}

redis_password_sha() {   # FILE: what redis.conf's "#<sha256>" wants
    tr -d '\n' < "$1" | sha256sum | cut -d' ' -f1
}

redis_ping() {   # V PORT: as the admin of the stack
    [ "$(REDISCLI_AUTH="$(cat "$1/secrets/redis.admin" 2>/dev/null)" \
         redis-cli -h 127.0.0.1 -p "$2" ping 2>/dev/null)" = PONG ]
}

redis_start() {   # V PORT
    local v=$1 port=$2 dir="$1/redis"
    mkdir -p "$dir"
    redis_secrets "$v"
    render "$ROOT/conf/redis.conf.in" "$v/redis.conf" "REDIS_PORT=$port" "REDIS_DIR=$dir" \
        "REDIS_PASSWORD_HASH=$(redis_password_sha "$v/secrets/redis.password")" \
        "REDIS_ADMIN_HASH=$(redis_password_sha "$v/secrets/redis.admin")"
    already_running redis-server "$port" "$dir/redis.pid" redis-server && return 0
    start_bg redis-server "$port" "$dir/redis.pid" "$dir/redis.out" redis-server "$v/redis.conf"
    wait_started redis-server "$dir/redis.log" 10 redis_ping "$v" "$port"
}

stack_stop() {   # V: its Redis and MariaDB
    stop_pidfile redis-server "$1/redis/redis.pid" redis-server 20 TERM ||
        log "redis-server not running"
    mysql_paths "$1"
    stop_pidfile mariadbd "$MY_PID" mariadbd 60 TERM || log "mariadbd not running"
}

# ------------------------------------------------------------------ nginx --

stop_nginx() {   # PREFIX: graceful quit, then TERM/KILL
    stop_pidfile "nginx in ${1#"$ROOT"/}" "$1/nginx.pid" nginx 10 QUIT TERM
}

# nginx_healthz PORT: whether nginx answers GET /healthz (the status in
# HEALTHZ)
nginx_healthz() {
    HEALTHZ=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/healthz" || true)
    [ "$HEALTHZ" != 000 ]
}

nginx_start_local() {
    local p="$RUN_VAR/nginx"
    mkdir -p "$p"
    chmod 755 "$ROOT/var" "$RUN_VAR" "$p"
    render "$ROOT/conf/nginx.local.conf.in" "$p/nginx.conf" \
        "MODULE=$MODULE" "PREFIX=$p" "USER_DIRECTIVE=${AS_ROOT:+user nobody nogroup;}" \
        "WORKERS=1" "HTTP_PORT=$HTTP_PORT" "MYSQL_PORT=$MYSQL_PORT" \
        "MYSQL_DATABASE=rbcs" "REDIS_PORT=$REDIS_PORT" "REDIS_PREFIX=rbcs:" \
        "REDIS_PASSWORD_FILE=$RUN_VAR/secrets/redis.password" \
        "REDIS_HMAC_KEY_FILE=$RUN_VAR/secrets/redis.hmac-key" \
        "HTTP_CONF=" "SERVER_CONF="
    if running_pid "$p/nginx.pid" nginx >/dev/null; then
        log "nginx already running: restarting it to load the current module"
        stop_nginx "$p"
    fi
    check_port_free "$HTTP_PORT" "nginx HTTP"
    log "starting nginx on 127.0.0.1:$HTTP_PORT"
    "$NGINX_BIN" -p "$p/" -c "$p/nginx.conf" -e "$p/error.log" ||
        die "nginx failed to start, see $p/error.log"
    wait_for 10 "" nginx_healthz "$HTTP_PORT" ||
        die "nginx does not answer on 127.0.0.1:$HTTP_PORT, see $p/error.log"
    log "GET /healthz -> $HEALTHZ"
}

# ------------------------------------------------------------- local stack --

cmd_run() {
    cmd_deps
    local build_ok=1
    # separate process: `set -e` does not apply inside a function run under ||
    "$ROOT/conf/stack.sh" build || build_ok=0
    REDO_LOG_SIZE=1G mysql_start "$RUN_VAR" "$MYSQL_PORT"
    redis_start "$RUN_VAR" "$REDIS_PORT"
    local r=${RUN_VAR#"$ROOT"/} http_note
    if [ $build_ok -eq 1 ]; then
        nginx_start_local
        http_note="(nginx prefix $r/nginx)"
    elif running_pid "$RUN_VAR/nginx/nginx.pid" nginx >/dev/null; then
        http_note="(module build FAILED: nginx still runs the previous build)"
    else
        http_note="(NOT STARTED: module build failed)"
    fi
    cat <<EOF

RBCS local stack ($r):
  HTTP     http://127.0.0.1:$HTTP_PORT/   $http_note
  MariaDB  127.0.0.1:$MYSQL_PORT, socket $MY_SOCK
           database rbcs, user rbcs / password rbcs
           admin shell: mariadb --defaults-file=$r/my.cnf rbcs
  Redis    127.0.0.1:$REDIS_PORT
  Logs     $r/nginx/error.log  $r/nginx/access.log
           $r/mariadb/error.log  $r/redis/redis.log
  Stop     make stop
EOF
    [ $build_ok -eq 1 ] || die "the module did not build, nginx was not (re)started (MariaDB and Redis are up)"
}

cmd_stop() {
    stop_nginx "$RUN_VAR/nginx" || log "nginx not running"
    stack_stop "$RUN_VAR"
}

cmd_status() {
    local pid spec label f
    mysql_paths "$RUN_VAR"
    for spec in "nginx:$RUN_VAR/nginx/nginx.pid" "mariadbd:$MY_PID" \
                "redis-server:$RUN_VAR/redis/redis.pid"; do
        IFS=: read -r label f <<<"$spec"
        pid=$(running_pid "$f" "$label") && echo "$label: running (pid $pid)" ||
            echo "$label: not running"
    done
}

# -------------------------------------------------------------- test stack --

test_env() {
    mysql_paths "$TEST_VAR"
    cat <<EOF
export RBCS_ROOT='$ROOT'
export RBCS_MODULE='$MODULE'
export RBCS_TEST_VAR='$TEST_VAR'
export RBCS_MARIADBD='$(mariadbd_bin)'
export RBCS_TEST_MYSQL_PORT='$TEST_MYSQL_PORT'
export RBCS_TEST_MYSQL_SOCKET='$MY_SOCK'
export RBCS_TEST_MYSQL_PIDFILE='$MY_PID'
export RBCS_TEST_REDIS_PORT='$TEST_REDIS_PORT'
EOF
}

cmd_test_down() {
    local f
    # nginx instances and private MariaDB servers left by killed tests
    for f in "$TEST_VAR"/nginx/*/nginx.pid; do
        stop_nginx "${f%/nginx.pid}" || true
    done
    for f in "$TEST_VAR"/private-*/mariadb/mariadbd.pid; do
        stop_pidfile "private mariadbd" "$f" mariadbd 30 TERM || true
    done
    [ ! -d "$TEST_VAR" ] || stack_stop "$TEST_VAR"
}

cmd_test_up() {
    cmd_test_down >/dev/null
    rm -rf "$TEST_VAR"
    mkdir -p "$TEST_VAR/nginx"
    chmod 755 "$ROOT/var" "$TEST_VAR" "$TEST_VAR/nginx"
    mysql_start "$TEST_VAR" "$TEST_MYSQL_PORT" "$TEST_VAR/mariadb-template"
    redis_start "$TEST_VAR" "$TEST_REDIS_PORT"
}

# test_stack_for_run: the disposable test stack for a whole run, stopped
# when the script exits (its output to a file: prove's summary stays the
# last output), and the tests' environment exported
test_stack_for_run() {
    mkdir -p "$ROOT/var"
    trap 'mkdir -p "$TEST_VAR"; cmd_test_down >>"$TEST_VAR/teardown.log" 2>&1 || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    log "starting the test stack (MariaDB :$TEST_MYSQL_PORT, Redis :$TEST_REDIS_PORT) in ${TEST_VAR#"$ROOT"/}"
    "$ROOT/conf/stack.sh" _test-up >"$ROOT/var/test-up.log" 2>&1 ||
        die_log "$ROOT/var/test-up.log" +1 "could not start the test stack"
    mv "$ROOT/var/test-up.log" "$TEST_VAR/up.log"
    eval "$(test_env)"
}

# run_prove LOG_PREFIX: prove over TESTS (t/) with PROVE_JOBS and PROVE_ARGS;
# its exit status
run_prove() {
    local tests=(t/) extra=()
    [ -n "${TESTS:-}" ] && read -r -a tests <<<"$TESTS"
    [ -n "${PROVE_ARGS:-}" ] && read -r -a extra <<<"$PROVE_ARGS"
    log "$1prove -j${PROVE_JOBS:-2} ${extra[*]} -r -I t/lib ${tests[*]}"
    prove -j"${PROVE_JOBS:-2}" "${extra[@]}" -r -I t/lib "${tests[@]}"
}

cmd_test() {
    cmd_deps
    cmd_build
    cmd_unit

    test_stack_for_run
    run_prove ""   # its failure (set -e) is the script's exit status
}

# --------------------------------------------------------------- coverage --
# build/coverage/: nginx-src (a second configured tree, objects and .gcno/.gcda
# in objs/addon/), ngx_rbcs_module.so (instrumented; build/ngx_rbcs_module.so is
# left alone), unit/ (instrumented unit tests), html/, summary.txt, summary.json.

coverage_build() {
    # cmd_build with the coverage tree, output and flags: -O0 (and no
    # _FORTIFY_SOURCE, which wants optimisation and warns; nginx builds with
    # -Werror), --coverage to compile and to link
    log "building the instrumented module in ${COV_DIR#"$ROOT"/}/nginx-src"
    (
        BUILD="$COV_DIR"
        NGX_BUILD="$COV_DIR/nginx-src"
        MODULE="$COV_DIR/ngx_rbcs_module.so"
        CC_OPT="${CC_OPT//-D_FORTIFY_SOURCE=2/} -O0 --coverage"
        LD_OPT="$LD_OPT --coverage"
        cmd_build
    )

    log "building the instrumented unit tests in ${COV_DIR#"$ROOT"/}/unit"
    unit_build_into "$COV_DIR/unit" "-O0 --coverage"
}

# Zero the counters: every .gcda of the module becomes an empty file, mode
# 0666, in directories open to all.  The nginx workers run as nobody and the
# master as root: both must be able to merge their counters into the same
# files, and libgcov creates a missing file with the creator's owner and
# umask.  An empty .gcda is what libgcov itself creates before its first
# write, so it starts from zero.
coverage_reset() {
    local objs="$COV_DIR/nginx-src/objs" gcno
    find "$objs" "$COV_DIR/unit" -name '*.gcda' -delete
    find "$objs" -type d -exec chmod 0777 {} +
    while IFS= read -r -d '' gcno; do
        : > "${gcno%.gcno}.gcda"
        chmod 0666 "${gcno%.gcno}.gcda"
    done < <(find "$objs" -name '*.gcno' -print0)
}

coverage_report() {
    local rc=0
    rm -rf "$COV_DIR/html"
    mkdir -p "$COV_DIR/html"
    log "gcovr: line coverage of src/ and ngx_rbcs_module.c (minimum $COV_MIN%)"
    gcovr --root "$ROOT" --filter 'src/' --filter 'ngx_rbcs_module\.c' \
          -j "$JOBS" \
          --html-details "$COV_DIR/html/index.html" --html-title "RBCS coverage" \
          --txt "$COV_DIR/summary.txt" \
          --json-summary "$COV_DIR/summary.json" --json-summary-pretty \
          --print-summary --fail-under-line "$COV_MIN" \
          "$COV_DIR/nginx-src/objs" "$COV_DIR/unit" || rc=$?
    [ ! -f "$COV_DIR/summary.txt" ] || cat "$COV_DIR/summary.txt"
    log "report: ${COV_DIR#"$ROOT"/}/html/index.html, ${COV_DIR#"$ROOT"/}/summary.txt, ${COV_DIR#"$ROOT"/}/summary.json"
    return $rc
}

cmd_coverage() {
    local t0=$SECONDS
    cmd_deps
    coverage_build
    coverage_reset

    test_stack_for_run
    export RBCS_MODULE="$COV_DIR/ngx_rbcs_module.so"
    export RBCS_UNIT_DIR="$COV_DIR/unit"
    local rc=0
    run_prove "RBCS_MODULE=${RBCS_MODULE#"$ROOT"/} RBCS_UNIT_DIR=${RBCS_UNIT_DIR#"$ROOT"/} " || rc=$?

    # graceful stop (QUIT) of every nginx left: exiting workers write their
    # counters; the report only reads them after that
    log "stopping the test stack (log: ${TEST_VAR#"$ROOT"/}/teardown.log)"
    cmd_test_down >>"$TEST_VAR/teardown.log" 2>&1 || true
    trap - EXIT

    local crc=0
    coverage_report || crc=$?
    log "coverage run took $((SECONDS - t0))s"
    [ $rc -eq 0 ] || die "the test suite failed (prove exit $rc); the report covers the run as it went"
    [ $crc -eq 0 ] || die "line coverage below $COV_MIN% (or gcovr failed, exit $crc)"
}

# ---------------------------------------------------------- test-sanitize --
# build/sanitize/: nginx-src (Debian's nginx source, objects with
# -fsanitize=address,undefined), stage/usr/sbin/nginx (the unstripped
# binary the tests start), unit/ (the unit tests, sanitized too).  Reports
# go to each nginx instance's prefix (t/lib/RBCS/Test.pm) or, for an
# nginx started otherwise (nginx -t by a test), to var/test/sanitizer/.

SAN_DIR="$BUILD/sanitize"
SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"

cmd_test_sanitize() {
    local t0=$SECONDS
    cmd_deps
    log "building nginx with the module under ASan and UBSan in ${SAN_DIR#"$ROOT"/} (docker/build-static.sh)"
    RBCS_STATIC_DIR="$SAN_DIR" RBCS_STATIC_SANITIZE=1 "$ROOT/docker/build-static.sh" all ||
        die "sanitized nginx build failed"
    log "building the sanitized unit tests in ${SAN_DIR#"$ROOT"/}/unit"
    unit_build_into "$SAN_DIR/unit" "-O1 $SAN_FLAGS"

    test_stack_for_run
    local stray="$TEST_VAR/sanitizer"
    mkdir -p "$stray"
    chmod 0777 "$stray"
    export RBCS_NGINX="$SAN_DIR/stage/usr/sbin/nginx" RBCS_MODULE='' RBCS_SANITIZE=1
    export RBCS_UNIT_DIR="$SAN_DIR/unit"
    # halt_on_error=0: a report is written and the process goes on, so that
    # the test that caused it fails on the report rather than on a crash
    # verify_asan_link_order=0: t/094-cache-clock.t preloads libfaketime
    export ASAN_OPTIONS="log_path=$stray/asan:halt_on_error=0:detect_leaks=1:verify_asan_link_order=0"
    export UBSAN_OPTIONS="log_path=$stray/ubsan:print_stacktrace=1:halt_on_error=0"
    export LSAN_OPTIONS="suppressions=$ROOT/conf/lsan.supp:print_suppressions=0"
    local rc=0
    run_prove "RBCS_NGINX=${RBCS_NGINX#"$ROOT"/} " || rc=$?

    local f bad=0
    for f in "$stray"/*; do
        [ -s "$f" ] || continue
        warn "sanitizer report of an nginx the harness did not start: ${f#"$ROOT"/}"
        head -n 20 "$f" >&2
        bad=1
    done
    log "sanitized run took $((SECONDS - t0))s"
    [ $rc -eq 0 ] || die "the test suite failed under the sanitizers (prove exit $rc)"
    [ $bad -eq 0 ] || die "sanitizer reports outside the tests' nginx instances (above)"
}

cmd_clean() {
    cmd_stop >/dev/null 2>&1 || true
    cmd_test_down >/dev/null 2>&1 || true
    rm -rf "$BUILD" "$ROOT/var"
}

case "${1:-}" in
    deps)      cmd_deps ;;
    build)     cmd_build ;;
    unit)      cmd_unit ;;
    run)       cmd_run ;;
    stop)      cmd_stop ;;
    status)    cmd_status ;;
    test)      cmd_test ;;
    test-up)   cmd_test_up >&2; test_env ;;
    _test-up)  cmd_test_up ;;
    test-down) cmd_test_down ;;
    test-env)  test_env ;;
    clean)     cmd_clean ;;
    mariadb-up) shift; [ $# -ge 2 ] || die "usage: $0 mariadb-up DIR PORT [TEMPLATE [CNF]]"
               mysql_launch "$@" ;;
    redis-secrets) shift; [ $# -eq 1 ] || die "usage: $0 redis-secrets DIR"
               redis_secrets "$1" ;;
    render)    shift; [ $# -ge 2 ] || die "usage: $0 render TEMPLATE OUTPUT [NAME=VALUE...]"
               cd "$CALLER_DIR" && render "$@" ;;
    coverage)  cmd_coverage ;;
    test-sanitize) cmd_test_sanitize ;;
    fuzz)      shift; exec "$ROOT/t/fuzz/run.sh" "$@" ;;
    *) echo "usage: $0 deps|build|unit|run|stop|status|test|test-up|test-down|test-env|clean|render|mariadb-up|redis-secrets|coverage|test-sanitize|fuzz" >&2; exit 2 ;;
esac

