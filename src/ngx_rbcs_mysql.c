
/*
 * RBCS: per-worker pool of non-blocking MariaDB connections.
 *
 * Each connection is a small state machine driven by nginx events: the
 * library's socket gets an nginx connection (ngx_get_connection) whose read
 * and write handlers resume the pending _cont call; a timer bounds every
 * operation.  A broken or timed out connection is closed and reconnected
 * after a growing, jittered delay.  Requests that find no free connection
 * wait in a bounded FIFO with a timeout.  Automatic reconnect stays off:
 * it would silently drop an open transaction.
 */


#include <sys/socket.h>
#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include "ngx_rbcs_mysql.h"
#include "ngx_rbcs_metrics.h"


#define NGX_RBCS_MC_CLOSED      0
#define NGX_RBCS_MC_BACKOFF     1
#define NGX_RBCS_MC_CONNECTING  2
#define NGX_RBCS_MC_IDLE        3
#define NGX_RBCS_MC_QUERY       4
#define NGX_RBCS_MC_STORE       5
#define NGX_RBCS_MC_NEXT        6
#define NGX_RBCS_MC_ROLLBACK    7
#define NGX_RBCS_MC_HELD        8   /* between two queries of one owner */

#define NGX_RBCS_Q_NEW          0
#define NGX_RBCS_Q_QUEUED       1
#define NGX_RBCS_Q_RUNNING      2
#define NGX_RBCS_Q_DONE         3



typedef struct {
    ngx_rbcs_mysql_conf_t     *conf;
    ngx_rbcs_mysql_conn_t     *conns;
    ngx_uint_t                 nconns;
    ngx_queue_t                idle;
    ngx_queue_t                waiting;
    ngx_uint_t                 nwaiting;
    ngx_log_t                 *log;
    u_char                    *host;
    u_char                    *socket;
    u_char                    *user;
    u_char                    *password;
    u_char                    *database;
    u_char                    *ssl_ca;
    u_char                    *ssl_cert;
    u_char                    *ssl_key;
    ngx_msec_t                 answered;    /* last successful round trip */
} ngx_rbcs_mysql_pool_t;


typedef ngx_int_t (*ngx_rbcs_mysql_step_pt)(ngx_rbcs_mysql_conn_t *mc,
    int status);


struct ngx_rbcs_mysql_conn_s {
    ngx_rbcs_mysql_pool_t     *pool;
    MYSQL                     *mysql;
    ngx_connection_t          *c;
    ngx_uint_t                 state;
    int                        wait;
    ngx_uint_t                 failures;
    ngx_event_t                timer;
    ngx_event_t                kick;
    ngx_queue_t                queue;       /* in pool->idle when idle */

    ngx_rbcs_mysql_query_t    *query;       /* what runs; NULL if detached */

    u_char                    *sql;         /* own copy of the query */
    size_t                     sql_len;
    size_t                     sql_size;

    int                        iret;
    MYSQL                     *cret;
    MYSQL_RES                 *res;
    ngx_uint_t                 err;         /* error that ended the query */
    ngx_uint_t                 rc;
};


static void ngx_rbcs_mysql_connect(ngx_rbcs_mysql_conn_t *mc);
static ngx_int_t ngx_rbcs_mysql_attach(ngx_rbcs_mysql_conn_t *mc);
static void ngx_rbcs_mysql_close(ngx_rbcs_mysql_conn_t *mc,
    ngx_uint_t graceful);
static void ngx_rbcs_mysql_broken(ngx_rbcs_mysql_conn_t *mc,
    ngx_uint_t rc, ngx_uint_t err);
static void ngx_rbcs_mysql_event_handler(ngx_event_t *ev);
static void ngx_rbcs_mysql_timer_handler(ngx_event_t *ev);
static void ngx_rbcs_mysql_kick_handler(ngx_event_t *ev);
static void ngx_rbcs_mysql_process(ngx_rbcs_mysql_conn_t *mc, int status);
static ngx_int_t ngx_rbcs_mysql_step_connect(ngx_rbcs_mysql_conn_t *mc,
    int status);
static ngx_int_t ngx_rbcs_mysql_step_query(ngx_rbcs_mysql_conn_t *mc,
    int status);
static ngx_int_t ngx_rbcs_mysql_step_store(ngx_rbcs_mysql_conn_t *mc,
    int status);
static ngx_int_t ngx_rbcs_mysql_step_next(ngx_rbcs_mysql_conn_t *mc,
    int status);
static ngx_int_t ngx_rbcs_mysql_step_rollback(ngx_rbcs_mysql_conn_t *mc,
    int status);
static ngx_int_t ngx_rbcs_mysql_copy_result(ngx_rbcs_mysql_conn_t *mc);
static void ngx_rbcs_mysql_query_failed(ngx_rbcs_mysql_conn_t *mc);
static void ngx_rbcs_mysql_finish(ngx_rbcs_mysql_conn_t *mc,
    ngx_uint_t rc, ngx_uint_t err);
static void ngx_rbcs_mysql_set_idle(ngx_rbcs_mysql_conn_t *mc);
static void ngx_rbcs_mysql_dispatch(ngx_rbcs_mysql_conn_t *mc);
static ngx_int_t ngx_rbcs_mysql_start(ngx_rbcs_mysql_conn_t *mc,
    ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_mysql_waited(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_mysql_publish(void);
static void ngx_rbcs_mysql_deliver(ngx_rbcs_mysql_query_t *q,
    ngx_uint_t rc, ngx_uint_t err);
static void ngx_rbcs_mysql_query_timer(ngx_event_t *ev);
static ngx_uint_t ngx_rbcs_mysql_usable(void);
static ngx_uint_t ngx_rbcs_mysql_reached(ngx_uint_t state);
static void ngx_rbcs_mysql_wake(ngx_rbcs_mysql_pool_t *pool);
static u_char *ngx_rbcs_mysql_cstr(ngx_pool_t *pool, ngx_str_t *s);
static ngx_int_t ngx_rbcs_mysql_conf_file(ngx_conf_t *cf, char *directive,
    ngx_str_t *name, char *marker);
static ngx_int_t ngx_rbcs_mysql_ssl_options(ngx_rbcs_mysql_conn_t *mc);


static ngx_rbcs_mysql_pool_t  *ngx_rbcs_mysql_pool;

/* what each state of a connection runs, where it runs something */

static ngx_rbcs_mysql_step_pt  ngx_rbcs_mysql_steps[] = {
    NULL,                               /* NGX_RBCS_MC_CLOSED */
    NULL,                               /* NGX_RBCS_MC_BACKOFF */
    ngx_rbcs_mysql_step_connect,        /* NGX_RBCS_MC_CONNECTING */
    NULL,                               /* NGX_RBCS_MC_IDLE */
    ngx_rbcs_mysql_step_query,          /* NGX_RBCS_MC_QUERY */
    ngx_rbcs_mysql_step_store,          /* NGX_RBCS_MC_STORE */
    ngx_rbcs_mysql_step_next,           /* NGX_RBCS_MC_NEXT */
    ngx_rbcs_mysql_step_rollback,       /* NGX_RBCS_MC_ROLLBACK */
    NULL                                /* NGX_RBCS_MC_HELD */
};


/*
 * rbcs_mysql_ssl and its companions, checked when the configuration is
 * read: a combination that could not give what it says, or a file the
 * library would fail to load at every connect, stops nginx here rather
 * than leaving the pool to fail forever.
 */

ngx_int_t
ngx_rbcs_mysql_init_conf(ngx_conf_t *cf, ngx_rbcs_mysql_conf_t *conf)
{
    ngx_conf_init_value(conf->ssl, 0);

    if (!conf->ssl) {
        if (conf->ssl_verify == 1 || conf->ssl_ca.len || conf->ssl_cert.len
            || conf->ssl_key.len)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"rbcs_mysql_ssl_verify\", "
                               "\"rbcs_mysql_ssl_ca\", \"rbcs_mysql_ssl_cert\" "
                               "and \"rbcs_mysql_ssl_key\" need "
                               "\"rbcs_mysql_ssl on\"");
            return NGX_ERROR;
        }

        conf->ssl_verify = 0;
        return NGX_OK;
    }

    ngx_conf_init_value(conf->ssl_verify, 1);

    if (conf->ssl_verify && conf->ssl_ca.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_mysql_ssl_verify on\" needs "
                           "\"rbcs_mysql_ssl_ca\" (the CA that signs the "
                           "database server's certificate)");
        return NGX_ERROR;
    }

    if ((conf->ssl_cert.len == 0) != (conf->ssl_key.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_mysql_ssl_cert\" and "
                           "\"rbcs_mysql_ssl_key\" go together");
        return NGX_ERROR;
    }

    if (conf->ssl_ca.len
        && ngx_rbcs_mysql_conf_file(cf, "rbcs_mysql_ssl_ca", &conf->ssl_ca,
                                    "-----BEGIN CERTIFICATE-----")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (conf->ssl_cert.len
        && (ngx_rbcs_mysql_conf_file(cf, "rbcs_mysql_ssl_cert",
                                     &conf->ssl_cert,
                                     "-----BEGIN CERTIFICATE-----")
            != NGX_OK
            || ngx_rbcs_mysql_conf_file(cf, "rbcs_mysql_ssl_key",
                                        &conf->ssl_key, "PRIVATE KEY-----")
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A PEM file the library will load at each connect: made a full path
 * (relative to the configuration prefix), readable, and holding what it
 * should.  Read once, in the master; the workers read it again through
 * the library when they connect.
 */

static ngx_int_t
ngx_rbcs_mysql_conf_file(ngx_conf_t *cf, char *directive, ngx_str_t *name,
    char *marker)
{
    u_char           *buf;
    size_t            size;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\": " ngx_open_file_n " failed",
                           directive, name);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\": " ngx_fd_info_n " failed",
                           directive, name);
        goto done;
    }

    size = (size_t) ngx_min(ngx_file_size(&fi), 1024 * 1024);

    buf = ngx_alloc(size + 1, cf->log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, size);
    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\": " ngx_read_fd_n " failed",
                           directive, name);
        goto done;
    }

    buf[n] = '\0';

    if (ngx_strstr(buf, marker) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" is not a PEM file with \"%s\"",
                           directive, name, marker);
        goto done;
    }

    rc = NGX_OK;

done:

    if (buf) {
        ngx_free(buf);
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", name);
    }

    return rc;
}


ngx_int_t
ngx_rbcs_mysql_init_process(ngx_cycle_t *cycle, ngx_rbcs_mysql_conf_t *conf)
{
    ngx_uint_t              i;
    ngx_rbcs_mysql_pool_t  *pool;
    ngx_rbcs_mysql_conn_t  *mc;

    if (mysql_library_init(0, NULL, NULL) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "rbcs: mysql_library_init() failed");
        return NGX_ERROR;
    }

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_rbcs_mysql_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->conf = conf;
    pool->log = cycle->log;
    pool->nconns = conf->pool_size;
    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->waiting);

    pool->host = ngx_rbcs_mysql_cstr(cycle->pool, &conf->host);
    pool->socket = ngx_rbcs_mysql_cstr(cycle->pool, &conf->socket);
    pool->user = ngx_rbcs_mysql_cstr(cycle->pool, &conf->user);
    pool->password = ngx_rbcs_mysql_cstr(cycle->pool, &conf->password);
    pool->database = ngx_rbcs_mysql_cstr(cycle->pool, &conf->database);
    pool->ssl_ca = ngx_rbcs_mysql_cstr(cycle->pool, &conf->ssl_ca);
    pool->ssl_cert = ngx_rbcs_mysql_cstr(cycle->pool, &conf->ssl_cert);
    pool->ssl_key = ngx_rbcs_mysql_cstr(cycle->pool, &conf->ssl_key);

    pool->conns = ngx_pcalloc(cycle->pool,
                              pool->nconns * sizeof(ngx_rbcs_mysql_conn_t));
    if (pool->conns == NULL) {
        return NGX_ERROR;
    }

    ngx_rbcs_mysql_pool = pool;

    for (i = 0; i < pool->nconns; i++) {
        mc = &pool->conns[i];
        mc->pool = pool;
        mc->state = NGX_RBCS_MC_CLOSED;

        mc->timer.handler = ngx_rbcs_mysql_timer_handler;
        mc->timer.data = mc;
        mc->timer.log = cycle->log;
        mc->timer.cancelable = 1;

        mc->kick.handler = ngx_rbcs_mysql_kick_handler;
        mc->kick.data = mc;
        mc->kick.log = cycle->log;

        ngx_rbcs_mysql_connect(mc);
    }

    return NGX_OK;
}


void
ngx_rbcs_mysql_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_rbcs_mysql_pool_t  *pool;

    pool = ngx_rbcs_mysql_pool;
    if (pool == NULL) {
        return;
    }

    for (i = 0; i < pool->nconns; i++) {
        ngx_rbcs_mysql_close(&pool->conns[i],
                             pool->conns[i].state == NGX_RBCS_MC_IDLE);

        /* the SQL buffer is ngx_alloc()'s, not the cycle pool's */

        ngx_free(pool->conns[i].sql);
        pool->conns[i].sql = NULL;
        pool->conns[i].sql_size = 0;
    }

    ngx_rbcs_mysql_pool = NULL;
    mysql_library_end();
}


static void
ngx_rbcs_mysql_connect(ngx_rbcs_mysql_conn_t *mc)
{
    int                     status;
    unsigned int            timeout;
    my_bool                 off;
    ngx_rbcs_mysql_pool_t  *pool;
    ngx_rbcs_mysql_conf_t  *conf;
    char                    init[128];

    pool = mc->pool;
    conf = pool->conf;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        mc->state = NGX_RBCS_MC_CLOSED;
        return;
    }

    mc->mysql = mysql_init(NULL);
    if (mc->mysql == NULL) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "rbcs: mysql_init() failed");
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return;
    }

    off = 0;
    timeout = 0;

    /*
     * Non-blocking mode must be chosen before connecting; automatic
     * reconnect stays off; our own timers bound every wait, so the
     * library's timeouts are not used.
     */

    mysql_options(mc->mysql, MYSQL_OPT_NONBLOCK, 0);
    mysql_options(mc->mysql, MYSQL_OPT_RECONNECT, &off);
    /*
     * The session speaks the schema's character set: every column is
     * ascii, and what reaches a query (ids, currencies, amounts, codes) is
     * checked to be ASCII first; a utf8mb4 session made the server convert
     * each string it read or returned.
     */
    mysql_options(mc->mysql, MYSQL_SET_CHARSET_NAME, "ascii");
    mysql_options(mc->mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);

    mysql_options(mc->mysql, MYSQL_INIT_COMMAND,
                  "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");

    /* SYSDATE() in UTC, as UTC_TIMESTAMP() (the write path reads both) */
    mysql_options(mc->mysql, MYSQL_INIT_COMMAND,
                  "SET SESSION time_zone = '+00:00'");

    ngx_snprintf((u_char *) init, sizeof(init),
                 "SET SESSION innodb_lock_wait_timeout = %ui%Z",
                 (ngx_uint_t) ngx_max(conf->lock_wait_timeout / 1000, 1));
    mysql_options(mc->mysql, MYSQL_INIT_COMMAND, init);

    if (conf->ssl && ngx_rbcs_mysql_ssl_options(mc) != NGX_OK) {
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return;
    }

    mc->state = NGX_RBCS_MC_CONNECTING;
    ngx_rbcs_mysql_publish();

    status = mysql_real_connect_start(&mc->cret, mc->mysql,
                                      (char *) pool->host,
                                      (char *) pool->user,
                                      (char *) pool->password,
                                      (char *) pool->database,
                                      pool->socket ? 0 : conf->port,
                                      (char *) pool->socket,
                                      CLIENT_MULTI_STATEMENTS
                                      |CLIENT_MULTI_RESULTS);

    if (status == 0) {
        ngx_rbcs_mysql_process(mc, -1);
        return;
    }

    if (ngx_rbcs_mysql_attach(mc) != NGX_OK) {
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return;
    }

    mc->wait = status;
    mc->timer.cancelable = 1;
    ngx_add_timer(&mc->timer, conf->connect_timeout);
}


/*
 * TLS to the database (rbcs_mysql_ssl on): the library refuses a server
 * that does not offer TLS (enforce), and TLS older than 1.2.  With a CA,
 * the handshake fails unless the server's certificate chains to it; with
 * rbcs_mysql_ssl_verify on, the certificate must also name the host the
 * connection was made to, which is the address rbcs_mysql_server resolved
 * to at configuration time (an IP address SAN), or "localhost" for a unix
 * socket.  The non-blocking connect runs the handshake through the same
 * _start/_cont calls.
 */

static ngx_int_t
ngx_rbcs_mysql_ssl_options(ngx_rbcs_mysql_conn_t *mc)
{
    my_bool                 on, verify;
    ngx_rbcs_mysql_pool_t  *pool;

    pool = mc->pool;
    on = 1;
    verify = pool->conf->ssl_verify ? 1 : 0;

    if (mysql_options(mc->mysql, MYSQL_OPT_SSL_ENFORCE, &on) != 0
        || mysql_options(mc->mysql, MYSQL_OPT_SSL_VERIFY_SERVER_CERT,
                         &verify) != 0
        || mysql_options(mc->mysql, MARIADB_OPT_TLS_VERSION,
                         "TLSv1.2,TLSv1.3") != 0
        || (pool->ssl_ca
            && mysql_options(mc->mysql, MYSQL_OPT_SSL_CA, pool->ssl_ca) != 0)
        || (pool->ssl_cert
            && (mysql_options(mc->mysql, MYSQL_OPT_SSL_CERT, pool->ssl_cert)
                != 0
                || mysql_options(mc->mysql, MYSQL_OPT_SSL_KEY, pool->ssl_key)
                   != 0)))
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "rbcs: mysql TLS options refused: %s",
                      mysql_error(mc->mysql));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* give the library's socket an nginx connection with our handlers */

static ngx_int_t
ngx_rbcs_mysql_attach(ngx_rbcs_mysql_conn_t *mc)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    if (mc->c) {
        return NGX_OK;
    }

    fd = mysql_get_socket(mc->mysql);
    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, mc->pool->log, 0,
                      "rbcs: mysql connection has no socket");
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, mc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = mc;
    c->read->handler = ngx_rbcs_mysql_event_handler;
    c->write->handler = ngx_rbcs_mysql_event_handler;
    c->read->log = mc->pool->log;
    c->write->log = mc->pool->log;

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            goto failed;
        }

    } else {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT)
            != NGX_OK)
        {
            goto failed;
        }

        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_CLEAR_EVENT)
            != NGX_OK)
        {
            goto failed;
        }
    }

    mc->c = c;

    return NGX_OK;

failed:

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    return NGX_ERROR;
}


/*
 * Release the nginx side of the connection without closing the socket,
 * which belongs to the library, then close the library's connection.  A
 * connection that is not idle may have a frozen peer: shut the socket down
 * first so that mysql_close() cannot wait on it.
 */

static void
ngx_rbcs_mysql_close(ngx_rbcs_mysql_conn_t *mc, ngx_uint_t graceful)
{
    ngx_connection_t  *c;

    if (mc->timer.timer_set) {
        ngx_del_timer(&mc->timer);
    }

    if (mc->kick.posted) {
        ngx_delete_posted_event(&mc->kick);
    }

    if (mc->state == NGX_RBCS_MC_IDLE) {
        ngx_queue_remove(&mc->queue);
    }

    c = mc->c;

    if (c) {
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (ngx_del_conn) {
            ngx_del_conn(c, NGX_CLOSE_EVENT);

        } else {
            if (c->read->active) {
                ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
            }

            if (c->write->active) {
                ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
            }
        }

        if (!graceful) {
            (void) shutdown(c->fd, SHUT_RDWR);
        }

        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        mc->c = NULL;
    }

    if (mc->res) {
        mysql_free_result(mc->res);
        mc->res = NULL;
    }

    if (mc->mysql) {
        mysql_close(mc->mysql);
        mc->mysql = NULL;
    }

    mc->state = NGX_RBCS_MC_CLOSED;
}


/* the connection failed: close it, fail its query, retry later */

static void
ngx_rbcs_mysql_broken(ngx_rbcs_mysql_conn_t *mc, ngx_uint_t rc,
    ngx_uint_t err)
{
    ngx_uint_t               exiting;
    ngx_msec_t               delay;
    ngx_rbcs_mysql_query_t  *q, *run;

    /* the query it ran, for delivery: the connection is free */
    run = mc->query;
    mc->query = NULL;

    ngx_rbcs_mysql_close(mc, 0);

    exiting = ngx_exiting || ngx_terminate || ngx_quit;

    if (!exiting) {
        delay = ngx_rbcs_backoff(mc->failures);

        mc->failures++;
        mc->state = NGX_RBCS_MC_BACKOFF;
        mc->timer.cancelable = 1;
        ngx_add_timer(&mc->timer, delay);
        ngx_rbcs_mysql_publish();
    }

    if (run) {
        ngx_rbcs_mysql_deliver(run, rc, err);
    }

    /* no connection left to wait for: fail the waiting requests now */

    if (!exiting && !ngx_rbcs_mysql_usable()) {
        while (!ngx_queue_empty(&mc->pool->waiting)) {
            q = ngx_queue_data(ngx_queue_head(&mc->pool->waiting),
                               ngx_rbcs_mysql_query_t, queue);
            ngx_queue_remove(&q->queue);
            mc->pool->nwaiting--;
            ngx_rbcs_mysql_deliver(q, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        }
    }
}


static void
ngx_rbcs_mysql_event_handler(ngx_event_t *ev)
{
    char                    buf[1];
    ssize_t                 n;
    ngx_connection_t       *c;
    ngx_rbcs_mysql_conn_t  *mc;

    c = ev->data;
    mc = c->data;

    if (mc->state == NGX_RBCS_MC_IDLE || mc->state == NGX_RBCS_MC_HELD) {

        /* an idle connection became readable: the server closed it */

        if (ev == c->read) {
            n = recv(c->fd, buf, 1, MSG_PEEK);

            if (n == 0 || (n == -1 && ngx_socket_errno != NGX_EAGAIN)) {
                ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                              "rbcs: idle mysql connection closed by peer");
                ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
            }
        }

        return;
    }

    if (mc->wait == 0) {
        /* no operation is waiting for the socket */
        return;
    }

    ngx_rbcs_mysql_process(mc, mc->wait & ~MYSQL_WAIT_TIMEOUT);
}


static void
ngx_rbcs_mysql_timer_handler(ngx_event_t *ev)
{
    ngx_rbcs_mysql_conn_t  *mc;

    mc = ev->data;

    switch (mc->state) {

    case NGX_RBCS_MC_BACKOFF:
        ngx_rbcs_mysql_connect(mc);
        return;

    case NGX_RBCS_MC_CONNECTING:
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "rbcs: mysql connect timed out");
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return;

    case NGX_RBCS_MC_QUERY:
    case NGX_RBCS_MC_STORE:
    case NGX_RBCS_MC_NEXT:
    case NGX_RBCS_MC_ROLLBACK:
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "rbcs: mysql query timed out");
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_TIMEOUTS);
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNKNOWN, 0);
        return;

    default:
        return;
    }
}


static void
ngx_rbcs_mysql_kick_handler(ngx_event_t *ev)
{
    ngx_rbcs_mysql_conn_t  *mc;

    mc = ev->data;

    if (mc->state == NGX_RBCS_MC_QUERY && mc->wait == 0) {
        ngx_rbcs_mysql_process(mc, 0);
    }
}


/*
 * Start (status 0) or continue (status: the events that happened) the
 * operation of the connection's current state, and move on through the
 * states for as long as the library does not have to wait.  Each state's
 * step answers NGX_OK when it moved to a state to start now, NGX_AGAIN
 * when the library waits for the events in mc->wait, and NGX_DONE when
 * the connection was handed on (idle, finished or broken).
 */

static void
ngx_rbcs_mysql_process(ngx_rbcs_mysql_conn_t *mc, int status)
{
    ngx_int_t                 rc;
    ngx_rbcs_mysql_step_pt    step;

    for ( ;; ) {
        step = ngx_rbcs_mysql_steps[mc->state];

        if (step == NULL) {
            return;
        }

        rc = step(mc, status);

        if (rc == NGX_DONE) {
            return;
        }

        if (rc == NGX_AGAIN) {
            break;
        }

        status = 0;
    }

    if (ngx_rbcs_mysql_attach(mc) != NGX_OK) {
        ngx_rbcs_mysql_broken(mc, mc->state == NGX_RBCS_MC_CONNECTING
                                  ? NGX_RBCS_MYSQL_EUNAVAIL
                                  : NGX_RBCS_MYSQL_EUNKNOWN, CR_SERVER_LOST);
    }
}


/* the connection came up (status -1: without waiting) or failed to */

static ngx_int_t
ngx_rbcs_mysql_step_connect(ngx_rbcs_mysql_conn_t *mc, int status)
{
    if (status != -1) {
        mc->wait = mysql_real_connect_cont(&mc->cret, mc->mysql, status);
        if (mc->wait) {
            return NGX_AGAIN;
        }
    }

    if (mc->timer.timer_set) {
        ngx_del_timer(&mc->timer);
    }

    if (mc->cret == NULL) {
        ngx_log_error(NGX_LOG_WARN, mc->pool->log, 0,
                      "rbcs: mysql connect failed: %s",
                      mysql_error(mc->mysql));
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return NGX_DONE;
    }

    if (ngx_rbcs_mysql_attach(mc) != NGX_OK) {
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return NGX_DONE;
    }

    if (mc->failures) {
        ngx_log_error(NGX_LOG_NOTICE, mc->pool->log, 0,
                      "rbcs: mysql connection re-established");
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_RECONNECTS);
    }

    mc->failures = 0;
    ngx_rbcs_mysql_set_idle(mc);
    ngx_rbcs_mysql_dispatch(mc);

    return NGX_DONE;
}


/* the query's text is sent and its first result announced */

static ngx_int_t
ngx_rbcs_mysql_step_query(ngx_rbcs_mysql_conn_t *mc, int status)
{
    mc->wait = status
               ? mysql_real_query_cont(&mc->iret, mc->mysql, status)
               : mysql_real_query_start(&mc->iret, mc->mysql,
                                        (char *) mc->sql, mc->sql_len);
    if (mc->wait) {
        return NGX_AGAIN;
    }

    if (mc->iret != 0) {
        ngx_rbcs_mysql_query_failed(mc);
        return NGX_DONE;
    }

    mc->state = NGX_RBCS_MC_STORE;

    return NGX_OK;
}


/* one result set is read and copied; the query ends after the last */

static ngx_int_t
ngx_rbcs_mysql_step_store(ngx_rbcs_mysql_conn_t *mc, int status)
{
    mc->wait = status ? mysql_store_result_cont(&mc->res, mc->mysql, status)
                      : mysql_store_result_start(&mc->res, mc->mysql);
    if (mc->wait) {
        return NGX_AGAIN;
    }

    if (mc->res == NULL && mysql_field_count(mc->mysql) != 0) {
        ngx_rbcs_mysql_query_failed(mc);
        return NGX_DONE;
    }

    if (mc->res) {
        if (ngx_rbcs_mysql_copy_result(mc) != NGX_OK) {
            mc->rc = NGX_RBCS_MYSQL_ESQL;
        }

        mysql_free_result(mc->res);
        mc->res = NULL;
    }

    if (!mysql_more_results(mc->mysql)) {
        ngx_rbcs_mysql_finish(mc, mc->rc, 0);
        return NGX_DONE;
    }

    mc->state = NGX_RBCS_MC_NEXT;

    return NGX_OK;
}


/* the next statement's outcome, of a query of several */

static ngx_int_t
ngx_rbcs_mysql_step_next(ngx_rbcs_mysql_conn_t *mc, int status)
{
    mc->wait = status ? mysql_next_result_cont(&mc->iret, mc->mysql, status)
                      : mysql_next_result_start(&mc->iret, mc->mysql);
    if (mc->wait) {
        return NGX_AGAIN;
    }

    if (mc->iret > 0) {
        ngx_rbcs_mysql_query_failed(mc);
        return NGX_DONE;
    }

    if (mc->iret == -1) {
        ngx_rbcs_mysql_finish(mc, mc->rc, 0);
        return NGX_DONE;
    }

    mc->state = NGX_RBCS_MC_STORE;

    return NGX_OK;
}


/* the failed transaction is rolled back before the connection is reused */

static ngx_int_t
ngx_rbcs_mysql_step_rollback(ngx_rbcs_mysql_conn_t *mc, int status)
{
    mc->wait = status
               ? mysql_real_query_cont(&mc->iret, mc->mysql, status)
               : mysql_real_query_start(&mc->iret, mc->mysql, "ROLLBACK",
                                        sizeof("ROLLBACK") - 1);
    if (mc->wait) {
        return NGX_AGAIN;
    }

    if (mc->iret != 0) {
        ngx_log_error(NGX_LOG_WARN, mc->pool->log, 0,
                      "rbcs: mysql ROLLBACK failed: %s",
                      mysql_error(mc->mysql));
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_ESQL, mc->err);
        return NGX_DONE;
    }

    ngx_rbcs_mysql_finish(mc, NGX_RBCS_MYSQL_ESQL, mc->err);

    return NGX_DONE;
}


/* copy a stored result set into the query's pool */

static ngx_int_t
ngx_rbcs_mysql_copy_result(ngx_rbcs_mysql_conn_t *mc)
{
    ngx_uint_t                i, n, ncols, nrows;
    ngx_str_t                *cell;
    MYSQL_ROW                 row;
    MYSQL_FIELD              *fields;
    unsigned long            *lengths;
    ngx_rbcs_mysql_query_t   *q;
    ngx_rbcs_mysql_result_t  *rs;

    q = mc->query;

    if (q == NULL) {
        return NGX_OK;
    }

    ncols = mysql_num_fields(mc->res);
    nrows = (ngx_uint_t) mysql_num_rows(mc->res);

    rs = ngx_array_push(&q->results);
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->ncols = ncols;
    rs->nrows = nrows;
    rs->cells = ngx_pcalloc(q->pool, sizeof(ngx_str_t) * (ncols * nrows + 1));
    if (rs->cells == NULL) {
        return NGX_ERROR;
    }

    rs->names = ngx_palloc(q->pool, sizeof(ngx_str_t) * (ncols + 1));
    if (rs->names == NULL) {
        return NGX_ERROR;
    }

    fields = mysql_fetch_fields(mc->res);

    for (i = 0; i < ncols; i++) {
        rs->names[i].len = fields[i].name_length;
        rs->names[i].data = ngx_pnalloc(q->pool, fields[i].name_length + 1);
        if (rs->names[i].data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(rs->names[i].data, fields[i].name, fields[i].name_length);
        rs->names[i].data[fields[i].name_length] = '\0';
    }

    n = 0;

    while ((row = mysql_fetch_row(mc->res)) != NULL) {
        lengths = mysql_fetch_lengths(mc->res);

        for (i = 0; i < ncols; i++) {
            cell = &rs->cells[n++];

            if (row[i] == NULL) {
                continue;
            }

            cell->len = lengths[i];
            cell->data = ngx_pnalloc(q->pool, lengths[i] + 1);
            if (cell->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(cell->data, row[i], lengths[i]);
            cell->data[lengths[i]] = '\0';
        }
    }

    return NGX_OK;
}


/* the server or the connection reported an error for the query */

static void
ngx_rbcs_mysql_query_failed(ngx_rbcs_mysql_conn_t *mc)
{
    ngx_uint_t               err;
    ngx_rbcs_mysql_query_t  *q;

    err = mysql_errno(mc->mysql);
    q = mc->query;

    if (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, mc->pool->log, 0,
                      "rbcs: mysql connection lost: %s",
                      mysql_error(mc->mysql));
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_LOST);
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNKNOWN, CR_SERVER_LOST);
        return;
    }

    if (err != ER_LOCK_DEADLOCK && err != ER_LOCK_WAIT_TIMEOUT
        && err != ER_DUP_ENTRY)
    {
        ngx_log_error(NGX_LOG_ERR, mc->pool->log, 0,
                      "rbcs: mysql error %ui: %s", err,
                      mysql_error(mc->mysql));
    }

    mc->err = err;

    ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_ERRORS);

    if (err == ER_LOCK_DEADLOCK) {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_DEADLOCKS);

    } else if (err == ER_LOCK_WAIT_TIMEOUT) {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_LOCKWAITS);
    }

    /*
     * A lock wait timeout rolls back only the statement: committing
     * after it would apply half a transfer, so a transaction always
     * ends with an explicit ROLLBACK after an error.
     */

    if (q == NULL || q->transaction) {
        mc->state = NGX_RBCS_MC_ROLLBACK;
        ngx_rbcs_mysql_process(mc, 0);
        return;
    }

    ngx_rbcs_mysql_finish(mc, NGX_RBCS_MYSQL_ESQL, err);
}


static void
ngx_rbcs_mysql_finish(ngx_rbcs_mysql_conn_t *mc, ngx_uint_t rc,
    ngx_uint_t err)
{
    ngx_rbcs_mysql_query_t  *q;

    if (mc->timer.timer_set) {
        ngx_del_timer(&mc->timer);
    }

    q = mc->query;
    mc->query = NULL;

    if (rc == NGX_RBCS_MYSQL_OK) {
        mc->pool->answered = ngx_current_msec;
    }

    /*
     * A query that holds its connection (the first round trip of a
     * transaction) keeps it for the next query its handler runs with
     * ngx_rbcs_mysql_continue(); a handler that runs none gives it back.
     */

    if (q && q->hold && rc == NGX_RBCS_MYSQL_OK) {
        mc->state = NGX_RBCS_MC_HELD;
        mc->rc = NGX_RBCS_MYSQL_OK;
        mc->err = 0;
        q->held = mc;

        ngx_rbcs_mysql_deliver(q, rc, err);

        if (mc->state == NGX_RBCS_MC_HELD) {
            ngx_log_error(NGX_LOG_ALERT, mc->pool->log, 0,
                          "rbcs: mysql connection held and not used");
            ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        }

        return;
    }

    ngx_rbcs_mysql_set_idle(mc);

    if (q) {
        ngx_rbcs_mysql_deliver(q, rc, err);
    }

    if (mc->state == NGX_RBCS_MC_IDLE) {
        ngx_rbcs_mysql_dispatch(mc);
    }
}


static void
ngx_rbcs_mysql_set_idle(ngx_rbcs_mysql_conn_t *mc)
{
    mc->state = NGX_RBCS_MC_IDLE;
    mc->rc = NGX_RBCS_MYSQL_OK;
    mc->err = 0;
    ngx_queue_insert_tail(&mc->pool->idle, &mc->queue);
    ngx_rbcs_mysql_publish();
}


/* an idle connection takes the oldest waiting query */

static void
ngx_rbcs_mysql_dispatch(ngx_rbcs_mysql_conn_t *mc)
{
    ngx_queue_t             *head;
    ngx_rbcs_mysql_pool_t   *pool;
    ngx_rbcs_mysql_query_t  *q;

    pool = mc->pool;

    if (mc->state != NGX_RBCS_MC_IDLE || ngx_queue_empty(&pool->waiting)) {
        return;
    }

    head = ngx_queue_head(&pool->waiting);
    q = ngx_queue_data(head, ngx_rbcs_mysql_query_t, queue);

    ngx_rbcs_mysql_waited(q);

    if (ngx_rbcs_mysql_start(mc, q) != NGX_OK) {
        ngx_rbcs_mysql_deliver(q, NGX_RBCS_MYSQL_EUNAVAIL, 0);
    }
}


/* a query leaves the waiting queue */

static void
ngx_rbcs_mysql_waited(ngx_rbcs_mysql_query_t *q)
{
    ngx_queue_remove(&q->queue);
    ngx_rbcs_mysql_pool->nwaiting--;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_rbcs_mysql_publish();
}


/* the connection runs q, from its own copy of q's text */

static ngx_int_t
ngx_rbcs_mysql_start(ngx_rbcs_mysql_conn_t *mc, ngx_rbcs_mysql_query_t *q)
{
    u_char  *p;
    size_t   size;

    if (q->sql.len > mc->sql_size) {
        size = ngx_max(q->sql.len, 1024);

        p = ngx_alloc(size, mc->pool->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_free(mc->sql);
        mc->sql = p;
        mc->sql_size = size;
    }

    ngx_memcpy(mc->sql, q->sql.data, q->sql.len);
    mc->sql_len = q->sql.len;

    mc->query = q;

    if (mc->state == NGX_RBCS_MC_IDLE) {
        ngx_queue_remove(&mc->queue);
    }

    mc->state = NGX_RBCS_MC_QUERY;
    mc->rc = NGX_RBCS_MYSQL_OK;
    mc->err = 0;

    q->conn = mc;
    q->held = NULL;
    q->state = NGX_RBCS_Q_RUNNING;
    q->attempts++;

    ngx_rbcs_mysql_publish();

    /* a request waits on this timer: a graceful exit must wait for it */

    mc->timer.cancelable = 0;
    ngx_add_timer(&mc->timer, mc->pool->conf->query_timeout);

    /* the query is started from the event loop, never from the caller */

    ngx_post_event(&mc->kick, &ngx_posted_events);

    return NGX_OK;
}


/*
 * The end of one attempt.  A connection lost under an idempotent query
 * runs it again (the caller learns from q->unknown that an earlier attempt
 * may have been applied).  Everything else goes to the query's handler;
 * a transaction's retries are its owner's (the write path's).
 */

static void
ngx_rbcs_mysql_deliver(ngx_rbcs_mysql_query_t *q, ngx_uint_t rc,
    ngx_uint_t err)
{
    ngx_rbcs_mysql_conf_t  *conf;

    conf = ngx_rbcs_mysql_pool->conf;

    /* its owner may free it from the handler: no timer may outlive it */

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    q->conn = NULL;
    q->rc = rc;
    q->err = err;
    q->elapsed = ngx_current_msec - q->start;

    if (rc == NGX_RBCS_MYSQL_EUNKNOWN && err == CR_SERVER_LOST
        && q->idempotent && q->attempts <= conf->retries)
    {
        q->unknown = 1;
        q->results.nelts = 0;
        q->state = NGX_RBCS_Q_NEW;
        ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_RETRIES);

        if (ngx_rbcs_mysql_run(q) == NGX_OK) {
            return;
        }

        rc = NGX_RBCS_MYSQL_EUNKNOWN;
        q->rc = rc;
    }

    if (rc == NGX_RBCS_MYSQL_EUNAVAIL && q->unknown) {
        q->rc = NGX_RBCS_MYSQL_EUNKNOWN;
    }

    q->state = NGX_RBCS_Q_DONE;

    if (q->handler) {
        q->handler(q);
    }
}


/*
 * A query whose results go to pool and whose messages to log.  Whoever
 * may go away before its handler is called must ngx_rbcs_mysql_cancel()
 * it first (a request does so from a cleanup handler).
 */

ngx_rbcs_mysql_query_t *
ngx_rbcs_mysql_create(ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_rbcs_mysql_query_t  *q;

    q = ngx_pcalloc(pool, sizeof(ngx_rbcs_mysql_query_t));
    if (q == NULL) {
        return NULL;
    }

    if (ngx_array_init(&q->results, pool, 4,
                       sizeof(ngx_rbcs_mysql_result_t))
        != NGX_OK)
    {
        return NULL;
    }

    q->pool = pool;
    q->log = log;
    q->start = ngx_current_msec;

    q->timer.handler = ngx_rbcs_mysql_query_timer;
    q->timer.data = q;
    q->timer.log = log;

    return q;
}


/*
 * Run q on the connection that prev holds (prev->hold, from prev's
 * handler).  NGX_DECLINED: the connection is gone, the transaction with it.
 */

ngx_int_t
ngx_rbcs_mysql_continue(ngx_rbcs_mysql_query_t *q,
    ngx_rbcs_mysql_query_t *prev)
{
    ngx_rbcs_mysql_conn_t  *mc;

    mc = prev->held;
    prev->held = NULL;

    if (mc == NULL || mc->state != NGX_RBCS_MC_HELD) {
        return NGX_DECLINED;
    }

    if (ngx_rbcs_mysql_start(mc, q) != NGX_OK) {
        ngx_rbcs_mysql_broken(mc, NGX_RBCS_MYSQL_EUNAVAIL, 0);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Hand a query to the pool.  NGX_OK: its handler will be called later.
 * NGX_DECLINED: no connection can be had now (the caller answers 503).
 */

ngx_int_t
ngx_rbcs_mysql_run(ngx_rbcs_mysql_query_t *q)
{
    ngx_queue_t             *head;
    ngx_rbcs_mysql_pool_t   *pool;
    ngx_rbcs_mysql_conn_t   *mc;

    pool = ngx_rbcs_mysql_pool;

    if (pool == NULL) {
        return NGX_DECLINED;
    }

    if (!ngx_queue_empty(&pool->idle)) {
        head = ngx_queue_head(&pool->idle);
        mc = ngx_queue_data(head, ngx_rbcs_mysql_conn_t, queue);

        if (ngx_rbcs_mysql_start(mc, q) == NGX_OK) {
            return NGX_OK;
        }

        return NGX_DECLINED;
    }

    if (!ngx_rbcs_mysql_usable()) {
        ngx_rbcs_mysql_wake(pool);

        if (!ngx_rbcs_mysql_usable()) {
            ngx_rbcs_metrics_inc(NGX_RBCS_M_QUEUE_FULL);
            return NGX_DECLINED;
        }
    }

    if (pool->nwaiting >= pool->conf->queue_size) {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_QUEUE_FULL);
        return NGX_DECLINED;
    }

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    pool->nwaiting++;
    q->state = NGX_RBCS_Q_QUEUED;
    ngx_add_timer(&q->timer, pool->conf->queue_timeout);
    ngx_rbcs_mysql_publish();

    return NGX_OK;
}


static void
ngx_rbcs_mysql_query_timer(ngx_event_t *ev)
{
    ngx_rbcs_mysql_query_t  *q;

    q = ev->data;

    if (q->state == NGX_RBCS_Q_QUEUED) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "rbcs: no mysql connection within the queue timeout");
        ngx_queue_remove(&q->queue);
        ngx_rbcs_mysql_pool->nwaiting--;
        ngx_rbcs_mysql_deliver(q, NGX_RBCS_MYSQL_EUNAVAIL, 0);
    }
}


/* the query's owner is going away: forget the query wherever it is */

void
ngx_rbcs_mysql_cancel(ngx_rbcs_mysql_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    switch (q->state) {

    case NGX_RBCS_Q_QUEUED:
        ngx_queue_remove(&q->queue);
        ngx_rbcs_mysql_pool->nwaiting--;
        break;

    case NGX_RBCS_Q_RUNNING:
        if (q->conn && q->conn->query == q) {
            q->conn->query = NULL;
        }
        break;

    default:
        break;
    }

    q->state = NGX_RBCS_Q_DONE;
    q->handler = NULL;
}


/*
 * Every connection is waiting out its backoff, but a request is here: try
 * one of them now, so that a database that came back is used at once
 * rather than after the longest backoff.  At most one connect is in flight
 * this way: while it is, the pool counts as usable.
 */

static void
ngx_rbcs_mysql_wake(ngx_rbcs_mysql_pool_t *pool)
{
    ngx_uint_t              i;
    ngx_rbcs_mysql_conn_t  *mc;

    for (i = 0; i < pool->nconns; i++) {
        mc = &pool->conns[i];

        if (mc->state == NGX_RBCS_MC_BACKOFF) {
            if (mc->timer.timer_set) {
                ngx_del_timer(&mc->timer);
            }

            ngx_rbcs_mysql_connect(mc);
            return;
        }
    }
}


/* this worker's pool, as gauges in the metrics zone */

static void
ngx_rbcs_mysql_publish(void)
{
    ngx_uint_t              i, busy, idle, connecting;
    ngx_rbcs_mysql_pool_t  *pool;

    pool = ngx_rbcs_mysql_pool;
    if (pool == NULL) {
        return;
    }

    busy = idle = connecting = 0;

    /* the states after idle are a query's, or held by the write path */

    for (i = 0; i < pool->nconns; i++) {
        idle += (pool->conns[i].state == NGX_RBCS_MC_IDLE);
        connecting += (pool->conns[i].state == NGX_RBCS_MC_CONNECTING);
        busy += (pool->conns[i].state > NGX_RBCS_MC_IDLE);
    }

    ngx_rbcs_metrics_pool(busy, idle, pool->nwaiting, connecting);
}


/* a connection is up, or on its way up */

static ngx_uint_t
ngx_rbcs_mysql_usable(void)
{
    return ngx_rbcs_mysql_reached(NGX_RBCS_MC_CONNECTING);
}


/* a connection of this worker's pool is in "state" or a later one */

static ngx_uint_t
ngx_rbcs_mysql_reached(ngx_uint_t state)
{
    ngx_uint_t              i;
    ngx_rbcs_mysql_pool_t  *pool;

    pool = ngx_rbcs_mysql_pool;

    for (i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state >= state) {
            return 1;
        }
    }

    return 0;
}


/* a NUL-terminated copy for the library; NULL for an empty string */

static u_char *
ngx_rbcs_mysql_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    if (s->len == 0) {
        return NULL;
    }

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p, s->data, s->len + 1);

    return p;
}


/* a connection is established (idle or in use) */

ngx_uint_t
ngx_rbcs_mysql_connected(void)
{
    return ngx_rbcs_mysql_pool != NULL
           && ngx_rbcs_mysql_reached(NGX_RBCS_MC_IDLE);
}


/* the database answered this worker within the last ms milliseconds */

ngx_uint_t
ngx_rbcs_mysql_answered_within(ngx_msec_t ms)
{
    ngx_rbcs_mysql_pool_t  *pool;

    pool = ngx_rbcs_mysql_pool;

    return pool != NULL && pool->answered != 0
           && ngx_current_msec - pool->answered < ms
           && ngx_rbcs_mysql_usable();
}


/*
 * A connection is up or on its way up; when every one is waiting out its
 * backoff, one is tried now (see ngx_rbcs_mysql_wake).
 */

ngx_uint_t
ngx_rbcs_mysql_ready(void)
{
    if (ngx_rbcs_mysql_pool == NULL) {
        return 0;
    }

    if (!ngx_rbcs_mysql_usable()) {
        ngx_rbcs_mysql_wake(ngx_rbcs_mysql_pool);
    }

    return ngx_rbcs_mysql_usable();
}


ngx_str_t *
ngx_rbcs_mysql_cell(ngx_rbcs_mysql_query_t *q, ngx_uint_t set,
    ngx_uint_t row, ngx_uint_t col)
{
    ngx_rbcs_mysql_result_t  *rs;

    rs = q->results.elts;

    if (set >= q->results.nelts || row >= rs[set].nrows
        || col >= rs[set].ncols)
    {
        return NULL;
    }

    return &rs[set].cells[row * rs[set].ncols + col];
}


/*
 * The query answered nsets result sets of at least the given numbers of
 * columns (one ngx_uint_t argument per set): then every cell of a row it
 * counts can be read.  Otherwise NGX_ERROR, logged once per query: the
 * database is not the schema the module was built for.
 */

ngx_int_t
ngx_rbcs_mysql_shape(ngx_rbcs_mysql_query_t *q, ngx_uint_t nsets, ...)
{
    va_list                   args;
    ngx_uint_t                i, ncols;
    ngx_rbcs_mysql_result_t  *rs;

    if (q->results.nelts != nsets) {
        goto bad;
    }

    rs = q->results.elts;

    va_start(args, nsets);

    for (i = 0; i < nsets; i++) {
        ncols = va_arg(args, ngx_uint_t);

        if (rs[i].ncols < ncols) {
            va_end(args);
            goto bad;
        }
    }

    va_end(args);

    return NGX_OK;

bad:

    ngx_log_error(NGX_LOG_ALERT, q->log, 0,
                  "rbcs: a query answered rows of another shape than asked "
                  "for (a schema other than conf/schema.sql?): %V", &q->sql);

    return NGX_ERROR;
}


/*
 * The indexes in result set "set" of the columns named in "names" (ended
 * by an empty name), looked up once per result set so that the reads of
 * every row go by the names the SELECT gave, not by where it put them.
 * NGX_ERROR, logged, when one is missing: the SELECT and its reader
 * disagree, or the database is not the schema the module was built for.
 */

ngx_int_t
ngx_rbcs_mysql_columns(ngx_rbcs_mysql_query_t *q, ngx_uint_t set,
    ngx_str_t *names, ngx_uint_t *index)
{
    ngx_uint_t                i, k;
    ngx_rbcs_mysql_result_t  *rs;

    if (set >= q->results.nelts) {
        goto bad;
    }

    rs = q->results.elts;
    rs = &rs[set];

    for (k = 0; names[k].len; k++) {

        for (i = 0; i < rs->ncols; i++) {
            if (rs->names[i].len == names[k].len
                && ngx_strncasecmp(rs->names[i].data, names[k].data,
                                   names[k].len)
                   == 0)
            {
                break;
            }
        }

        if (i == rs->ncols) {
            ngx_log_error(NGX_LOG_ALERT, q->log, 0,
                          "rbcs: a query answered no column \"%V\" in its "
                          "result set %ui (a schema other than "
                          "conf/schema.sql?): %V", &names[k], set, &q->sql);
            return NGX_ERROR;
        }

        index[k] = i;
    }

    return NGX_OK;

bad:

    ngx_log_error(NGX_LOG_ALERT, q->log, 0,
                  "rbcs: a query answered no result set %ui (a schema "
                  "other than conf/schema.sql?): %V", set, &q->sql);

    return NGX_ERROR;
}


ngx_uint_t
ngx_rbcs_mysql_rows(ngx_rbcs_mysql_query_t *q, ngx_uint_t set)
{
    ngx_rbcs_mysql_result_t  *rs;

    rs = q->results.elts;

    return (set < q->results.nelts) ? rs[set].nrows : 0;
}


/*
 * Whether the server the query's held connection talks to runs compound
 * statements (BEGIN NOT ATOMIC ... END): MariaDB does, MySQL does not.
 */

ngx_uint_t
ngx_rbcs_mysql_compound(ngx_rbcs_mysql_query_t *q)
{
    if (q->held == NULL || q->held->mysql == NULL) {
        return 0;
    }

    return mariadb_connection(q->held->mysql) ? 1 : 0;
}
