# shellcheck shell=bash
# The service's database user, made when MariaDB's data directory is first
# made.  The image's entrypoint sources the files of
# /docker-entrypoint-initdb.d in name order, as root with database rbcs
# selected (MARIADB_DATABASE): schema.sql (conf/schema.sql), then
# service-grants.sql (conf/grants.sql: the role rbcs_service), then this.
# The user and password are the files the rbcs pods (and container) read,
# /etc/rbcs/db/username and password (the Secret rbcs-db; docker/dev-db);
# the user gets the role, as its default role, and nothing else.  Schema
# changes are root's (MARIADB_ROOT_PASSWORD), never this user's.
#
# Used by k8s/overlays/dev (ConfigMap rbcs-schema) and docker/compose.yaml.
# RBCS_DB_DIR moves /etc/rbcs/db (t/230-db-privileges.t).

rbcs_db_value() {   # FILE: its content, one final newline dropped, as SQL
    local v
    v=$(cat "$1" && echo x) || return 1
    v=${v%x}
    v=${v%$'\n'}
    if [ -z "$v" ] || [[ $v == *[$'\r\n']* ]]; then
        echo "service-user.sh: $1 is empty or holds a line break" >&2
        return 1
    fi
    v=${v//\\/\\\\}
    printf "'%s'" "${v//\'/\\\'}"
}

rbcs_db_user=$(rbcs_db_value "${RBCS_DB_DIR:-/etc/rbcs/db}/username")
rbcs_db_password=$(rbcs_db_value "${RBCS_DB_DIR:-/etc/rbcs/db}/password")
docker_process_sql <<EOSQL
CREATE USER $rbcs_db_user@'%' IDENTIFIED BY $rbcs_db_password;
GRANT rbcs_service TO $rbcs_db_user@'%';
SET DEFAULT ROLE rbcs_service FOR $rbcs_db_user@'%';
EOSQL
unset rbcs_db_user rbcs_db_password
unset -f rbcs_db_value
