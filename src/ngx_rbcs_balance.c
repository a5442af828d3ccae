
/*
 * RBCS: the balance read path and the spreading of committed balances.
 *
 * A read is answered from the shared-memory zone when the entry there is
 * trusted, with no I/O.  Otherwise Redis is asked, and its value is taken
 * only if it is at least as new as what the zone holds; otherwise, and
 * for ?consistency=strong, MariaDB answers.  Every value learnt on the way
 * fills the zone (a higher version only ever replaces a lower one), and a
 * value read from MariaDB also refreshes Redis.  The X-RBCS-Cache header
 * says which tier answered.
 */


#include "ngx_rbcs_balance.h"
#include "ngx_rbcs_account.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_metrics.h"


typedef struct {
    ngx_http_request_t        *request;
    ngx_str_t                  account;
    ngx_rbcs_redis_get_t      *redis;
    uint64_t                   floor;     /* version the zone already has */
} ngx_rbcs_balance_ctx_t;


static ngx_uint_t ngx_rbcs_is_strong(ngx_http_request_t *r);
static ngx_int_t ngx_rbcs_balance_send(ngx_http_request_t *r,
    ngx_str_t *account, ngx_rbcs_cache_entry_t *e, const char *tier);
static void ngx_rbcs_balance_redis_done(void *data, ngx_int_t rc,
    ngx_rbcs_redis_balance_t *b);
static void ngx_rbcs_balance_cleanup(void *data);
static void ngx_rbcs_balance_store(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e);
static void ngx_rbcs_balance_redis(ngx_rbcs_redis_balance_t *b,
    ngx_str_t *account, ngx_rbcs_cache_entry_t *e, u_char *buf);
static ngx_int_t ngx_rbcs_balance_entry(ngx_rbcs_cache_entry_t *e,
    ngx_str_t *version, ngx_str_t *decimal, ngx_uint_t scale,
    ngx_str_t *currency, ngx_uint_t exact);


ngx_int_t
ngx_rbcs_balance_get(ngx_http_request_t *r, ngx_str_t *number)
{
    ngx_str_t                value;
    ngx_uint_t               strong, found;
    ngx_http_cleanup_t      *cln;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;
    ngx_rbcs_balance_ctx_t  *ctx;

    if (!ngx_rbcs_valid_account(number->data, number->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     "account_not_found",
                                     "the account does not exist");
    }

    if (ngx_http_arg(r, (u_char *) "consistency", sizeof("consistency") - 1,
                     &value)
        == NGX_OK
        && !(value.len == 6 && ngx_strncmp(value.data, "strong", 6) == 0)
        && !(value.len == 8 && ngx_strncmp(value.data, "eventual", 8) == 0))
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "consistency must be strong or "
                                     "eventual");
    }

    strong = ngx_rbcs_is_strong(r);

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (strong || rmcf->cache == NULL) {
        return ngx_rbcs_account_get(r, number, 1);
    }

    found = ngx_rbcs_cache_get(rmcf->cache, number, &e);

    if (found == NGX_RBCS_CACHE_HIT) {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_ZONE_HIT);
        return ngx_rbcs_balance_send(r, number, &e, "zone");
    }

    ngx_rbcs_metrics_inc(NGX_RBCS_M_ZONE_MISS);

    if (found == NGX_RBCS_CACHE_STALE && !ngx_rbcs_mysql_connected()) {
        /* the database is away: no need to wait to learn it again */
        return ngx_rbcs_balance_send(r, number, &e, "zone-stale");
    }

    if (rmcf->redis == NULL || ngx_rbcs_cache_emptied_recently(rmcf->cache))
    {
        return ngx_rbcs_account_get(r, number, 1);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_balance_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->account = *number;
    ctx->floor = (found == NGX_RBCS_CACHE_STALE) ? e.version : 0;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_rbcs_balance_cleanup;
    cln->data = ctx;

    ctx->redis = ngx_rbcs_redis_get(number, rmcf->redis_read_timeout,
                                    ngx_rbcs_balance_redis_done, ctx,
                                    r->connection->log);

    if (ctx->redis == NULL) {
        /* Redis is away: straight to the database */
        return ngx_rbcs_account_get(r, number, 1);
    }

    return NGX_DONE;
}


static void
ngx_rbcs_balance_redis_done(void *data, ngx_int_t rc,
    ngx_rbcs_redis_balance_t *b)
{
    ngx_rbcs_balance_ctx_t *ctx = data;

    ngx_int_t                rrc;
    ngx_str_t                version;
    u_char                   buf[NGX_INT64_LEN];
    ngx_http_request_t      *r;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    r = ctx->request;
    ctx->redis = NULL;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (rc == NGX_OK && b->version >= ctx->floor) {
        version.data = buf;
        version.len = ngx_sprintf(buf, "%uL", b->version) - buf;

        if (ngx_rbcs_balance_entry(&e, &version, &b->balance, b->scale,
                                   &b->currency, 1)
            == NGX_OK)
        {
            ngx_rbcs_cache_put(rmcf->cache, &ctx->account, &e, 1);
            ngx_rbcs_metrics_inc(NGX_RBCS_M_REDIS_HIT);
            ngx_rbcs_http_done(r,
                ngx_rbcs_balance_send(r, &ctx->account, &e, "redis"));
            return;
        }
    }

    ngx_rbcs_metrics_inc(NGX_RBCS_M_REDIS_MISS);

    rrc = ngx_rbcs_account_get(r, &ctx->account, 1);

    if (rrc != NGX_DONE) {
        ngx_rbcs_http_done(r, rrc);
    }
}


static ngx_uint_t
ngx_rbcs_is_strong(ngx_http_request_t *r)
{
    ngx_str_t  value;

    return ngx_http_arg(r, (u_char *) "consistency",
                        sizeof("consistency") - 1, &value)
           == NGX_OK
           && value.len == 6 && ngx_strncmp(value.data, "strong", 6) == 0;
}


static void
ngx_rbcs_balance_cleanup(void *data)
{
    ngx_rbcs_balance_ctx_t *ctx = data;

    if (ctx->redis) {
        ngx_rbcs_redis_get_cancel(ctx->redis);
        ctx->redis = NULL;
    }
}


static ngx_int_t
ngx_rbcs_balance_send(ngx_http_request_t *r, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, const char *tier)
{
    u_char           *p, *last;
    size_t            len;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-RBCS-Cache");
    h->value.data = (u_char *) tier;
    h->value.len = ngx_strlen(tier);

    len = sizeof("{\"accountNumber\":\"\",\"currency\":\"\",\"balance\":\"\","
                 "\"version\":}") - 1
          + account->len + e->currency_len + NGX_RBCS_AMOUNT_MAX_LEN
          + NGX_INT64_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* account numbers and currency codes need no JSON escaping */

    last = ngx_sprintf(p, "{\"accountNumber\":\"%V\",\"currency\":\"%*s\","
                          "\"balance\":\"", account, e->currency_len,
                       e->currency);
    last += ngx_rbcs_amount_format(last, e->units, (unsigned) e->scale, 0);
    last = ngx_sprintf(last, "\",\"version\":%uL}", e->version);

    return ngx_rbcs_http_send(r, NGX_HTTP_OK,
                              &(ngx_str_t) ngx_string("application/json"),
                              p, last - p);
}


/*
 * MariaDB could not answer (down, frozen, no connection): the newest
 * balance the zone holds is served rather than an error, never older than
 * what this pod acknowledged, marked "zone-stale" as it may miss another
 * pod's last change.  NGX_DECLINED: the zone has nothing for the account.
 */

ngx_int_t
ngx_rbcs_balance_stale(ngx_http_request_t *r, ngx_str_t *number)
{
    ngx_uint_t               found;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (rmcf->cache == NULL || ngx_rbcs_is_strong(r)) {
        return NGX_DECLINED;
    }

    found = ngx_rbcs_cache_get(rmcf->cache, number, &e);

    if (found == NGX_RBCS_CACHE_MISS) {
        return NGX_DECLINED;
    }

    return ngx_rbcs_balance_send(r, number, &e,
                                 found == NGX_RBCS_CACHE_HIT ? "zone"
                                                             : "zone-stale");
}


/* the balance view of an account row read from MariaDB */

ngx_int_t
ngx_rbcs_balance_send_row(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q,
    ngx_uint_t set, ngx_uint_t row, ngx_uint_t col)
{
    ngx_str_t               *account, *currency, *scale, *balance, *version;
    ngx_uint_t               n;
    ngx_rbcs_cache_entry_t   e;

    account = ngx_rbcs_mysql_cell(q, set, row, col);
    currency = ngx_rbcs_mysql_cell(q, set, row, col + 1);
    scale = ngx_rbcs_mysql_cell(q, set, row, col + 2);
    balance = ngx_rbcs_mysql_cell(q, set, row, col + 3);
    version = ngx_rbcs_mysql_cell(q, set, row, col + 4);

    if (ngx_rbcs_atoui(scale, &n) != NGX_OK
        || ngx_rbcs_balance_entry(&e, version, balance, n, currency, 0)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_balance_store(r->connection->log, account, &e);
    ngx_rbcs_metrics_inc(NGX_RBCS_M_DB_READ);

    return ngx_rbcs_balance_send(r, account, &e, "database");
}


/*
 * A balance known current (just committed, or just read from MariaDB):
 * into the zone before the caller replies, so that this pod never reads
 * older than what it acknowledged, and on to Redis and the other pods
 * without waiting.  With current 0, a balance of the past.
 */

void
ngx_rbcs_balance_update(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version, ngx_str_t *balance, ngx_uint_t scale,
    ngx_str_t *currency, ngx_uint_t current)
{
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    if (ngx_rbcs_balance_entry(&e, version, balance, scale, currency, 0)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "rbcs: unreadable balance \"%V\" version \"%V\" "
                      "of account \"%V\"", balance, version, account);
        return;
    }

    if (current) {
        ngx_rbcs_balance_store(log, account, &e);
        return;
    }

    /*
     * A balance of the past (a replayed transfer's): only a floor for
     * this pod's later reads, which must not go below what it answered.
     */

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    if (rmcf->cache) {
        ngx_rbcs_cache_put(rmcf->cache, account, &e, 0);
    }
}


static void
ngx_rbcs_balance_store(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e)
{
    u_char                    buf[NGX_RBCS_AMOUNT_MAX_LEN];
    ngx_rbcs_main_conf_t     *rmcf;
    ngx_rbcs_redis_balance_t  b;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    if (rmcf->cache) {
        ngx_rbcs_cache_put(rmcf->cache, account, e, 1);
    }

    if (rmcf->redis) {
        ngx_rbcs_balance_redis(&b, account, e, buf);

        if (ngx_rbcs_redis_put(&b, 1) != NGX_OK) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                           "rbcs: balance of \"%V\" not sent to redis",
                           account);
        }
    }
}


/*
 * A write batch's committed balances, each account's final state once:
 * into the zone, then to Redis and the other pods in one command.
 */

void
ngx_rbcs_balance_commit(ngx_log_t *log, ngx_rbcs_balance_change_t *c,
    ngx_uint_t n, ngx_pool_t *pool)
{
    u_char                    *buf;
    ngx_uint_t                 i, m;
    ngx_rbcs_main_conf_t      *rmcf;
    ngx_rbcs_cache_entry_t     e;
    ngx_rbcs_redis_balance_t  *b;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    b = ngx_palloc(pool, n * (sizeof(ngx_rbcs_redis_balance_t)
                              + NGX_RBCS_AMOUNT_MAX_LEN));
    if (b == NULL) {
        return;
    }

    buf = (u_char *) (b + n);
    m = 0;

    for (i = 0; i < n; i++) {
        if (ngx_rbcs_balance_entry(&e, &c[i].version, &c[i].balance,
                                   c[i].scale, &c[i].currency, 0)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "rbcs: unreadable balance \"%V\" version \"%V\" "
                          "of account \"%V\"", &c[i].balance, &c[i].version,
                          &c[i].account);
            continue;
        }

        if (rmcf->cache) {
            ngx_rbcs_cache_put(rmcf->cache, &c[i].account, &e, 1);
        }

        ngx_rbcs_balance_redis(&b[m++], &c[i].account, &e,
                               buf + i * NGX_RBCS_AMOUNT_MAX_LEN);
    }

    if (rmcf->redis && m && ngx_rbcs_redis_put(b, m) != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "rbcs: %ui balances not sent to redis", m);
    }
}


/* the Redis form of a zone entry; buf holds its balance text */

static void
ngx_rbcs_balance_redis(ngx_rbcs_redis_balance_t *b, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, u_char *buf)
{
    b->account = *account;
    b->version = e->version;
    b->balance.data = buf;
    b->balance.len = ngx_rbcs_amount_format(buf, e->units,
                                            (unsigned) e->scale, 0);
    b->currency.data = e->currency;
    b->currency.len = e->currency_len;
    b->scale = e->scale;
}


/*
 * A cache entry from texts: the version, and the balance either as a
 * DECIMAL from MariaDB or (exact) as the scale-formatted text from Redis.
 */

static ngx_int_t
ngx_rbcs_balance_entry(ngx_rbcs_cache_entry_t *e, ngx_str_t *version,
    ngx_str_t *decimal, ngx_uint_t scale, ngx_str_t *currency,
    ngx_uint_t exact)
{
    int    negative;
    off_t  v;

    if (version == NULL || version->data == NULL || decimal == NULL
        || decimal->data == NULL || currency == NULL
        || currency->data == NULL
        || currency->len > NGX_RBCS_CURRENCY_MAX_LEN || scale > 18)
    {
        return NGX_ERROR;
    }

    v = ngx_atoof(version->data, version->len);
    if (v == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (exact) {
        if (ngx_rbcs_amount_parse(decimal->data, decimal->len,
                                  (unsigned) scale, 1, &e->units)
            != NGX_RBCS_AMOUNT_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_rbcs_amount_from_decimal(decimal->data, decimal->len,
                                            (unsigned) scale, &e->units,
                                            &negative)
               != NGX_RBCS_AMOUNT_OK
               || negative)
    {
        return NGX_ERROR;
    }

    e->version = (uint64_t) v;
    e->scale = scale;
    e->currency_len = currency->len;
    ngx_memcpy(e->currency, currency->data, currency->len);

    return NGX_OK;
}
