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
#   3. write /var/lib/rbcs/nginx.conf (the prefix, an in-memory emptyDir),
#      readable by its owner only;
#   4. link /var/lib/rbcs/error.log (error_log of nginx.conf) to stderr, so
#      that the error log is the container's log (kubectl logs) with the JSON
#      access log on stdout;
#   5. exec nginx in the foreground: it is PID 1 and gets the stop signal,
#      SIGQUIT (the image's STOPSIGNAL: a graceful stop).
# Arguments are passed to nginx (e.g. -t to test the configuration).
#
# Needs perl (perl-base, essential in Debian images).  For tests, the paths
# can be moved: RBCS_CONF_IN, RBCS_DB_DIR, RBCS_PREFIX, RBCS_NGINX.

set -eu

conf_in=${RBCS_CONF_IN:-/etc/rbcs/nginx.conf}
db=${RBCS_DB_DIR:-/etc/rbcs/db}
prefix=${RBCS_PREFIX:-/var/lib/rbcs}
nginx=${RBCS_NGINX:-nginx}

umask 077
perl -e '
    use strict;
    use warnings;
    my ($in, $user, $password) = @ARGV;
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
    print $t or die "rbcs-entrypoint: write: $!\n";
' "$conf_in" "$db/username" "$db/password" > "$prefix/nginx.conf.tmp"
mv -f "$prefix/nginx.conf.tmp" "$prefix/nginx.conf"
ln -sfn /dev/stderr "$prefix/error.log"

exec "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e stderr -g 'daemon off;' "$@"
