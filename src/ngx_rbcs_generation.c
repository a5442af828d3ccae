
/*
 * RBCS: the cache generation (src/ngx_rbcs_generation.h).
 */


#include "ngx_rbcs_generation.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_mysql.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_metrics.h"


#define NGX_RBCS_GENERATION_RETRY  250     /* ms between tries of a move */
#define NGX_RBCS_PUBLISHER_LEN     100


typedef struct {
    ngx_log_t                 *log;
    ngx_rbcs_cache_t          *cache;

    /* "<host>/<worker>": this worker's row */
    u_char                     publisher[NGX_RBCS_PUBLISHER_LEN + 24];
    size_t                     publisher_len;

    /* publishes that failed, and how many of them a committed move covers */
    ngx_uint_t                 failed;
    ngx_uint_t                 settled;

    ngx_event_t                move;       /* the move's own query */
    ngx_event_t                poll;       /* the poller's read */
    ngx_uint_t                 poll_failing;

    unsigned                   publishing:1;  /* Redis configured */
    unsigned                   moving:1;      /* the move's query runs */
    unsigned                   polling:1;     /* the read runs */
    unsigned                   exiting:1;
} ngx_rbcs_generation_t;


static void ngx_rbcs_generation_move_handler(ngx_event_t *ev);
static void ngx_rbcs_generation_moved(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_generation_poll_handler(ngx_event_t *ev);
static void ngx_rbcs_generation_polled(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_generation_uint64(ngx_str_t *s, uint64_t *value);


static ngx_rbcs_generation_t  ngx_rbcs_generation;

static ngx_str_t  ngx_rbcs_generation_columns[] = {
    ngx_string("publishers"),
    ngx_string("generations"),
    ngx_null_string
};


ngx_int_t
ngx_rbcs_generation_init_process(ngx_cycle_t *cycle, ngx_uint_t poller)
{
    u_char                *p;
    ngx_rbcs_main_conf_t  *rmcf;
    ngx_rbcs_generation_t *g;

    g = &ngx_rbcs_generation;
    ngx_memzero(g, sizeof(ngx_rbcs_generation_t));

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_rbcs_module);

    g->log = cycle->log;
    g->cache = rmcf->cache;
    g->publishing = (rmcf->redis != NULL);

    p = ngx_rbcs_redis_host_key(cycle, g->publisher, NGX_RBCS_PUBLISHER_LEN);
    p = ngx_sprintf(p, "/%ui", ngx_worker);
    g->publisher_len = p - g->publisher;

    g->move.handler = ngx_rbcs_generation_move_handler;
    g->move.data = g;
    g->move.log = cycle->log;
    g->move.cancelable = 1;

    g->poll.handler = ngx_rbcs_generation_poll_handler;
    g->poll.data = g;
    g->poll.log = cycle->log;
    g->poll.cancelable = 1;

    if (g->publishing) {
        ngx_rbcs_redis_on_lost(ngx_rbcs_generation_unpublished);
    }

    /* the generation matters to a zone that hears other pods */

    if (poller && g->cache && g->publishing && g->cache->poll) {
        ngx_add_timer(&g->poll, 1);
    }

    return NGX_OK;
}


void
ngx_rbcs_generation_exit_process(ngx_cycle_t *cycle)
{
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;
    g->exiting = 1;

    if (g->move.timer_set) {
        ngx_del_timer(&g->move);
    }

    if (g->poll.timer_set) {
        ngx_del_timer(&g->poll);
    }
}


u_char *
ngx_rbcs_generation_sql(u_char *p, ngx_uint_t *mark)
{
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;
    *mark = 0;

    if (!g->publishing
        || (g->failed == g->settled && ngx_rbcs_redis_writable()))
    {
        return p;
    }

    *mark = g->failed + 1;

    return ngx_sprintf(p, "INSERT INTO cache_generation (publisher, "
                          "generation) VALUES ('%*s',1) ON DUPLICATE KEY "
                          "UPDATE generation = generation + 1;",
                       g->publisher_len, g->publisher);
}


void
ngx_rbcs_generation_committed(ngx_uint_t mark)
{
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;

    if (mark && mark - 1 > g->settled) {
        g->settled = mark - 1;
    }
}


void
ngx_rbcs_generation_unpublished(void)
{
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;

    if (!g->publishing || g->exiting || ngx_exiting || ngx_terminate
        || ngx_quit)
    {
        return;
    }

    if (g->failed++ == g->settled) {
        ngx_log_error(NGX_LOG_WARN, g->log, 0,
                      "rbcs: committed balances did not reach redis, "
                      "moving the cache generation on");
    }

    if (!g->moving && !g->move.timer_set) {
        ngx_add_timer(&g->move, 1);
    }
}


uint64_t
ngx_rbcs_generation_stamp(void)
{
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;

    return g->cache ? ngx_rbcs_cache_generation_sum(g->cache) : 0;
}


/* the move's own query, until one commits after the last failure */

static void
ngx_rbcs_generation_move_handler(ngx_event_t *ev)
{
    u_char                  *p;
    ngx_uint_t               mark;
    ngx_pool_t              *pool;
    ngx_rbcs_mysql_query_t  *q;
    ngx_rbcs_generation_t   *g;

    g = ev->data;

    if (g->exiting || g->moving || g->failed == g->settled) {
        return;
    }

    pool = ngx_create_pool(1024, g->log);
    if (pool == NULL) {
        goto retry;
    }

    q = ngx_rbcs_mysql_create(pool, g->log);
    p = ngx_pnalloc(pool, NGX_RBCS_GENERATION_SQL_LEN);

    if (q == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    q->sql.data = p;
    p = ngx_rbcs_generation_sql(p, &mark);
    q->sql.len = p - q->sql.data;

    if (mark == 0) {
        ngx_destroy_pool(pool);
        return;
    }

    /* a second move by a retry only costs the other pods a refill */

    q->idempotent = 1;
    q->handler = ngx_rbcs_generation_moved;
    q->data = (void *) mark;

    g->moving = 1;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        g->moving = 0;
        ngx_destroy_pool(pool);
        goto retry;
    }

    return;

retry:

    ngx_add_timer(&g->move, NGX_RBCS_GENERATION_RETRY);
}


static void
ngx_rbcs_generation_moved(ngx_rbcs_mysql_query_t *q)
{
    ngx_uint_t              mark, rc;
    ngx_rbcs_generation_t  *g;

    g = &ngx_rbcs_generation;
    g->moving = 0;
    mark = (ngx_uint_t) q->data;
    rc = q->rc;

    if (rc == NGX_RBCS_MYSQL_OK) {
        ngx_rbcs_generation_committed(mark);
        ngx_rbcs_metrics_inc(NGX_RBCS_M_GENERATION_MOVES);

    } else {
        ngx_log_error(NGX_LOG_WARN, g->log, 0,
                      "rbcs: the cache generation could not be moved on "
                      "(mysql error %ui), retrying", q->err);
    }

    ngx_destroy_pool(q->pool);

    if (!g->exiting && g->failed != g->settled && !g->move.timer_set) {
        ngx_add_timer(&g->move, rc == NGX_RBCS_MYSQL_OK
                                ? 1 : NGX_RBCS_GENERATION_RETRY);
    }
}


/* the poller: the table's COUNT and SUM, every poll */

static void
ngx_rbcs_generation_poll_handler(ngx_event_t *ev)
{
    ngx_pool_t              *pool;
    ngx_rbcs_mysql_query_t  *q;
    ngx_rbcs_generation_t   *g;

    g = ev->data;

    if (g->exiting) {
        return;
    }

    ngx_add_timer(&g->poll, g->cache->poll);

    if (g->polling) {
        return;
    }

    pool = ngx_create_pool(1024, g->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_rbcs_mysql_create(pool, g->log);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    /* the names ngx_rbcs_generation_columns reads */
    ngx_str_set(&q->sql, "SELECT COUNT(*) AS publishers,"
                         " COALESCE(SUM(generation), 0) AS generations"
                         " FROM cache_generation");
    q->idempotent = 1;
    q->handler = ngx_rbcs_generation_polled;
    q->data = g;

    g->polling = 1;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        g->polling = 0;
        ngx_destroy_pool(pool);
    }
}


static void
ngx_rbcs_generation_polled(ngx_rbcs_mysql_query_t *q)
{
    uint64_t                count, sum;
    ngx_str_t              *c, *s;
    ngx_uint_t              col[2];
    ngx_rbcs_generation_t  *g;

    g = q->data;
    g->polling = 0;

    c = NULL;
    s = NULL;

    if (q->rc == NGX_RBCS_MYSQL_OK
        && ngx_rbcs_mysql_columns(q, 0, ngx_rbcs_generation_columns, col)
           == NGX_OK)
    {
        c = ngx_rbcs_mysql_cell(q, 0, 0, col[0]);
        s = ngx_rbcs_mysql_cell(q, 0, 0, col[1]);
    }

    if (q->rc != NGX_RBCS_MYSQL_OK || c == NULL || s == NULL
        || ngx_rbcs_generation_uint64(c, &count) != NGX_OK
        || ngx_rbcs_generation_uint64(s, &sum) != NGX_OK)
    {
        if (!g->poll_failing) {
            ngx_log_error(NGX_LOG_WARN, g->log, 0,
                          "rbcs: the cache generation could not be read "
                          "(mysql error %ui): cached balances are trusted "
                          "for ttl only until it can", q->err);
            g->poll_failing = 1;
        }

        ngx_destroy_pool(q->pool);
        return;
    }

    if (g->poll_failing) {
        ngx_log_error(NGX_LOG_NOTICE, g->log, 0,
                      "rbcs: the cache generation is read again");
        g->poll_failing = 0;
    }

    ngx_rbcs_metrics_inc(NGX_RBCS_M_GENERATION_READS);

    /*
     * When the answer came, not when the read was handed to the pool: it
     * may wait in the pool's queue, or run again after a lost connection,
     * while values learnt meanwhile predate the move it then sees.
     */

    if (ngx_rbcs_cache_generation(g->cache, count, sum,
                                  ngx_rbcs_cache_now()))
    {
        ngx_log_error(NGX_LOG_INFO, g->log, 0,
                      "rbcs: the cache generation moved (%uL rows, sum "
                      "%uL): balances cached before are refilled", count,
                      sum);
        ngx_rbcs_metrics_inc(NGX_RBCS_M_GENERATION_SEEN);
    }

    ngx_destroy_pool(q->pool);
}


static ngx_int_t
ngx_rbcs_generation_uint64(ngx_str_t *s, uint64_t *value)
{
    u_char    *p, *last;
    uint64_t   v;

    if (s->data == NULL || s->len == 0 || s->len > 19) {
        return NGX_ERROR;
    }

    v = 0;

    for (p = s->data, last = p + s->len; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        v = v * 10 + (*p - '0');
    }

    *value = v;

    return NGX_OK;
}
