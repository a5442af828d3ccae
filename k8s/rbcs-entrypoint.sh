#!/bin/sh
# k8s/rbcs-entrypoint.sh - start RBCS in a pod: the image's ENTRYPOINT
# (docker/Dockerfile copies it to /usr/local/bin/rbcs-entrypoint).
#
# nginx reads no environment, and the ConfigMap's nginx.conf must not hold
# the database credentials, so they are put into the configuration here:
#   1. read /etc/rbcs/nginx.conf (the ConfigMap: conf/nginx.prod.conf.in
#      rendered for the cluster, with @MYSQL_USER@ and @MYSQL_PASSWORD@ left);
#   2. replace those two by the content of /etc/rbcs/db/username and
#      /etc/rbcs/db/password (the Secret rbcs-db), as nginx double-quoted
#      strings (\ and " escaped; one line, not empty), and nothing else;
#   3. development only (RBCS_TLS_SELF_SIGNED=1, the dev overlay and docker
#      compose): when the API listener's certificate /etc/rbcs/tls/tls.crt
#      (the Secret rbcs-tls) is not there, make a self-signed one with its
#      key in /var/lib/rbcs/tls (openssl, valid 30 days, for localhost and
#      the service name rbcs) and point the configuration's paths at it;
#   4. write /var/lib/rbcs/nginx.conf (the prefix, an in-memory emptyDir),
#      readable by its owner only;
#   5. link /var/lib/rbcs/error.log (error_log of nginx.conf) to stderr, so
#      that the error log is the container's log (kubectl logs) with the JSON
#      access log on stdout;
#   6. exec nginx in the foreground: it is PID 1 and gets the stop signal,
#      SIGQUIT (the image's STOPSIGNAL: a graceful stop).
# Arguments are passed to nginx (e.g. -t to test the configuration).
#
# Needs perl (perl-base, essential in Debian images), and openssl for a
# self-signed certificate.  For tests, the paths can be moved: RBCS_CONF_IN,
# RBCS_DB_DIR, RBCS_TLS_DIR, RBCS_PREFIX, RBCS_NGINX.

set -eu

conf_in=${RBCS_CONF_IN:-/etc/rbcs/nginx.conf}
db=${RBCS_DB_DIR:-/etc/rbcs/db}
prefix=${RBCS_PREFIX:-/var/lib/rbcs}
nginx=${RBCS_NGINX:-nginx}
tls=${RBCS_TLS_DIR:-/etc/rbcs/tls}
self_signed=

umask 077
if [ "${RBCS_TLS_SELF_SIGNED:-}" = 1 ] && [ ! -e "$tls/tls.crt" ]; then
    echo "rbcs-entrypoint: no $tls/tls.crt: a self-signed certificate for development" >&2
    mkdir -p "$prefix/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$prefix/tls/tls.key" -out "$prefix/tls/tls.crt" -days 30 \
        -subj "/CN=rbcs (self-signed, development only)" \
        -addext "subjectAltName=DNS:localhost,DNS:rbcs,IP:127.0.0.1" 2>/dev/null ||
        { echo "rbcs-entrypoint: openssl failed" >&2; exit 1; }
    self_signed=$prefix/tls
fi
perl -e '
    use strict;
    use warnings;
    my ($in, $user, $password, $tls, $self_signed) = @ARGV;
    sub quoted {
        my ($f) = @_;
        open my $fh, "<", $f or die "rbcs-entrypoint: $f: $!\n";
        local $/;
        my $v = <$fh> // "";
        close $fh;
        $v =~ s/\n\z//;
        die "rbcs-entrypoint: $f is empty\n" if $v eq "";
        die "rbcs-entrypoint: $f holds a line break or a NUL\n" if $v =~ /[\r\n\0]/;
        $v =~ s/([\\"])/\\$1/g;
        return "\"$v\"";
    }
    my %v = (MYSQL_USER => quoted($user), MYSQL_PASSWORD => quoted($password));
    open my $fh, "<", $in or die "rbcs-entrypoint: $in: $!\n";
    local $/;
    my $t = <$fh>;
    close $fh;
    for my $k (sort keys %v) {
        $t =~ /\@$k\@/ or die "rbcs-entrypoint: $in has no \@$k\@\n";
    }
    $t =~ s/\@(MYSQL_USER|MYSQL_PASSWORD)\@/$v{$1}/g;
    if (length $self_signed) {
        $t =~ s/^(\s*ssl_certificate(?:_key)?\s+)\Q$tls\E\/(tls\.(?:crt|key));/$1$self_signed\/$2;/mg == 2
            or die "rbcs-entrypoint: $in has no ssl_certificate and ssl_certificate_key in $tls\n";
    }
    print $t or die "rbcs-entrypoint: write: $!\n";
' "$conf_in" "$db/username" "$db/password" "$tls" "$self_signed" > "$prefix/nginx.conf.tmp"
mv -f "$prefix/nginx.conf.tmp" "$prefix/nginx.conf"
ln -sfn /dev/stderr "$prefix/error.log"

exec "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e stderr -g 'daemon off;' "$@"
