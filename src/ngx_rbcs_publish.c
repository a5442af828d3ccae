
/*
 * RBCS: committed balances to the pod's zone and to Redis (and so to the
 * other pods), and the zone entry made from a balance's texts.
 */


#include "ngx_rbcs_publish.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_generation.h"


static void ngx_rbcs_publish_redis(ngx_rbcs_redis_balance_t *b,
    ngx_str_t *account, ngx_rbcs_cache_entry_t *e, u_char *buf);


/*
 * A balance known current at "known" (a time of ngx_rbcs_cache_now()
 * when its read started): into the zone before the caller replies, so
 * that this pod never reads older than what it acknowledged, and on to
 * Redis without waiting.  With known 0, a balance of the past.
 */

void
ngx_rbcs_publish_update(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version, ngx_str_t *balance, ngx_uint_t scale,
    ngx_str_t *currency, ngx_msec_t known)
{
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    if (ngx_rbcs_publish_entry(&e, version, balance, scale, currency, 0)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "rbcs: unreadable balance \"%V\" version \"%V\" "
                      "of account \"%V\"", balance, version, account);
        return;
    }

    if (known) {
        ngx_rbcs_publish_current(log, account, &e, known);
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


void
ngx_rbcs_publish_current(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known)
{
    u_char                    buf[NGX_RBCS_AMOUNT_MAX_LEN];
    ngx_rbcs_main_conf_t     *rmcf;
    ngx_rbcs_redis_balance_t  b;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    /*
     * A value the zone keeps only as a floor (read before a sign of a
     * missed change) is not stored in Redis under the generation known now
     */

    if (rmcf->cache && !ngx_rbcs_cache_put(rmcf->cache, account, e, known)) {
        return;
    }

    if (rmcf->redis) {
        ngx_rbcs_publish_redis(&b, account, e, buf);

        if (ngx_rbcs_redis_put(&b, 1, ngx_rbcs_generation_stamp(), 0)
            != NGX_OK)
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                           "rbcs: balance of \"%V\" not sent to redis",
                           account);
        }
    }
}


/*
 * A write batch's committed balances, each account's final state once:
 * into the zone, then to Redis and the other pods in one command.
 * NGX_DECLINED: they were not sent to Redis.
 */

ngx_int_t
ngx_rbcs_publish_commit(ngx_log_t *log, ngx_rbcs_publish_change_t *c,
    ngx_uint_t n, ngx_pool_t *pool)
{
    u_char                    *buf;
    ngx_uint_t                 i, m;
    ngx_msec_t                 now;
    ngx_rbcs_main_conf_t      *rmcf;
    ngx_rbcs_cache_entry_t     e;
    ngx_rbcs_redis_balance_t  *b;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    b = ngx_palloc(pool, n * (sizeof(ngx_rbcs_redis_balance_t)
                              + NGX_RBCS_AMOUNT_MAX_LEN));
    if (b == NULL) {
        return NGX_DECLINED;
    }

    buf = (u_char *) (b + n);
    m = 0;
    now = ngx_rbcs_cache_now();

    for (i = 0; i < n; i++) {
        if (ngx_rbcs_publish_entry(&e, &c[i].version, &c[i].balance,
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
            ngx_rbcs_cache_put(rmcf->cache, &c[i].account, &e, now);
        }

        ngx_rbcs_publish_redis(&b[m++], &c[i].account, &e,
                               buf + i * NGX_RBCS_AMOUNT_MAX_LEN);
    }

    if (rmcf->redis && m
        && ngx_rbcs_redis_put(b, m, ngx_rbcs_generation_stamp(), 1)
           != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "rbcs: %ui balances not sent to redis", m);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the Redis form of a zone entry; buf holds its balance text */

static void
ngx_rbcs_publish_redis(ngx_rbcs_redis_balance_t *b, ngx_str_t *account,
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

ngx_int_t
ngx_rbcs_publish_entry(ngx_rbcs_cache_entry_t *e, ngx_str_t *version,
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
