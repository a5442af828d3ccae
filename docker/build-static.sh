#!/usr/bin/env bash
# docker/build-static.sh - nginx built from Debian's source with
# ngx_rbcs_module compiled in (--add-module, a static module: no load_module).
#
# The one build path of the image: docker/Dockerfile's build stage runs it on
# debian:bookworm, and t/180-static-build.t runs it on this machine (make
# test), so what the image ships is what the tests start.
#
#   docker/build-static.sh              all of the below, in order
#   docker/build-static.sh deps         install the missing build packages (apt-get)
#   docker/build-static.sh source       Debian's nginx source, patched (apt-get
#                                       source; adds deb-src to apt when missing)
#   docker/build-static.sh build        configure, make, install into a DESTDIR,
#                                       assemble the image's files
#   docker/build-static.sh render-conf OUT [NAME=VALUE...]
#                                       conf/nginx.prod.conf.in with the values of
#                                       k8s/base/nginx-conf.env, NAME=VALUE overriding
#   docker/build-static.sh stamp        print the key a finished build is known by
#
# Every step skips what is done, so running it again is cheap (a few
# seconds, no network): the source is fetched once; the build is redone
# only when the key changes, i.e. the nginx source version, the configure
# arguments, this script, or the module's sources (config,
# ngx_rbcs_module.c, src/*.c, src/*.h); then make recompiles only what
# changed.
#
# Layout (RBCS_STATIC_DIR, default build/static, git-ignored):
#   nginx-src/        Debian's nginx source with Debian's patches applied
#                     (dpkg-source -x), objs/ inside
#   stage/            make install DESTDIR=stage
#   root/             what the image gets (COPY --from=build .../root/ /):
#                       usr/sbin/nginx           stripped, the module inside
#                       etc/rbcs/mime.types
#                       etc/rbcs/nginx.conf      only when render-conf writes it
#   built.stamp       the key of the build in root/
#   build.log         configure and make output of the last build
#
# Environment:
#   RBCS_STATIC_DIR        work directory (build/static)
#   RBCS_STATIC_JOBS       make -j (default: the CPUs, at most 2)
#   RBCS_STATIC_SANITIZE   non-empty: compiled with -fsanitize=address,undefined
#                          (make test-sanitize; use another RBCS_STATIC_DIR)
#   RBCS_NGINX_VERSION     Debian source version to fetch, and only that one
#                          (default: the installed nginx's version, else
#                          another Debian revision of the same upstream
#                          release, newest first); a different one than the
#                          unpacked tree is fetched again
#
# Needs root for apt (deps, and the first `source`); without root and with
# everything installed it runs as any user.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/docker/build-static.sh"
STATIC="${RBCS_STATIC_DIR:-$ROOT/build/static}"
SRC="$STATIC/nginx-src"
STAGE="$STATIC/stage"
OUT="$STATIC/root"
STAMP="$STATIC/built.stamp"
LOG="$STATIC/build.log"
DEB_SRC_LIST=/etc/apt/sources.list.d/rbcs-deb-src.sources

JOBS="${RBCS_STATIC_JOBS:-}"
if [ -z "$JOBS" ]; then
    JOBS=$(nproc 2>/dev/null || echo 2)
    [ "$JOBS" -le 2 ] || JOBS=2
fi

# Build packages of a static nginx with the module (compiler, nginx's own
# libraries, the module's, and dpkg-source for Debian's source package).
BUILD_PACKAGES=(build-essential dpkg-dev libpcre2-dev zlib1g-dev libssl-dev
                libmariadb-dev libhiredis-dev libyajl-dev
                # render-conf: conf/stack.sh render runs envsubst
                gettext-base)

# The image's layout.  nginx runs with prefix /var/lib/rbcs (k8s/rbcs-
# entrypoint.sh: -p /var/lib/rbcs/ -c /var/lib/rbcs/nginx.conf -e stderr),
# an emptyDir in the pod: the filled nginx.conf, pid and temp paths.  The
# compiled-in defaults are the same paths, so `nginx -t` or `nginx -s reload`
# typed in the container act on the running configuration.
#
# Modules: nginx's default HTTP set (limit_req, limit_conn, map, ... which
# the production configuration uses) plus ssl, stub_status (/nginx_status),
# realip (set_real_ip_from behind an ingress); no mail, no stream.
CONFIGURE_ARGS=(
    --prefix=/var/lib/rbcs
    --sbin-path=/usr/sbin/nginx
    --conf-path=/var/lib/rbcs/nginx.conf
    --pid-path=/var/lib/rbcs/nginx.pid
    --lock-path=/var/lib/rbcs/nginx.lock
    --error-log-path=stderr
    --http-log-path=/dev/stdout
    --http-client-body-temp-path=/var/lib/rbcs/client_body_temp
    --http-proxy-temp-path=/var/lib/rbcs/proxy_temp
    --http-fastcgi-temp-path=/var/lib/rbcs/fastcgi_temp
    --http-uwsgi-temp-path=/var/lib/rbcs/uwsgi_temp
    --http-scgi-temp-path=/var/lib/rbcs/scgi_temp
    --with-threads
    --with-pcre-jit
    --with-http_ssl_module
    --with-http_stub_status_module
    --with-http_realip_module
    --without-mail_pop3_module --without-mail_imap_module --without-mail_smtp_module
)
# The flags of conf/stack.sh's module build (Debian's hardening, -Wall
# -Wextra), position-independent executable instead of -fPIC, and -Werror
# (nginx's own configure adds -Werror too): nginx and the module are
# compiled warning-free with them.
CC_OPT="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIE -Wdate-time -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror"
LD_OPT="-Wl,-z,relro -Wl,-z,now -pie"
# RBCS_STATIC_SANITIZE=1 (make test-sanitize, with its own RBCS_STATIC_DIR):
# the same nginx and module under AddressSanitizer and UBSan.  -O1 and frame
# pointers for readable stacks; no _FORTIFY_SOURCE (its checked string
# functions bypass ASan's interceptors); NGX_DEBUG_PALLOC makes every pool
# allocation its own malloc(), so that ASan sees the bounds of each one
# instead of only those of the pools' 16k blocks.  The unstripped binary is
# stage/usr/sbin/nginx (root/ has the stripped one).
if [ -n "${RBCS_STATIC_SANITIZE:-}" ]; then
    CC_OPT="${CC_OPT//-D_FORTIFY_SOURCE=2/} -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -DNGX_DEBUG_PALLOC=1"
    LD_OPT="$LD_OPT -fsanitize=address,undefined"
    # as Debian's nginx, which the suite otherwise runs: debug logging
    # (t/100-group-commit.t reads the write path's debug lines)
    CONFIGURE_ARGS+=(--with-debug)
fi

log()  { printf '==> %s\n' "$*"; }
die()  { printf 'build-static.sh: ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (apt-get); run as root, or do it once: sudo $SELF $2"
}

apt_get() {
    env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 "$@"
}

# ------------------------------------------------------------------- deps --

cmd_deps() {
    local missing=() p
    for p in "${BUILD_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" == ii* ]] || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "build packages installed"
        return 0
    fi
    need_root "installing ${missing[*]}" deps
    log "installing build packages: ${missing[*]}"
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}"
}

# ----------------------------------------------------------------- source --

have_deb_src() {
    # (no grep -q: an early exit would make apt-cache fail under pipefail)
    apt-cache showsrc --only-source nginx 2>/dev/null | grep '^Package: nginx$' >/dev/null
}

# The source versions to try, in order: the installed nginx's own version
# first, then every other source version of the same upstream release that
# apt offers, newest first.  A mirror may serve a security update's binaries
# before (or without) its source files, and the same upstream release with
# another Debian revision builds the same nginx.  With no nginx installed,
# the upstream release of the newest source version is taken.
source_candidates() {
    local installed
    installed=$(dpkg-query -W -f='${Version}' nginx 2>/dev/null ||
                dpkg-query -W -f='${Version}' nginx-common 2>/dev/null || true)
    apt-cache showsrc --only-source nginx 2>/dev/null |
        sed -n 's/^Version: //p' | sort -V -r -u |
        perl -e '
            my ($installed) = @ARGV;
            chomp(my @all = <STDIN>);
            my $up = sub { (my $u = $_[0]) =~ s/^\d+://; $u =~ s/-[^-]*$//; $u };
            my $want = length $installed ? $up->($installed) : $up->($all[0] // "");
            my @out = length $installed ? ($installed) : ();
            push @out, grep { $_ ne $installed && $up->($_) eq $want } @all;
            print "$_\n" for @out;
        ' "$installed"
}

# deb-src stanzas for the deb ones of Debian's sources (same URIs, suites,
# components, keyring), in deb822 form; from /etc/apt/sources.list when the
# system still uses the one-line format.
write_deb_src() {
    local tmp="$DEB_SRC_LIST.tmp"
    perl -e '
        use strict; use warnings;
        my @out;
        for my $f (glob("/etc/apt/sources.list.d/*.sources")) {
            next if $f eq $ARGV[0];
            open my $fh, "<", $f or next;
            local $/ = "";                       # paragraphs
            for my $para (<$fh>) {
                my %h; my $key;
                for (split /\n/, $para) {
                    next if /^\s*#/;
                    if (/^(\S[^:]*):\s*(.*)$/) { $key = lc $1; $h{$key} = $2 }
                    elsif (/^\s+(.*)$/ && defined $key) { $h{$key} .= " $1" }
                }
                next unless ($h{types} // "") =~ /(^|\s)deb(\s|$)/;
                next unless ($h{uris} // "") =~ m{debian};
                next if ($h{enabled} // "yes") eq "no";
                push @out, join "", "Types: deb-src\n",
                    map { defined $h{lc $_} ? "$_: $h{lc $_}\n" : "" }
                        qw(URIs Suites Components Signed-By);
            }
        }
        if (!@out && open my $fh, "<", "/etc/apt/sources.list") {
            while (<$fh>) {
                next unless /^\s*deb\s+(\[[^\]]*\]\s+)?(\S*debian\S*)\s+(\S+)\s+(.+?)\s*$/;
                push @out, "Types: deb-src\nURIs: $2\nSuites: $3\nComponents: $4\n";
            }
        }
        die "no Debian deb source found in /etc/apt to derive deb-src from\n" unless @out;
        print "# deb-src for docker/build-static.sh (Debian'"'"'s nginx source), made\n",
              "# from the deb entries of this system; safe to delete.\n\n",
              join("\n", @out);
    ' "$DEB_SRC_LIST" > "$tmp" || { rm -f "$tmp"; die "could not derive deb-src entries"; }
    mv -f "$tmp" "$DEB_SRC_LIST"
}

cmd_source() {
    local want="${RBCS_NGINX_VERSION:-}" have
    have=$(cat "$SRC/.rbcs-source" 2>/dev/null || true)
    if [ -n "$have" ] && { [ -z "$want" ] || [ "$want" = "$have" ]; }; then
        log "nginx source $have in ${SRC#"$ROOT"/}"
        return 0
    fi

    command -v dpkg-source >/dev/null || die "dpkg-source missing (package dpkg-dev: $SELF deps)"
    if ! have_deb_src; then
        need_root "adding deb-src to apt" source
        log "adding deb-src entries: $DEB_SRC_LIST"
        write_deb_src
        apt_get update
        have_deb_src || die "apt-get update done, still no source package nginx (see $DEB_SRC_LIST)"
    fi

    local dl="$STATIC/dl" dsc version v tried=() candidates=()
    if [ -n "$want" ]; then
        candidates=("$want")
    else
        mapfile -t candidates < <(source_candidates)
        [ ${#candidates[@]} -gt 0 ] || die "apt offers no source version of nginx"
    fi
    for v in "${candidates[@]}"; do
        rm -rf "$dl" "$SRC.tmp"
        mkdir -p "$dl"
        chmod 0777 "$dl"     # apt's _apt user downloads into it
        log "fetching Debian's nginx source $v (apt-get source)"
        if (cd "$dl" && apt-get -q source --download-only "nginx=$v"); then
            tried=()
            break
        fi
        tried+=("$v")
        log "nginx source $v could not be downloaded"
    done
    [ ${#tried[@]} -eq 0 ] ||
        die "apt-get source nginx failed for every version tried: ${tried[*]}"
    local dscs=("$dl"/nginx_*.dsc)
    dsc=${dscs[0]}
    [ -f "$dsc" ] || die "no nginx_*.dsc downloaded"
    version=$(sed -n 's/^Version: //p' "$dsc" | head -n 1)
    # unpack and apply Debian's patches (source format 3.0 (quilt)), as the
    # package build does.  The files' integrity is apt's (hashes of the
    # signed Sources index); dpkg-source may warn that it cannot check the
    # .dsc's own signature without debian-keyring.
    dpkg-source --no-copy -x "$dsc" "$SRC.tmp" >"$STATIC/source.log" 2>&1 || {
        cat "$STATIC/source.log" >&2
        die "dpkg-source -x $dsc failed"
    }
    [ -x "$SRC.tmp/configure" ] || die "$dsc has no configure script"
    printf '%s\n' "$version" > "$SRC.tmp/.rbcs-source"
    rm -rf "$SRC" "$STAMP"
    mv "$SRC.tmp" "$SRC"
    log "nginx source $version unpacked in ${SRC#"$ROOT"/} ($(grep -c 'info: applying ' "$STATIC/source.log" || true) Debian patches applied)"
}

# ------------------------------------------------------------------ build --

module_files() {
    printf '%s\n' "$ROOT/config" "$ROOT/ngx_rbcs_module.c" "$ROOT"/src/*.c "$ROOT"/src/*.h
}

# the key of a build: source version, arguments, flags, this script, the
# module's files
build_key() {
    local f
    {
        echo "nginx $(cat "$SRC/.rbcs-source" 2>/dev/null || echo none)"
        printf 'arg %s\n' "${CONFIGURE_ARGS[@]}" "--add-module=$ROOT" \
            "--with-cc-opt=$CC_OPT" "--with-ld-opt=$LD_OPT"
        echo "script $(sha256sum "$SELF" | cut -d' ' -f1)"
        while read -r f; do
            [ -f "$f" ] || die "module file $f is missing"
            echo "file ${f#"$ROOT"/} $(sha256sum "$f" | cut -d' ' -f1)"
        done < <(module_files)
    } | sha256sum | cut -d' ' -f1
}

print_result() {
    local bin="$OUT/usr/sbin/nginx"
    log "files for the image (${OUT#"$ROOT"/}/):"
    (cd "$OUT" && find . -type f -printf '    /%P  %s bytes\n' | sort)
    log "$bin -V:"
    "$bin" -V 2>&1 | sed 's/^/    /'
    log "shared libraries (the runtime image must carry them):"
    ldd "$bin" | sed 's/^\s*/    /'
}

cmd_build() {
    [ -f "$SRC/.rbcs-source" ] || die "no nginx source in $SRC: run $SELF source first"
    [ -f "$ROOT/config" ] || die "$ROOT/config (the module's addon script) is missing"
    local key started
    key=$(build_key)
    if [ -x "$OUT/usr/sbin/nginx" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$key" ]; then
        log "static nginx up to date (key $key)"
        print_result
        return 0
    fi
    started=$(date +%s)
    : > "$LOG"

    # configure when objs/ is missing or the arguments changed (the
    # module's `config` lists its sources: a change there reconfigures too)
    local args=("${CONFIGURE_ARGS[@]}" "--add-module=$ROOT"
                "--with-cc-opt=$CC_OPT" "--with-ld-opt=$LD_OPT")
    local cstamp
    cstamp="$(printf '%s\n' "${args[@]}"; sha256sum "$ROOT/config" | cut -d' ' -f1)"
    if [ ! -f "$SRC/objs/Makefile" ] ||
       [ "$(cat "$SRC/.rbcs-configured" 2>/dev/null || true)" != "$cstamp" ]; then
        log "configuring nginx $(cat "$SRC/.rbcs-source") with ngx_rbcs_module (log: ${LOG#"$ROOT"/})"
        rm -rf "$SRC/objs" "$SRC/Makefile" "$SRC/.rbcs-configured"
        if ! (cd "$SRC" &&
              env -u CFLAGS -u CPPFLAGS -u LDFLAGS -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
                  ./configure "${args[@]}") >>"$LOG" 2>&1; then
            tail -n 40 "$LOG" >&2
            die "nginx ./configure failed, see $LOG"
        fi
        printf '%s' "$cstamp" > "$SRC/.rbcs-configured"
    fi

    log "compiling nginx with ngx_rbcs_module (make -j$JOBS; log: ${LOG#"$ROOT"/})"
    if ! (cd "$SRC" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j"$JOBS" -f objs/Makefile) \
            >>"$LOG" 2>&1; then
        grep -E 'error|warning' "$LOG" | tail -n 40 >&2 || tail -n 40 "$LOG" >&2
        die "nginx build failed, see $LOG"
    fi

    log "installing into ${STAGE#"$ROOT"/} (make install DESTDIR=...)"
    rm -rf "$STAGE"
    (cd "$SRC" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -f objs/Makefile install DESTDIR="$STAGE") >>"$LOG" 2>&1 ||
        die "make install failed, see $LOG"

    # the image's files: the binary (stripped) and mime.types; a
    # configuration rendered earlier by render-conf is kept
    local conf=""
    [ -f "$OUT/etc/rbcs/nginx.conf" ] && conf=$(cat "$OUT/etc/rbcs/nginx.conf")
    rm -rf "$OUT.tmp"
    install -d -m 0755 "$OUT.tmp/usr/sbin" "$OUT.tmp/etc/rbcs"
    install -m 0755 "$STAGE/usr/sbin/nginx" "$OUT.tmp/usr/sbin/nginx"
    strip --strip-unneeded "$OUT.tmp/usr/sbin/nginx"
    install -m 0644 "$STAGE/var/lib/rbcs/mime.types" "$OUT.tmp/etc/rbcs/mime.types"
    [ -n "$conf" ] && printf '%s\n' "$conf" > "$OUT.tmp/etc/rbcs/nginx.conf"
    [[ "$("$OUT.tmp/usr/sbin/nginx" -V 2>&1)" == *"--add-module=$ROOT "* ]] ||
        die "the built nginx does not list --add-module=$ROOT"
    rm -rf "$OUT"
    mv "$OUT.tmp" "$OUT"
    printf '%s\n' "$key" > "$STAMP"
    log "built static nginx in $(( $(date +%s) - started ))s (key $key)"
    print_result
}

# ------------------------------------------------------------ render-conf --

# render-conf OUT [NAME=VALUE...]: every ${NAME} of conf/nginx.prod.conf.in
# from NAME=VALUE, else from k8s/base/nginx-conf.env (the Kubernetes
# ConfigMap's values: MODULE empty, prefix /var/lib/rbcs, the credentials
# left as @MYSQL_USER@/@MYSQL_PASSWORD@ for the entrypoint), rendered by
# conf/stack.sh render.
cmd_render_conf() {
    [ $# -ge 1 ] || die "usage: $SELF render-conf OUT [NAME=VALUE...]"
    local out=$1 env="$ROOT/k8s/base/nginx-conf.env" kv=() line a; shift
    mkdir -p "$(dirname "$out")"
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^[A-Z_]+= ]] || die "$env: not NAME=VALUE: $line"
        kv+=("$line")
    done <"$env"
    for a in "$@"; do
        [[ $a =~ ^[A-Z_]+= ]] || die "render-conf: $a is not NAME=VALUE"
        grep -q "^${a%%=*}=" "$env" \
            || die "render-conf: ${a%%=*} is not a placeholder of $env"
    done
    "$ROOT/conf/stack.sh" render "$ROOT/conf/nginx.prod.conf.in" "$out" \
        "${kv[@]}" "$@" || die "render-conf: $out not rendered"
    log "rendered conf/nginx.prod.conf.in into $out${*:+ ($*)}"
}

# -------------------------------------------------------------------- main --

# one run at a time on a work directory (the test and a hand-made run)
lock() {
    mkdir -p "$STATIC"
    exec 9>"$STATIC/.lock"
    if ! flock -n 9; then
        log "waiting for another build-static.sh on ${STATIC#"$ROOT"/}"
        flock 9
    fi
}

case "${1:-all}" in
    all)         lock; cmd_deps; cmd_source; cmd_build ;;
    deps)        lock; cmd_deps ;;
    source)      lock; cmd_source ;;
    build)       lock; cmd_build ;;
    render-conf) shift; cmd_render_conf "$@" ;;
    stamp)       build_key ;;
    -h|--help|help) sed -n '2,/^$/s/^# \{0,1\}//p' "$SELF" ;;
    *) echo "usage: $0 [all|deps|source|build|render-conf OUT [NAME=VALUE...]|stamp]" >&2; exit 2 ;;
esac
