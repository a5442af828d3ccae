
/*
 * RBCS: committed account states to the pod's zone and to Redis (and so
 * to the other pods); the zone entry made from an account row or from
 * Redis's text, and the JSON members a balance read serves from it.
 */


#include "ngx_rbcs_publish.h"
#include "ngx_rbcs_batch.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_generation.h"


static void ngx_rbcs_publish_redis(ngx_rbcs_redis_balance_t *b,
    ngx_str_t *account, ngx_rbcs_cache_entry_t *e, u_char *buf);
static u_char *ngx_rbcs_publish_amount(u_char *p, const char *name,
    ngx_rbcs_int128_t v, ngx_uint_t scale);
static ngx_int_t ngx_rbcs_publish_decimal(ngx_str_t *text, ngx_uint_t scale,
    ngx_rbcs_int128_t *v);
static u_char *ngx_rbcs_publish_field(u_char *p, u_char *last,
    ngx_str_t *field);


/*
 * A state known current at "known" (a time of ngx_rbcs_cache_now() when
 * its read started): into the zone before the caller replies, so that
 * this pod never reads older than what it acknowledged, and on to Redis
 * without waiting.
 */

void
ngx_rbcs_publish_current(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known)
{
    u_char                    buf[NGX_RBCS_PUBLISH_STATE_LEN];
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
 * An account was at this version at least (a replayed transfer's, of the
 * past): a floor for this pod's later reads, which must not go below what
 * it answered.  Nothing else of the account is known from it.
 */

void
ngx_rbcs_publish_floor(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version)
{
    off_t                    v;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    if (rmcf->cache == NULL || version == NULL || version->data == NULL) {
        return;
    }

    v = ngx_atoof(version->data, version->len);
    if (v == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "rbcs: unreadable version \"%V\" of account \"%V\"",
                      version, account);
        return;
    }

    ngx_memzero(&e, sizeof(ngx_rbcs_cache_entry_t));
    e.version = (uint64_t) v;
    e.floor = 1;

    ngx_rbcs_cache_put(rmcf->cache, account, &e, 0);
}


/*
 * A write batch's committed states, each account's final one once: into
 * the zone, then to Redis and the other pods in one command.
 * NGX_DECLINED: they were not sent to Redis.
 */

ngx_int_t
ngx_rbcs_publish_commit(ngx_log_t *log, ngx_rbcs_publish_change_t *c,
    ngx_uint_t n, ngx_pool_t *pool)
{
    u_char                    *buf;
    ngx_uint_t                 i;
    ngx_msec_t                 now;
    ngx_rbcs_main_conf_t      *rmcf;
    ngx_rbcs_redis_balance_t  *b;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    b = ngx_palloc(pool, n * (sizeof(ngx_rbcs_redis_balance_t)
                              + NGX_RBCS_PUBLISH_STATE_LEN));
    if (b == NULL) {
        return NGX_DECLINED;
    }

    buf = (u_char *) (b + n);
    now = ngx_rbcs_cache_now();

    for (i = 0; i < n; i++) {
        if (rmcf->cache) {
            ngx_rbcs_cache_put(rmcf->cache, &c[i].account, &c[i].entry, now);
        }

        ngx_rbcs_publish_redis(&b[i], &c[i].account, &c[i].entry,
                               buf + i * NGX_RBCS_PUBLISH_STATE_LEN);
    }

    if (rmcf->redis && n
        && ngx_rbcs_redis_put(b, n, ngx_rbcs_generation_stamp(), 1)
           != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "rbcs: %ui balances not sent to redis", n);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the Redis form of a zone entry; buf holds its state text */

static void
ngx_rbcs_publish_redis(ngx_rbcs_redis_balance_t *b, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, u_char *buf)
{
    b->account = *account;
    b->version = e->version;
    b->balance.data = buf;
    b->balance.len = ngx_rbcs_publish_state(buf, e);
    b->currency.data = e->currency;
    b->currency.len = e->currency_len;
    b->scale = e->scale;
}


size_t
ngx_rbcs_publish_state(u_char *buf, ngx_rbcs_cache_entry_t *e)
{
    u_char              *p;
    ngx_rbcs_uint128_t   units;

    p = buf;

    units = (ngx_rbcs_uint128_t) (e->balance < 0 ? -e->balance : e->balance);
    p += ngx_rbcs_amount_format(p, units, (unsigned) e->scale,
                                e->balance < 0);
    *p++ = ':';
    p += ngx_rbcs_amount_format(p, e->held, (unsigned) e->scale, 0);
    *p++ = ':';
    p += ngx_rbcs_amount_format(p, e->limit, (unsigned) e->scale, 0);
    *p++ = ':';
    *p++ = e->external ? 'E' : 'S';

    return p - buf;
}


/*
 * An entry from Redis: a version a ledger can reach, a currency this
 * service knows at its own scale, every amount exact at that scale.
 */

ngx_int_t
ngx_rbcs_publish_state_entry(ngx_rbcs_cache_entry_t *e, uint64_t version,
    ngx_str_t *state, ngx_uint_t scale, ngx_str_t *currency)
{
    u_char                *p, *last;
    ngx_str_t              f[4];
    ngx_uint_t             i, negative;
    ngx_rbcs_uint128_t     units;
    ngx_rbcs_currency_t   *cur;
    ngx_rbcs_main_conf_t  *rmcf;

    if (currency->len == 0 || currency->len > NGX_RBCS_CURRENCY_MAX_LEN
        || scale > NGX_RBCS_AMOUNT_MAX_SCALE
        || version == 0 || version > NGX_RBCS_VERSION_MAX)
    {
        return NGX_ERROR;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_rbcs_module);

    cur = rmcf ? ngx_rbcs_currency_find(rmcf, currency->data, currency->len)
               : NULL;

    if (cur == NULL || cur->scale != scale) {
        return NGX_ERROR;
    }

    p = state->data;
    last = p + state->len;

    for (i = 0; i < 4; i++) {
        p = ngx_rbcs_publish_field(p, last, &f[i]);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    if (p != last + 1 || f[3].len != 1
        || (f[3].data[0] != 'S' && f[3].data[0] != 'E'))
    {
        return NGX_ERROR;
    }

    negative = (f[0].len > 1 && f[0].data[0] == '-');

    if (ngx_rbcs_amount_parse(f[0].data + negative, f[0].len - negative,
                              (unsigned) scale, !negative, &units)
        != NGX_RBCS_AMOUNT_OK)
    {
        return NGX_ERROR;
    }

    e->balance = negative ? -(ngx_rbcs_int128_t) units
                          : (ngx_rbcs_int128_t) units;

    if (ngx_rbcs_amount_parse(f[1].data, f[1].len, (unsigned) scale, 1,
                              &e->held)
        != NGX_RBCS_AMOUNT_OK
        || ngx_rbcs_amount_parse(f[2].data, f[2].len, (unsigned) scale, 1,
                                 &e->limit)
           != NGX_RBCS_AMOUNT_OK)
    {
        return NGX_ERROR;
    }

    e->version = version;
    e->scale = scale;
    e->external = (f[3].data[0] == 'E');
    e->floor = 0;
    e->currency_len = currency->len;
    ngx_memcpy(e->currency, currency->data, currency->len);

    return NGX_OK;
}


/* the next ':'-separated field; returns the byte after its separator */

static u_char *
ngx_rbcs_publish_field(u_char *p, u_char *last, ngx_str_t *field)
{
    u_char  *q;

    if (p > last) {
        return NULL;
    }

    q = ngx_strlchr(p, last, ':');
    if (q == NULL) {
        q = last;
    }

    if (q == p) {
        return NULL;
    }

    field->data = p;
    field->len = q - p;

    return q + 1;
}


/* an entry from an account row of MariaDB (NGX_RBCS_ACC_COLUMNS) */

ngx_int_t
ngx_rbcs_publish_row_entry(ngx_rbcs_cache_entry_t *e, ngx_str_t *row)
{
    off_t               v;
    ngx_int_t           scale;
    ngx_str_t          *c, *k;
    ngx_rbcs_int128_t   held, limit;

    c = &row[NGX_RBCS_ACC_CURRENCY];
    k = &row[NGX_RBCS_ACC_KIND];

    if (row[NGX_RBCS_ACC_VERSION].data == NULL || c->data == NULL
        || c->len == 0 || c->len > NGX_RBCS_CURRENCY_MAX_LEN
        || k->data == NULL || row[NGX_RBCS_ACC_SCALE].data == NULL)
    {
        return NGX_ERROR;
    }

    scale = ngx_atoi(row[NGX_RBCS_ACC_SCALE].data,
                     row[NGX_RBCS_ACC_SCALE].len);
    v = ngx_atoof(row[NGX_RBCS_ACC_VERSION].data,
                  row[NGX_RBCS_ACC_VERSION].len);

    if (scale == NGX_ERROR || scale > NGX_RBCS_AMOUNT_MAX_SCALE
        || v == NGX_ERROR
        || ngx_rbcs_publish_decimal(&row[NGX_RBCS_ACC_BALANCE], scale,
                                    &e->balance)
           != NGX_OK
        || ngx_rbcs_publish_decimal(&row[NGX_RBCS_ACC_HELD], scale, &held)
           != NGX_OK
        || ngx_rbcs_publish_decimal(&row[NGX_RBCS_ACC_LIMIT], scale, &limit)
           != NGX_OK
        || held < 0 || limit < 0)
    {
        return NGX_ERROR;
    }

    e->version = (uint64_t) v;
    e->held = (ngx_rbcs_uint128_t) held;
    e->limit = (ngx_rbcs_uint128_t) limit;
    e->scale = scale;
    e->external = ngx_rbcs_str_is(k, "EXTERNAL");
    e->floor = 0;
    e->currency_len = c->len;
    ngx_memcpy(e->currency, c->data, c->len);

    return NGX_OK;
}


/* a DECIMAL text to minor units at the scale, signed */

static ngx_int_t
ngx_rbcs_publish_decimal(ngx_str_t *text, ngx_uint_t scale,
    ngx_rbcs_int128_t *v)
{
    int                  negative;
    ngx_rbcs_uint128_t   units;

    if (text->data == NULL
        || ngx_rbcs_amount_from_decimal(text->data, text->len,
                                        (unsigned) scale, &units, &negative)
           != NGX_RBCS_AMOUNT_OK)
    {
        return NGX_ERROR;
    }

    *v = negative ? -(ngx_rbcs_int128_t) units : (ngx_rbcs_int128_t) units;

    return NGX_OK;
}


/*
 * The state members of the account resource and the balance read:
 * "kind", "balance", "heldBalance", "availableBalance" and, for a
 * STANDARD account, "overdraftLimit"; each preceded by a comma.
 */

u_char *
ngx_rbcs_publish_json(u_char *p, ngx_rbcs_cache_entry_t *e)
{
    p = ngx_sprintf(p, ",\"kind\":\"%s\"",
                    e->external ? "EXTERNAL" : "STANDARD");
    p = ngx_rbcs_publish_amount(p, "balance", e->balance, e->scale);
    p = ngx_rbcs_publish_amount(p, "heldBalance",
                                (ngx_rbcs_int128_t) e->held, e->scale);
    p = ngx_rbcs_publish_amount(p, "availableBalance",
                                e->balance - (ngx_rbcs_int128_t) e->held,
                                e->scale);

    if (!e->external) {
        p = ngx_rbcs_publish_amount(p, "overdraftLimit",
                                    (ngx_rbcs_int128_t) e->limit, e->scale);
    }

    return p;
}


static u_char *
ngx_rbcs_publish_amount(u_char *p, const char *name, ngx_rbcs_int128_t v,
    ngx_uint_t scale)
{
    ngx_rbcs_uint128_t  units;

    p = ngx_sprintf(p, ",\"%s\":\"", name);
    units = (ngx_rbcs_uint128_t) (v < 0 ? -v : v);
    p += ngx_rbcs_amount_format(p, units, (unsigned) scale, v < 0);
    *p++ = '"';

    return p;
}
