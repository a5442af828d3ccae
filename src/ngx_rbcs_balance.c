
/*
 * RBCS: the balance read path.
 *
 * A read is answered from the shared-memory zone when the entry there is
 * trusted, with no I/O.  Otherwise Redis is asked, and its value is taken
 * only if it is at least as new as what the zone holds; otherwise, and
 * for ?consistency=strong, MariaDB answers.  Every value learnt on the way
 * fills the zone (a higher version only ever replaces a lower one), and a
 * value read from MariaDB also refreshes Redis.  The X-RBCS-Cache header
 * says which tier answered.  A read that is not a hit waits at most
 * rbcs_balance_read_timeout for the tiers: then it answers what the zone
 * holds ("zone-stale"; never for ?consistency=strong) or 503.
 */


#include "ngx_rbcs_balance.h"
#include "ngx_rbcs_account.h"
#include "ngx_rbcs_batch.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_metrics.h"
#include "ngx_rbcs_publish.h"


typedef struct {
    ngx_http_request_t        *request;
    ngx_str_t                  account;
    ngx_rbcs_redis_get_t      *redis;
    ngx_rbcs_mysql_query_t    *query;
    uint64_t                   floor;     /* version the zone already has */
    ngx_msec_t                 known;     /* when the tier's read began */
    ngx_event_t                deadline;
    unsigned                   strong:1;  /* ?consistency=strong */
} ngx_rbcs_balance_ctx_t;


static ngx_int_t ngx_rbcs_balance_send(ngx_http_request_t *r,
    ngx_str_t *account, ngx_rbcs_cache_entry_t *e, const char *tier);
static void ngx_rbcs_balance_redis_done(void *data, ngx_int_t rc,
    ngx_rbcs_redis_balance_t *b);
static void ngx_rbcs_balance_deadline(ngx_event_t *ev);
static ngx_int_t ngx_rbcs_balance_db(ngx_http_request_t *r,
    ngx_rbcs_balance_ctx_t *ctx);
static void ngx_rbcs_balance_db_done(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_balance_stale(ngx_http_request_t *r,
    ngx_rbcs_balance_ctx_t *ctx);
static ngx_int_t ngx_rbcs_balance_send_row(ngx_http_request_t *r,
    ngx_str_t *row, ngx_msec_t known);
static void ngx_rbcs_balance_finish(void *data);
static ngx_int_t ngx_rbcs_balance_wait(ngx_rbcs_balance_ctx_t *ctx,
    ngx_int_t rc);


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
                                     NGX_RBCS_NO_ACCOUNT);
    }

    strong = 0;

    if (ngx_http_arg(r, (u_char *) "consistency", sizeof("consistency") - 1,
                     &value)
        == NGX_OK)
    {
        strong = ngx_rbcs_str_is(&value, "strong");

        if (!strong && !ngx_rbcs_str_is(&value, "eventual")) {
            return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "consistency must be strong or "
                                         "eventual");
        }
    }

    /* the balance at a past instant: the database's history answers */

    if (ngx_http_arg(r, (u_char *) "at", 2, &value) == NGX_OK) {
        return ngx_rbcs_account_balance_at(r, number, &value);
    }

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    found = NGX_RBCS_CACHE_MISS;

    if (!strong && rmcf->cache) {
        found = ngx_rbcs_cache_get(rmcf->cache, number, &e);

        if (found == NGX_RBCS_CACHE_HIT) {
            ngx_rbcs_metrics_inc(NGX_RBCS_M_ZONE_HIT);
            return ngx_rbcs_balance_send(r, number, &e, "zone");
        }

        ngx_rbcs_metrics_inc(NGX_RBCS_M_ZONE_MISS);

        if (found == NGX_RBCS_CACHE_STALE && !e.floor
            && !ngx_rbcs_mysql_connected())
        {
            /* the database is away: no need to wait to learn it again */
            return ngx_rbcs_balance_send(r, number, &e, "zone-stale");
        }
    }

    /* a read that waits: for Redis, the database, or both */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_balance_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->account = *number;
    ctx->strong = strong;
    ctx->floor = (found == NGX_RBCS_CACHE_STALE) ? e.version : 0;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_rbcs_balance_finish;
    cln->data = ctx;

    ctx->deadline.handler = ngx_rbcs_balance_deadline;
    ctx->deadline.data = ctx;
    ctx->deadline.log = r->connection->log;

    ngx_add_timer(&ctx->deadline, rmcf->read_timeout);

    if (!strong && rmcf->cache && rmcf->redis
        && !ngx_rbcs_cache_emptied_recently(rmcf->cache))
    {
        ctx->known = ngx_rbcs_cache_now();
        ctx->redis = ngx_rbcs_redis_get(number, rmcf->redis_read_timeout,
                                        ngx_rbcs_balance_redis_done, ctx,
                                        r->connection->log);
        if (ctx->redis) {
            return NGX_DONE;
        }

        /* Redis is away: straight to the database */
    }

    return ngx_rbcs_balance_wait(ctx, ngx_rbcs_balance_db(r, ctx));
}


static void
ngx_rbcs_balance_redis_done(void *data, ngx_int_t rc,
    ngx_rbcs_redis_balance_t *b)
{
    ngx_rbcs_balance_ctx_t *ctx = data;

    ngx_int_t                rrc;
    ngx_http_request_t      *r;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    r = ctx->request;
    ctx->redis = NULL;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    /*
     * A value as new as the zone's, written since the generation this pod
     * knows (one from before may miss a change that was never published)
     */

    if (rc == NGX_OK && b->version >= ctx->floor
        && ngx_rbcs_cache_fresh(rmcf->cache, ctx->known, b->generation))
    {
        if (ngx_rbcs_publish_state_entry(&e, b->version, &b->balance,
                                         b->scale, &b->currency)
            == NGX_OK)
        {
            ngx_rbcs_cache_put(rmcf->cache, &ctx->account, &e, ctx->known);
            ngx_rbcs_metrics_inc(NGX_RBCS_M_REDIS_HIT);
            ngx_rbcs_balance_finish(ctx);
            ngx_rbcs_http_done(r,
                ngx_rbcs_balance_send(r, &ctx->account, &e, "redis"));
            return;
        }
    }

    ngx_rbcs_metrics_inc(NGX_RBCS_M_REDIS_MISS);

    rrc = ngx_rbcs_balance_wait(ctx, ngx_rbcs_balance_db(r, ctx));

    if (rrc != NGX_DONE) {
        ngx_rbcs_http_done(r, rrc);
    }
}


/*
 * The read deadline passed with a tier still silent: what the zone holds
 * (not for ?consistency=strong), else 503; the silent tier's read is
 * given up.
 */

static void
ngx_rbcs_balance_deadline(ngx_event_t *ev)
{
    ngx_int_t                rc;
    ngx_http_request_t      *r;
    ngx_rbcs_balance_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "rbcs: balance read of \"%V\" past its deadline, the %s "
                  "did not answer", &ctx->account,
                  ctx->redis ? "redis server" : "database");

    ngx_rbcs_metrics_inc(NGX_RBCS_M_READ_DEADLINE);

    ngx_rbcs_balance_finish(ctx);

    rc = ngx_rbcs_balance_stale(r, ctx);
    if (rc == NGX_DECLINED) {
        rc = ngx_rbcs_http_unavailable(r, 0);
    }

    ngx_rbcs_http_done(r, rc);
}


/* a tier's read that failed at once: the deadline is not needed */

static ngx_int_t
ngx_rbcs_balance_wait(ngx_rbcs_balance_ctx_t *ctx, ngx_int_t rc)
{
    if (rc != NGX_DONE) {
        ngx_rbcs_balance_finish(ctx);
    }

    return rc;
}


/* the read is answered (or its request gone): no tier is waited for */

static void
ngx_rbcs_balance_finish(void *data)
{
    ngx_rbcs_balance_ctx_t *ctx = data;

    if (ctx->deadline.timer_set) {
        ngx_del_timer(&ctx->deadline);
    }

    if (ctx->redis) {
        ngx_rbcs_redis_get_cancel(ctx->redis);
        ctx->redis = NULL;
    }

    if (ctx->query) {
        ngx_rbcs_mysql_cancel(ctx->query);
        ctx->query = NULL;
    }
}


static ngx_int_t
ngx_rbcs_balance_send(ngx_http_request_t *r, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, const char *tier)
{
    u_char  *p, *last;
    size_t   len;

    if (ngx_rbcs_http_header(r, "X-RBCS-Cache", (u_char *) tier,
                             ngx_strlen(tier))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"accountNumber\":\"\",\"currency\":\"\",\"version\":}")
          - 1 + account->len + e->currency_len + NGX_RBCS_PUBLISH_JSON_LEN
          + NGX_INT64_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* account numbers and currency codes need no JSON escaping */

    last = ngx_sprintf(p, "{\"accountNumber\":\"%V\",\"currency\":\"%*s\"",
                       account, e->currency_len, e->currency);
    last = ngx_rbcs_publish_json(last, e);
    last = ngx_sprintf(last, ",\"version\":%uL}", e->version);

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

static ngx_int_t
ngx_rbcs_balance_stale(ngx_http_request_t *r, ngx_rbcs_balance_ctx_t *ctx)
{
    ngx_uint_t               found;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_cache_entry_t   e;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (rmcf->cache == NULL || ctx->strong) {
        return NGX_DECLINED;
    }

    found = ngx_rbcs_cache_get(rmcf->cache, &ctx->account, &e);

    if (found == NGX_RBCS_CACHE_MISS || e.floor) {
        return NGX_DECLINED;
    }

    return ngx_rbcs_balance_send(r, &ctx->account, &e,
                                 found == NGX_RBCS_CACHE_HIT ? "zone"
                                                             : "zone-stale");
}


/* the balance from MariaDB (a miss, or ?consistency=strong) */

static ngx_int_t
ngx_rbcs_balance_db(ngx_http_request_t *r, ngx_rbcs_balance_ctx_t *bctx)
{
    bctx->known = ngx_rbcs_cache_now();

    return ngx_rbcs_http_read(r, ngx_rbcs_balance_db_done, bctx,
                              &bctx->query,
                              sizeof(NGX_RBCS_ACC_SELECT)
                              + bctx->account.len,
                              NGX_RBCS_ACC_SELECT, &bctx->account);
}


static void
ngx_rbcs_balance_db_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t                rc;
    ngx_str_t               *row;
    ngx_http_request_t      *r;
    ngx_rbcs_balance_ctx_t  *bctx;

    r = ngx_rbcs_http_query_request(q);
    bctx = ngx_rbcs_ctx(r)->data;

    bctx->query = NULL;
    ngx_rbcs_balance_finish(bctx);

    /* the database is away: a balance the zone holds is still served */

    rc = (q->rc != NGX_RBCS_MYSQL_OK) ? ngx_rbcs_balance_stale(r, bctx)
                                      : NGX_DECLINED;

    if (rc == NGX_DECLINED) {
        row = ngx_rbcs_http_row(r, q, NGX_RBCS_ACC_N, NGX_RBCS_NO_ACCOUNT,
                                &rc);
        if (row) {
            rc = ngx_rbcs_balance_send_row(r, row, bctx->known);
        }
    }

    ngx_rbcs_http_done(r, rc);
}


/* the balance view of an account row read from MariaDB */

static ngx_int_t
ngx_rbcs_balance_send_row(ngx_http_request_t *r, ngx_str_t *row,
    ngx_msec_t known)
{
    ngx_rbcs_cache_entry_t   e;

    if (ngx_rbcs_publish_row_entry(&e, row) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_publish_current(r->connection->log, &row[NGX_RBCS_ACC_NUMBER],
                             &e, known);
    ngx_rbcs_metrics_inc(NGX_RBCS_M_DB_READ);

    return ngx_rbcs_balance_send(r, &row[NGX_RBCS_ACC_NUMBER], &e,
                                 "database");
}
