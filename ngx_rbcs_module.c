
/*
 * RBCS: Real-Time Balance Calculation System, as an nginx HTTP module.
 *
 * This file is the module definition: directives, configuration, and the
 * process hooks.  The routes live in src/.
 */


#include "ngx_rbcs.h"
#include "ngx_rbcs_mysql.h"
#include "ngx_rbcs_batch.h"
#include "ngx_rbcs_transfer.h"
#include "ngx_rbcs_router.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_generation.h"
#include "ngx_rbcs_publish.h"
#include "ngx_rbcs_auth.h"
#include "ngx_rbcs_metrics.h"
#include "ngx_rbcs_http.h"


static void *ngx_rbcs_create_main_conf(ngx_conf_t *cf);
static char *ngx_rbcs_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_rbcs_init_currencies(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf);
static ngx_int_t ngx_rbcs_init_mysql_conf(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf);
static ngx_int_t ngx_rbcs_init_redis_conf(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf);
static ngx_int_t ngx_rbcs_init_auth_conf(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf);
static char *ngx_rbcs_location(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_rbcs_mysql_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_rbcs_currency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_rbcs_redis_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_rbcs_resolve(ngx_conf_t *cf, ngx_str_t *url,
    in_port_t default_port, ngx_str_t *host, in_port_t *port);
static void ngx_rbcs_redis_message(ngx_rbcs_redis_balance_t *b);
static void ngx_rbcs_redis_subscription(ngx_uint_t event);
static ngx_int_t ngx_rbcs_currency_add(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf, ngx_str_t *code, ngx_uint_t scale);
static ngx_int_t ngx_rbcs_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_rbcs_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_rbcs_init_process(ngx_cycle_t *cycle);
static void ngx_rbcs_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_rbcs_pool_size_bounds = {
    ngx_conf_check_num_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_rbcs_retries_bounds = {
    ngx_conf_check_num_bounds, 0, 10
};

static ngx_conf_num_bounds_t  ngx_rbcs_writers_bounds = {
    ngx_conf_check_num_bounds, 1, 64
};

static ngx_conf_num_bounds_t  ngx_rbcs_batch_size_bounds = {
    ngx_conf_check_num_bounds, 1, NGX_RBCS_MYSQL_BATCH_MAX
};


static ngx_command_t  ngx_rbcs_commands[] = {

    { ngx_string("rbcs"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_rbcs_location,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      ngx_rbcs_router_handler },

    { ngx_string("rbcs_problem"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_rbcs_location,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      ngx_rbcs_problem_handler },

    { ngx_string("rbcs_currency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_rbcs_currency,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_default_currency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, default_currency),
      NULL },

    { ngx_string("rbcs_mysql_server"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_rbcs_mysql_server,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_mysql_user"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.user),
      NULL },

    { ngx_string("rbcs_mysql_password"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.password),
      NULL },

    { ngx_string("rbcs_mysql_database"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.database),
      NULL },

    { ngx_string("rbcs_mysql_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.pool_size),
      &ngx_rbcs_pool_size_bounds },

    { ngx_string("rbcs_mysql_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.queue_size),
      NULL },

    { ngx_string("rbcs_mysql_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.retries),
      &ngx_rbcs_retries_bounds },

    { ngx_string("rbcs_mysql_writers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.writers),
      &ngx_rbcs_writers_bounds },

    { ngx_string("rbcs_mysql_batch_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.batch_size),
      &ngx_rbcs_batch_size_bounds },

    { ngx_string("rbcs_mysql_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.connect_timeout),
      NULL },

    { ngx_string("rbcs_mysql_query_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.query_timeout),
      NULL },

    { ngx_string("rbcs_mysql_queue_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.queue_timeout),
      NULL },

    { ngx_string("rbcs_mysql_lock_wait_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.lock_wait_timeout),
      NULL },

    { ngx_string("rbcs_mysql_ssl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.ssl),
      NULL },

    { ngx_string("rbcs_mysql_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.ssl_verify),
      NULL },

    { ngx_string("rbcs_mysql_ssl_ca"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.ssl_ca),
      NULL },

    { ngx_string("rbcs_mysql_ssl_cert"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.ssl_cert),
      NULL },

    { ngx_string("rbcs_mysql_ssl_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, mysql.ssl_key),
      NULL },

    { ngx_string("rbcs_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_rbcs_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_redis_server"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_rbcs_redis_server,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.connect_timeout),
      NULL },

    { ngx_string("rbcs_redis_command_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.command_timeout),
      NULL },

    { ngx_string("rbcs_redis_read_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_read_timeout),
      NULL },

    { ngx_string("rbcs_balance_read_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, read_timeout),
      NULL },

    { ngx_string("rbcs_redis_key_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.key_ttl),
      NULL },

    { ngx_string("rbcs_redis_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.heartbeat),
      NULL },

    { ngx_string("rbcs_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.prefix),
      NULL },

    { ngx_string("rbcs_redis_user"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.user),
      NULL },

    { ngx_string("rbcs_redis_password_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_rbcs_conf_set_secret_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.password),
      NULL },

    { ngx_string("rbcs_redis_hmac_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_rbcs_conf_set_secret_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, redis_conf.hmac_key),
      NULL },

    { ngx_string("rbcs_auth"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, auth),
      NULL },

    { ngx_string("rbcs_auth_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_rbcs_auth_limit,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_auth_off_beyond_loopback"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, auth_off_beyond_loopback),
      NULL },

    { ngx_string("rbcs_auth_keys"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_rbcs_auth_keys,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rbcs_auth_window"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_rbcs_main_conf_t, auth_window),
      NULL },

      ngx_null_command
};


static ngx_http_variable_t  ngx_rbcs_vars[] = {

    /* evaluated anew each time: the key is known only once checked */
    { ngx_string("rbcs_key_id"), NULL, ngx_rbcs_http_ctx_variable,
      offsetof(ngx_rbcs_ctx_t, key_id), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("rbcs_transaction_id"), NULL,
      ngx_rbcs_http_ctx_variable, offsetof(ngx_rbcs_ctx_t, transaction_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* seconds spent waiting for MariaDB, for logs */
    { ngx_string("rbcs_db_time"), NULL, ngx_rbcs_http_db_time_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_module_t  ngx_rbcs_module_ctx = {
    ngx_rbcs_preconfiguration,             /* preconfiguration */
    ngx_rbcs_postconfiguration,            /* postconfiguration */

    ngx_rbcs_create_main_conf,             /* create main configuration */
    ngx_rbcs_init_main_conf,               /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_rbcs_module = {
    NGX_MODULE_V1,
    &ngx_rbcs_module_ctx,                  /* module context */
    ngx_rbcs_commands,                     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_rbcs_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_rbcs_exit_process,                 /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the currencies every configuration has; rbcs_currency adds or rescales */

static struct {
    char                      *code;
    ngx_uint_t                 scale;
} ngx_rbcs_default_currencies[] = {
    { "USD", 2 }, { "EUR", 2 }, { "CNY", 2 }, { "JPY", 0 }, { "BTC", 8 },
    { "ETH", 18 }, { NULL, 0 }
};


static void *
ngx_rbcs_create_main_conf(ngx_conf_t *cf)
{
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_rbcs_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    rmcf->currencies = ngx_array_create(cf->pool, 8,
                                        sizeof(ngx_rbcs_currency_t));
    if (rmcf->currencies == NULL) {
        return NULL;
    }

    rmcf->mysql.pool_size = NGX_CONF_UNSET_UINT;
    rmcf->mysql.queue_size = NGX_CONF_UNSET_UINT;
    rmcf->mysql.retries = NGX_CONF_UNSET_UINT;
    rmcf->mysql.batch_size = NGX_CONF_UNSET_UINT;
    rmcf->mysql.writers = NGX_CONF_UNSET_UINT;
    rmcf->mysql.connect_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->mysql.query_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->mysql.queue_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->mysql.lock_wait_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->mysql.ssl = NGX_CONF_UNSET;
    rmcf->mysql.ssl_verify = NGX_CONF_UNSET;

    rmcf->redis_conf.connect_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->redis_conf.command_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->redis_conf.key_ttl = NGX_CONF_UNSET_MSEC;
    rmcf->redis_conf.heartbeat = NGX_CONF_UNSET_MSEC;
    rmcf->redis_read_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->read_timeout = NGX_CONF_UNSET_MSEC;

    rmcf->auth = NGX_CONF_UNSET;
    rmcf->auth_off_beyond_loopback = NGX_CONF_UNSET;
    rmcf->auth_window = NGX_CONF_UNSET_MSEC;

    return rmcf;
}


static char *
ngx_rbcs_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    if (ngx_rbcs_init_currencies(cf, rmcf) != NGX_OK
        || ngx_rbcs_init_mysql_conf(cf, rmcf) != NGX_OK
        || ngx_rbcs_init_redis_conf(cf, rmcf) != NGX_OK
        || ngx_rbcs_init_auth_conf(cf, rmcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (rmcf->configured && ngx_rbcs_metrics_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (rmcf->configured
        && rmcf->mysql.host.data == NULL && rmcf->mysql.socket.data == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs\" needs \"rbcs_mysql_server\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the stock currencies not configured otherwise, and the default one */

static ngx_int_t
ngx_rbcs_init_currencies(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf)
{
    ngx_str_t   code;
    ngx_uint_t  i;

    for (i = 0; ngx_rbcs_default_currencies[i].code; i++) {
        code.data = (u_char *) ngx_rbcs_default_currencies[i].code;
        code.len = ngx_strlen(code.data);

        if (ngx_rbcs_currency_find(rmcf, code.data, code.len) == NULL
            && ngx_rbcs_currency_add(cf, rmcf, &code,
                                     ngx_rbcs_default_currencies[i].scale)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (rmcf->default_currency.data == NULL) {
        ngx_str_set(&rmcf->default_currency, "USD");
    }

    if (ngx_rbcs_currency_find(rmcf, rmcf->default_currency.data,
                               rmcf->default_currency.len)
        == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rbcs_default_currency \"%V\" is not a "
                           "configured currency", &rmcf->default_currency);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the MariaDB pool's defaults */

static ngx_int_t
ngx_rbcs_init_mysql_conf(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf)
{
    ngx_conf_init_uint_value(rmcf->mysql.pool_size, 8);
    ngx_conf_init_uint_value(rmcf->mysql.queue_size, 1024);
    ngx_conf_init_uint_value(rmcf->mysql.retries, 3);
    ngx_conf_init_uint_value(rmcf->mysql.batch_size, 64);

    /*
     * Two writers per worker by default: one batch waits for its COMMIT
     * while the next is read and judged, and the second starts only for a
     * quarter of a full batch (src/ngx_rbcs_batch.c), since on a database
     * short of CPU fewer and larger batches cost it less per operation.
     * Never more than the pool's connections, so that reads keep some.
     */

    ngx_conf_init_uint_value(rmcf->mysql.writers, 2);

    if (rmcf->mysql.writers > rmcf->mysql.pool_size) {
        rmcf->mysql.writers = rmcf->mysql.pool_size;
    }

    ngx_conf_init_msec_value(rmcf->mysql.connect_timeout, 2000);
    ngx_conf_init_msec_value(rmcf->mysql.query_timeout, 5000);
    ngx_conf_init_msec_value(rmcf->mysql.queue_timeout, 3000);
    ngx_conf_init_msec_value(rmcf->mysql.lock_wait_timeout, 2000);

    if (rmcf->mysql.user.data == NULL) {
        ngx_str_set(&rmcf->mysql.user, "rbcs");
    }

    if (rmcf->mysql.password.data == NULL) {
        ngx_str_set(&rmcf->mysql.password, "");
    }

    if (rmcf->mysql.database.data == NULL) {
        ngx_str_set(&rmcf->mysql.database, "rbcs");
    }

    return ngx_rbcs_mysql_init_conf(cf, &rmcf->mysql);
}


/* the Redis tier's defaults, and what it needs to be trusted */

static ngx_int_t
ngx_rbcs_init_redis_conf(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf)
{
    ngx_conf_init_msec_value(rmcf->redis_conf.connect_timeout, 1000);
    ngx_conf_init_msec_value(rmcf->redis_conf.command_timeout, 200);
    ngx_conf_init_msec_value(rmcf->redis_conf.key_ttl, 3600000);
    ngx_conf_init_msec_value(rmcf->redis_conf.heartbeat, 500);
    ngx_conf_init_msec_value(rmcf->redis_read_timeout, 50);
    ngx_conf_init_msec_value(rmcf->read_timeout, 1000);

    if (rmcf->redis_conf.prefix.data == NULL) {
        ngx_str_set(&rmcf->redis_conf.prefix, "rbcs:");
    }

    if (rmcf->redis_conf.user.len && rmcf->redis_conf.password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_redis_user\" needs "
                           "\"rbcs_redis_password_file\"");
        return NGX_ERROR;
    }

    /* whoever can write to Redis must not be able to make a balance */

    if (rmcf->redis && rmcf->redis_conf.hmac_key.len < 32) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           rmcf->redis_conf.hmac_key.len
                           ? "the key of \"rbcs_redis_hmac_key_file\" is "
                             "shorter than 32 bytes"
                           : "\"rbcs_redis_server\" needs "
                             "\"rbcs_redis_hmac_key_file\"");
        return NGX_ERROR;
    }

    if (rmcf->cache) {
        /* a subscription is alive while its heartbeats keep coming */
        rmcf->cache->alive = 2 * rmcf->redis_conf.heartbeat
                             + rmcf->redis_conf.command_timeout;
    }

    return NGX_OK;
}


/* request signing: what "rbcs_auth" needs */

static ngx_int_t
ngx_rbcs_init_auth_conf(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf)
{
    ngx_conf_init_value(rmcf->auth, 0);
    ngx_conf_init_value(rmcf->auth_off_beyond_loopback, 0);
    ngx_conf_init_msec_value(rmcf->auth_window, 300000);

    if (rmcf->auth && rmcf->auth_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_auth on\" needs \"rbcs_auth_keys\"");
        return NGX_ERROR;
    }

    if (rmcf->auth_limit && !rmcf->auth) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_auth_limit\" needs \"rbcs_auth on\"");
        return NGX_ERROR;
    }

    return ngx_rbcs_auth_limit_check_keys(cf, rmcf);
}


/* rbcs; or rbcs_problem;: the location's handler is the directive's post */

static char *
ngx_rbcs_location(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* a location serves one thing: a second content handler is refused */

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    if (clcf->handler == ngx_rbcs_router_handler) {
        rmcf->configured = 1;
    }

    return NGX_CONF_OK;
}


/*
 * rbcs_mysql_server address[:port] | unix:/path;
 *
 * A name is resolved here, at configuration time: resolving it in a worker
 * would block.
 */

static char *
ngx_rbcs_mysql_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    ngx_str_t  *value;

    if (rmcf->mysql.host.data || rmcf->mysql.socket.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        rmcf->mysql.socket.data = value[1].data + 5;
        rmcf->mysql.socket.len = value[1].len - 5;
        return NGX_CONF_OK;
    }

    return ngx_rbcs_resolve(cf, &value[1], 3306, &rmcf->mysql.host,
                            &rmcf->mysql.port);
}


/* rbcs_redis_server address[:port]; resolved here, like the database */

static char *
ngx_rbcs_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    ngx_str_t  *value;

    if (rmcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_rbcs_resolve(cf, &value[1], 6379, &rmcf->redis_conf.host,
                         &rmcf->redis_conf.port)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    rmcf->redis = &rmcf->redis_conf;

    return NGX_CONF_OK;
}


/* a name, resolved now (a worker must never block on it), as numeric text */

static char *
ngx_rbcs_resolve(ngx_conf_t *cf, ngx_str_t *url, in_port_t default_port,
    ngx_str_t *host, in_port_t *port)
{
    u_char     *p;
    ngx_url_t   u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *url;
    u.default_port = default_port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"", u.err,
                               &u.url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0 || u.addrs[0].sockaddr->sa_family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" has no address",
                           &u.url);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    host->len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                              NGX_SOCKADDR_STRLEN, 0);
    host->data = p;
    *port = u.port;

    if (u.naddrs > 1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"%V\" resolves to %ui addresses, using %V",
                           &u.url, u.naddrs, host);
    }

    return NGX_CONF_OK;
}


/* rbcs_currency CODE SCALE; */

static char *
ngx_rbcs_currency(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    ngx_int_t             scale;
    ngx_str_t            *value;
    ngx_uint_t            i;
    ngx_rbcs_currency_t  *cur;

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].len > NGX_RBCS_CURRENCY_MAX_LEN) {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!((value[1].data[i] >= 'A' && value[1].data[i] <= 'Z')
              || (i > 0 && value[1].data[i] >= '0'
                  && value[1].data[i] <= '9')))
        {
            goto invalid;
        }
    }

    scale = ngx_atoi(value[2].data, value[2].len);
    if (scale == NGX_ERROR || scale > 18) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rbcs_currency scale \"%V\" is not 0 to 18",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    cur = ngx_rbcs_currency_find(rmcf, value[1].data, value[1].len);
    if (cur) {
        cur->scale = scale;
        return NGX_CONF_OK;
    }

    return ngx_rbcs_currency_add(cf, rmcf, &value[1], scale) == NGX_OK
           ? NGX_CONF_OK : NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "rbcs_currency code \"%V\" is not 2 to 12 upper-case "
                       "letters and digits", &value[1]);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_rbcs_currency_add(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf,
    ngx_str_t *code, ngx_uint_t scale)
{
    ngx_rbcs_currency_t  *cur;

    cur = ngx_array_push(rmcf->currencies);
    if (cur == NULL) {
        return NGX_ERROR;
    }

    cur->code = *code;
    cur->scale = scale;

    return NGX_OK;
}


/* currency codes are compared byte for byte: "usd" is not "USD" */

ngx_rbcs_currency_t *
ngx_rbcs_currency_find(ngx_rbcs_main_conf_t *rmcf, u_char *code, size_t len)
{
    ngx_uint_t            i;
    ngx_rbcs_currency_t  *cur;

    cur = rmcf->currencies->elts;

    for (i = 0; i < rmcf->currencies->nelts; i++) {
        if (cur[i].code.len == len
            && ngx_memcmp(cur[i].code.data, code, len) == 0)
        {
            return &cur[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_rbcs_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_rbcs_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * With authentication off, the API answers whoever reaches it: nginx may
 * then listen on loopback addresses (and unix sockets) only, unless the
 * configuration says "rbcs_auth_off_beyond_loopback on" (a gateway in
 * front authenticates, say).  Every listener counts, the servers without
 * an explicit one included (nginx gave them *:80 by now).
 */

static ngx_int_t
ngx_rbcs_check_open_listeners(ngx_conf_t *cf, ngx_http_core_main_conf_t *cmcf)
{
    u_char                    text[NGX_SOCKADDR_STRLEN];
    size_t                    len;
    ngx_uint_t                p, a;
    struct sockaddr          *sa;
    ngx_rbcs_main_conf_t     *rmcf;
    ngx_http_conf_port_t     *port;
    ngx_http_conf_addr_t     *addr;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_rbcs_module);

    if (!rmcf->configured || rmcf->auth || rmcf->auth_off_beyond_loopback
        || cmcf->ports == NULL)
    {
        return NGX_OK;
    }

    port = cmcf->ports->elts;

    for (p = 0; p < cmcf->ports->nelts; p++) {
        addr = port[p].addrs.elts;

        for (a = 0; a < port[p].addrs.nelts; a++) {
            sa = addr[a].opt.sockaddr;

            if (sa->sa_family == AF_INET
                && (ntohl(((struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24)
                   == 127)
            {
                continue;
            }

#if (NGX_HAVE_INET6)
            if (sa->sa_family == AF_INET6
                && IN6_IS_ADDR_LOOPBACK(
                       &((struct sockaddr_in6 *) sa)->sin6_addr))
            {
                continue;
            }
#endif

#if (NGX_HAVE_UNIX_DOMAIN)
            if (sa->sa_family == AF_UNIX) {
                continue;
            }
#endif

            len = ngx_sock_ntop(sa, addr[a].opt.socklen, text,
                                NGX_SOCKADDR_STRLEN, 1);

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"rbcs_auth\" is off and nginx listens on "
                               "%*s, beyond loopback: turn \"rbcs_auth\" on, "
                               "listen on loopback only, or say "
                               "\"rbcs_auth_off_beyond_loopback on\"",
                               len, text);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* requests the module answered are counted when they are logged */

static ngx_int_t
ngx_rbcs_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (ngx_rbcs_check_open_listeners(cf, cmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_rbcs_metrics_log;

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_init_process(ngx_cycle_t *cycle)
{
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_rbcs_module);

    if (rmcf == NULL || !rmcf->configured) {
        return NGX_OK;
    }

    (void) ngx_rbcs_metrics_init_process(cycle);

    if (ngx_rbcs_mysql_init_process(cycle, &rmcf->mysql) != NGX_OK
        || ngx_rbcs_batch_init_process(cycle, &rmcf->mysql) != NGX_OK
        || ngx_rbcs_generation_init_process(cycle, ngx_worker == 0)
           != NGX_OK
        || ngx_rbcs_transfer_init_process(cycle, ngx_worker == 0) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rmcf->redis == NULL) {
        return NGX_OK;
    }

    /* one subscriber per pod is enough: the zone is shared */

    return ngx_rbcs_redis_init_process(cycle, rmcf->redis,
                                       rmcf->cache && ngx_worker == 0,
                                       ngx_rbcs_redis_message,
                                       ngx_rbcs_redis_subscription);
}


static void
ngx_rbcs_exit_process(ngx_cycle_t *cycle)
{
    ngx_rbcs_main_conf_t  *rmcf;

    ngx_rbcs_generation_exit_process(cycle);

    /* the subscriber ends: messages go to nobody until the next one */

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_rbcs_module);

    if (rmcf && rmcf->configured && rmcf->cache && rmcf->redis
        && ngx_worker == 0)
    {
        ngx_rbcs_cache_subscription(rmcf->cache, NGX_RBCS_REDIS_SUB_DOWN);
    }

    ngx_rbcs_redis_exit_process(cycle);
    ngx_rbcs_batch_exit_process(cycle);
    ngx_rbcs_mysql_exit_process(cycle);
}


/* another pod (or this one) committed a balance change */

static void
ngx_rbcs_redis_message(ngx_rbcs_redis_balance_t *b)
{
    ngx_msec_t               known;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    if (rmcf == NULL || rmcf->cache == NULL
        || ngx_rbcs_publish_state_entry(&e, b->version, &b->balance,
                                        b->scale, &b->currency)
           != NGX_OK)
    {
        return;
    }

    /*
     * Written by a pod that had not seen a move of the generation this pod
     * has seen: only a floor (it may predate a change never published)
     */

    known = (b->generation >= ngx_rbcs_cache_generation_sum(rmcf->cache))
            ? ngx_rbcs_cache_now() : 0;

    ngx_rbcs_cache_put(rmcf->cache, &b->account, &e, known);
}


static void
ngx_rbcs_redis_subscription(ngx_uint_t event)
{
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    if (rmcf == NULL || rmcf->cache == NULL) {
        return;
    }

    if (event == NGX_RBCS_REDIS_SUB_GAP) {
        /* a change may have been missed: refill what was known before */
        ngx_rbcs_cache_distrust(rmcf->cache, ngx_rbcs_cache_now());
        return;
    }

    ngx_rbcs_cache_subscription(rmcf->cache, event);
}
