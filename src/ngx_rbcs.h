
/*
 * RBCS: shared configuration types of the module.
 */


#ifndef _NGX_RBCS_H_INCLUDED_
#define _NGX_RBCS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_RBCS_ID_MAX_LEN        64
#define NGX_RBCS_CURRENCY_MAX_LEN  12

/* no account changes 2^53 times: a larger version is not the ledger's */
#define NGX_RBCS_VERSION_MAX       (1ULL << 53)


typedef struct {
    ngx_str_t                  code;
    ngx_uint_t                 scale;
} ngx_rbcs_currency_t;


typedef struct {
    ngx_str_t                  host;       /* numeric address, or empty */
    in_port_t                  port;
    ngx_str_t                  socket;     /* unix socket path, or empty */
    ngx_str_t                  user;
    ngx_str_t                  password;
    ngx_str_t                  database;
    ngx_uint_t                 pool_size;
    ngx_uint_t                 queue_size;
    ngx_uint_t                 retries;
    ngx_uint_t                 batch_size;
    ngx_uint_t                 writers;    /* write batches in flight */
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 query_timeout;
    ngx_msec_t                 queue_timeout;
    ngx_msec_t                 lock_wait_timeout;
    ngx_msec_t                 retry_after;  /* seconds, for Retry-After */
    ngx_flag_t                 ssl;        /* rbcs_mysql_ssl */
    ngx_flag_t                 ssl_verify; /* rbcs_mysql_ssl_verify */
    ngx_str_t                  ssl_ca;     /* full paths, or empty */
    ngx_str_t                  ssl_cert;
    ngx_str_t                  ssl_key;
} ngx_rbcs_mysql_conf_t;


typedef struct ngx_rbcs_cache_s       ngx_rbcs_cache_t;


typedef struct {
    ngx_str_t                  host;        /* numeric address */
    in_port_t                  port;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_msec_t                 key_ttl;
    ngx_msec_t                 heartbeat;
    ngx_str_t                  prefix;
    ngx_str_t                  user;        /* ACL user; empty: "default" */
    ngx_str_t                  password;    /* empty: no AUTH */
    ngx_str_t                  hmac_key;    /* tags values and messages */
} ngx_rbcs_redis_conf_t;


typedef struct {
    ngx_array_t               *currencies;  /* ngx_rbcs_currency_t */
    ngx_str_t                  default_currency;
    ngx_rbcs_mysql_conf_t      mysql;
    ngx_rbcs_cache_t          *cache;       /* NULL: no rbcs_cache_zone */
    ngx_rbcs_redis_conf_t      redis_conf;
    ngx_rbcs_redis_conf_t     *redis;       /* NULL: no rbcs_redis_server */
    ngx_msec_t                 redis_read_timeout;
    ngx_msec_t                 read_timeout;  /* rbcs_balance_read_timeout */
    ngx_flag_t                 auth;        /* rbcs_auth */
    ngx_flag_t                 auth_off_beyond_loopback;
    ngx_msec_t                 auth_window;
    ngx_array_t               *auth_keys;   /* ngx_rbcs_auth_key_t, by id */
    ngx_shm_zone_t            *auth_limit;  /* rbcs_auth_limit, or NULL */
    ngx_uint_t                 auth_rate;   /* requests per 1000 s */
    ngx_uint_t                 auth_burst;  /* requests * 1000 */
    ngx_flag_t                 configured;  /* a location uses rbcs */
} ngx_rbcs_main_conf_t;


/* what the module knows of a request, for its routes, logs and metrics */
typedef struct {
    ngx_uint_t                 route;
    ngx_str_t                  key_id;          /* authenticated key */
    ngx_str_t                  transaction_id;
    ngx_msec_t                 db_time;         /* waiting for MariaDB */
    uint64_t                   start_us;        /* monotonic, for metrics */
    ngx_str_t                  code;            /* problem code sent */
    void                      *data;            /* the route's own state */
} ngx_rbcs_ctx_t;


ngx_rbcs_currency_t *ngx_rbcs_currency_find(ngx_rbcs_main_conf_t *rmcf,
    u_char *code, size_t len);
ngx_rbcs_ctx_t *ngx_rbcs_ctx(ngx_http_request_t *r);


extern ngx_module_t  ngx_rbcs_module;


/*
 * How long a connection that failed for the failures-th time in a row
 * (MariaDB's or Redis's) waits before it tries again: 100 ms doubling up to
 * 5 s, jittered over its upper half, so that workers do not retry in step.
 */

static ngx_inline ngx_msec_t
ngx_rbcs_backoff(ngx_uint_t failures)
{
    ngx_msec_t  delay;

    delay = ngx_min((ngx_msec_t) 100 << ngx_min(failures, 6), 5000);

    return delay / 2 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);
}


/* whether s is the text of the C string text (a literal's length folds) */

static ngx_inline ngx_uint_t
ngx_rbcs_str_is(ngx_str_t *s, const char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    return s->len == len && ngx_strncmp(s->data, text, len) == 0;
}


#endif /* _NGX_RBCS_H_INCLUDED_ */
