
/*
 * RBCS: counters and histograms in shared memory.
 *
 * Counters are atomics in one small zone that every worker adds to without
 * a lock (as nginx's stub_status counters are); gauges that describe one
 * worker (its MariaDB pool, its Redis connection) live in that worker's
 * slot and are summed when rendered.  The zone outlives a reload, so
 * counters never go back.
 */


#include <time.h>

#include "ngx_rbcs_metrics.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_problem.h"


#define NGX_RBCS_MS_N        16    /* status codes kept apart */
#define NGX_RBCS_MH_N        15    /* latency buckets, +Inf included */
#define NGX_RBCS_MB_N        10    /* batch size buckets, +Inf included */
#define NGX_RBCS_MW_N        64    /* worker slots */


/* transfer outcomes: 201, 200, each code a transfer answers with, other */

#define NGX_RBCS_MO_INDEX(code, title)  NGX_RBCS_MO_##code,

enum {
    NGX_RBCS_MO_COMPLETED = 0,
    NGX_RBCS_MO_REPLAYED,
    NGX_RBCS_PROBLEMS_TRANSFER(NGX_RBCS_MO_INDEX)
    NGX_RBCS_MO_OTHER,
    NGX_RBCS_MO_N
};


typedef struct {
    ngx_atomic_t               bucket[NGX_RBCS_MH_N];
    ngx_atomic_t               sum_us;
    ngx_atomic_t               count;
} ngx_rbcs_metrics_hist_t;


typedef struct {
    ngx_atomic_t               busy;
    ngx_atomic_t               idle;
    ngx_atomic_t               waiting;
    ngx_atomic_t               connecting;
    ngx_atomic_t               write_queue;
    ngx_atomic_t               write_queue_limit;
    ngx_atomic_t               redis;
} ngx_rbcs_metrics_worker_t;


/* a sample, and the help and type of its family when it opens one */
typedef struct {
    const char                *name;
    const char                *labels;
    const char                *type;
    const char                *help;
} ngx_rbcs_metrics_sample_t;


typedef struct {
    ngx_atomic_t               requests[NGX_RBCS_MR_N][NGX_RBCS_MS_N];
    ngx_atomic_t               outcomes[NGX_RBCS_MO_N];
    ngx_atomic_t               counters[NGX_RBCS_M_N];
    ngx_rbcs_metrics_hist_t    transfer;
    ngx_rbcs_metrics_hist_t    balance;
    ngx_atomic_t               batch[NGX_RBCS_MB_N];
    ngx_atomic_t               batch_sum;
    ngx_atomic_t               batch_count;
    /* the oldest overdue hold the expiry scan saw: when it was due, on
       the monotonic clock in ms; 0: none */
    ngx_atomic_t               hold_due;
    ngx_rbcs_metrics_worker_t  workers[NGX_RBCS_MW_N];
} ngx_rbcs_metrics_sh_t;


static ngx_int_t ngx_rbcs_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_uint_t ngx_rbcs_metrics_status(ngx_uint_t status);
static ngx_uint_t ngx_rbcs_metrics_outcome(ngx_uint_t status,
    ngx_str_t *code);
static void ngx_rbcs_metrics_observe(ngx_rbcs_metrics_hist_t *h,
    uint64_t us);
static uint64_t ngx_rbcs_metrics_now_us(void);
static void ngx_rbcs_metrics_render_hist(ngx_rbcs_out_t *out,
    const char *name, const char *help, ngx_rbcs_metrics_hist_t *h);
static void ngx_rbcs_metrics_render_samples(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sample_t *s, ngx_uint_t *values, ngx_uint_t n);
static void ngx_rbcs_metrics_render_requests(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m);
static void ngx_rbcs_metrics_render_outcomes(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m);
static void ngx_rbcs_metrics_render_batch(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m);
static void ngx_rbcs_metrics_render_gauges(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m);
static void ngx_rbcs_metrics_render_hold_lag(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m);
static void ngx_rbcs_metrics_render_cache(ngx_rbcs_out_t *out,
    ngx_rbcs_main_conf_t *rmcf);


static ngx_rbcs_metrics_sh_t  *ngx_rbcs_metrics;


static const char  *ngx_rbcs_metrics_routes[NGX_RBCS_MR_N] = {
    "unknown", "healthz", "readyz", "metrics", "open_account", "account",
    "balance", "history", "transfer", "transaction", "capture", "void",
    "holds", "error_page"
};

static ngx_uint_t  ngx_rbcs_metrics_statuses[NGX_RBCS_MS_N - 1] = {
    200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502,
    503
};

#define NGX_RBCS_MO_LABEL(code, title)  #code,

static const char  *ngx_rbcs_metrics_outcomes[NGX_RBCS_MO_N] = {
    "completed", "replayed",
    NGX_RBCS_PROBLEMS_TRANSFER(NGX_RBCS_MO_LABEL)
    "other"
};

/* upper bounds of the latency buckets, in microseconds */
static uint64_t  ngx_rbcs_metrics_bounds[NGX_RBCS_MH_N - 1] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000
};

static const char  *ngx_rbcs_metrics_les[NGX_RBCS_MH_N] = {
    "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"
};

static ngx_uint_t  ngx_rbcs_metrics_batch_bounds[NGX_RBCS_MB_N - 1] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256
};

static ngx_rbcs_metrics_sample_t  ngx_rbcs_metrics_counters[NGX_RBCS_M_N] = {
    { "rbcs_cache_hits_total", "tier=\"zone\"", "counter",
      "Balance reads answered by a cache tier." },
    { "rbcs_cache_hits_total", "tier=\"redis\"", "counter", NULL },
    { "rbcs_cache_misses_total", "tier=\"zone\"", "counter",
      "Balance reads a cache tier could not answer." },
    { "rbcs_cache_misses_total", "tier=\"redis\"", "counter", NULL },
    { "rbcs_database_balance_reads_total", NULL, "counter",
      "Balance reads answered by MariaDB." },
    { "rbcs_mysql_errors_total", NULL, "counter",
      "Statements MariaDB refused, lock conflicts included." },
    { "rbcs_mysql_retries_total", NULL, "counter",
      "Transactions run again after a lock conflict or a lost "
      "connection." },
    { "rbcs_mysql_deadlocks_total", NULL, "counter", "Deadlocks (error 1213)." },
    { "rbcs_mysql_lock_wait_timeouts_total", NULL, "counter",
      "Lock wait timeouts (error 1205)." },
    { "rbcs_mysql_reconnects_total", NULL, "counter",
      "Connections re-established after a failure." },
    { "rbcs_mysql_timeouts_total", NULL, "counter",
      "Round trips that outlived the query timeout." },
    { "rbcs_mysql_connections_lost_total", NULL, "counter",
      "Connections lost during a round trip." },
    { "rbcs_mysql_queue_full_total", NULL, "counter",
      "Requests answered 503 at once: no connection and no room to "
      "wait." },
    { "rbcs_cache_generation_moves_total", NULL, "counter",
      "Moves of this pod's rows of the cache generation: committed "
      "balances that may not have reached Redis." },
    { "rbcs_cache_generation_changes_total", NULL, "counter",
      "Times the pod saw the cache generation move and stopped trusting "
      "what it had cached before." },
    { "rbcs_balance_read_deadlines_total", NULL, "counter",
      "Balance reads answered when the read deadline passed, from the "
      "zone or 503, while a tier had not answered." },
    { "rbcs_cache_generation_reads_total", NULL, "counter",
      "Reads of the cache generation that got an answer (worker 0)." },
    { "rbcs_redis_publishes_total", NULL, "counter",
      "Write batches whose committed balances Redis stored and published "
      "to the other pods." },
    { "rbcs_cache_evictions_total", NULL, "counter",
      "Entries the full cache zone dropped, least recently used first, to "
      "make room." }
};

/* gauges of the pod's workers, in the order of ..._render_gauges() */
static ngx_rbcs_metrics_sample_t  ngx_rbcs_metrics_gauge_samples[] = {
    { "rbcs_mysql_connections", "state=\"in_use\"", "gauge",
      "MariaDB connections of the pod's workers, by state." },
    { "rbcs_mysql_connections", "state=\"idle\"", NULL, NULL },
    { "rbcs_mysql_connections", "state=\"connecting\"", NULL, NULL },
    { "rbcs_mysql_waiting", NULL, "gauge",
      "Requests waiting for a MariaDB connection." },
    { "rbcs_write_queue", NULL, "gauge",
      "Operations waiting for their worker's next write batch." },
    { "rbcs_write_queue_limit", NULL, "gauge",
      "Operations the write queues of the pod's workers take at most "
      "(rbcs_mysql_queue_size each)." },
    { "rbcs_redis_connected", NULL, "gauge",
      "Workers whose Redis connection is up." },
    { "rbcs_workers", NULL, "gauge", "Worker processes of this pod." }
};

/* the cache zone's, in the order of ..._render_cache() */
static ngx_rbcs_metrics_sample_t  ngx_rbcs_metrics_cache_samples[] = {
    { "rbcs_cache_zone_size_bytes", NULL, "gauge",
      "Bytes of the cache zone's pages." },
    { "rbcs_cache_zone_free_bytes", NULL, "gauge",
      "Bytes of the cache zone's pages that hold nothing yet." },
    { "rbcs_cache_zone_emptied_total", NULL, "counter",
      "Times a worker died changing the cache zone and the next one "
      "emptied it." },
    { "rbcs_redis_subscribed", NULL, "gauge",
      "Whether the pod's subscription to the other pods' balance changes "
      "is up and alive." }
};


ngx_int_t
ngx_rbcs_metrics_zone(ngx_conf_t *cf)
{
    ngx_str_t        name = ngx_string("rbcs_metrics");
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, &name,
                                     ngx_max(64 * 1024, 8 * ngx_pagesize),
                                     &ngx_rbcs_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_rbcs_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        shm_zone->data = data;
        ngx_rbcs_metrics = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        ngx_rbcs_metrics = shpool->data;
        return NGX_OK;
    }

    ngx_rbcs_metrics = ngx_slab_calloc(shpool,
                                       sizeof(ngx_rbcs_metrics_sh_t));
    if (ngx_rbcs_metrics == NULL) {
        return NGX_ERROR;
    }

    shpool->data = ngx_rbcs_metrics;
    shm_zone->data = ngx_rbcs_metrics;

    return NGX_OK;
}


/* a worker starts with its own slot cleared of its predecessor's gauges */

ngx_int_t
ngx_rbcs_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_rbcs_metrics_worker_t  *w;

    if (ngx_rbcs_metrics == NULL || ngx_worker >= NGX_RBCS_MW_N) {
        return NGX_OK;
    }

    w = &ngx_rbcs_metrics->workers[ngx_worker];

    w->busy = 0;
    w->idle = 0;
    w->waiting = 0;
    w->connecting = 0;
    w->write_queue = 0;
    w->write_queue_limit = 0;
    w->redis = 0;

    return NGX_OK;
}


void
ngx_rbcs_metrics_inc(ngx_uint_t counter)
{
    if (ngx_rbcs_metrics && counter < NGX_RBCS_M_N) {
        (void) ngx_atomic_fetch_add(&ngx_rbcs_metrics->counters[counter], 1);
    }
}


/* operations taken into one write batch: 1 for one sent alone */

void
ngx_rbcs_metrics_batch(ngx_uint_t n)
{
    ngx_uint_t  i;

    if (ngx_rbcs_metrics == NULL) {
        return;
    }

    for (i = 0; i < NGX_RBCS_MB_N - 1; i++) {
        if (n <= ngx_rbcs_metrics_batch_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_rbcs_metrics->batch[i], 1);
    (void) ngx_atomic_fetch_add(&ngx_rbcs_metrics->batch_sum, n);
    (void) ngx_atomic_fetch_add(&ngx_rbcs_metrics->batch_count, 1);
}


void
ngx_rbcs_metrics_pool(ngx_uint_t busy, ngx_uint_t idle, ngx_uint_t waiting,
    ngx_uint_t connecting)
{
    ngx_rbcs_metrics_worker_t  *w;

    if (ngx_rbcs_metrics == NULL || ngx_worker >= NGX_RBCS_MW_N) {
        return;
    }

    w = &ngx_rbcs_metrics->workers[ngx_worker];

    w->busy = busy;
    w->idle = idle;
    w->waiting = waiting;
    w->connecting = connecting;
}


/* operations waiting for this worker's next write batch */

void
ngx_rbcs_metrics_write_queue(ngx_uint_t n)
{
    if (ngx_rbcs_metrics && ngx_worker < NGX_RBCS_MW_N) {
        ngx_rbcs_metrics->workers[ngx_worker].write_queue = n;
    }
}


/* operations this worker's write queue takes at most */

void
ngx_rbcs_metrics_write_queue_limit(ngx_uint_t n)
{
    if (ngx_rbcs_metrics && ngx_worker < NGX_RBCS_MW_N) {
        ngx_rbcs_metrics->workers[ngx_worker].write_queue_limit = n;
    }
}


/*
 * What the expiry scan found: pending holds past their expiresAt, the
 * oldest "ms" past it, or none.  Until the next scan that answers, the
 * oldest one is shown growing older: a scan that stopped releases nothing.
 */

void
ngx_rbcs_metrics_holds_overdue(ngx_uint_t found, uint64_t ms)
{
    uint64_t  now;

    if (ngx_rbcs_metrics == NULL) {
        return;
    }

    now = ngx_rbcs_metrics_now_us() / 1000;

    ngx_rbcs_metrics->hold_due = (found && now > ms) ? now - ms
                                 : (found ? 1 : 0);
}


void
ngx_rbcs_metrics_redis(ngx_uint_t connected)
{
    if (ngx_rbcs_metrics && ngx_worker < NGX_RBCS_MW_N) {
        ngx_rbcs_metrics->workers[ngx_worker].redis = connected;
    }
}


static ngx_uint_t
ngx_rbcs_metrics_status(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_RBCS_MS_N - 1; i++) {
        if (ngx_rbcs_metrics_statuses[i] == status) {
            return i;
        }
    }

    return NGX_RBCS_MS_N - 1;
}


static ngx_uint_t
ngx_rbcs_metrics_outcome(ngx_uint_t status, ngx_str_t *code)
{
    ngx_uint_t  i;

    if (status == NGX_HTTP_CREATED) {
        return NGX_RBCS_MO_COMPLETED;
    }

    if (status == NGX_HTTP_OK) {
        return NGX_RBCS_MO_REPLAYED;
    }

    for (i = NGX_RBCS_MO_REPLAYED + 1; i < NGX_RBCS_MO_OTHER; i++) {
        if (code->len == ngx_strlen(ngx_rbcs_metrics_outcomes[i])
            && ngx_strncmp(code->data, ngx_rbcs_metrics_outcomes[i],
                           code->len)
               == 0)
        {
            return i;
        }
    }

    return NGX_RBCS_MO_OTHER;
}


/* the time on the clock every worker shares, unmoved by the wall clock's */

static uint64_t
ngx_rbcs_metrics_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static void
ngx_rbcs_metrics_observe(ngx_rbcs_metrics_hist_t *h, uint64_t us)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_RBCS_MH_N - 1; i++) {
        if (us <= ngx_rbcs_metrics_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum_us, (ngx_atomic_int_t) us);
    (void) ngx_atomic_fetch_add(&h->count, 1);
}


/*
 * The log phase of every request the module answered: its route, status,
 * latency and, for transfers, the outcome.
 */

ngx_int_t
ngx_rbcs_metrics_log(ngx_http_request_t *r)
{
    uint64_t          us;
    ngx_uint_t        status, route;
    ngx_rbcs_ctx_t   *ctx;
    struct timespec   ts;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);

    if (ctx == NULL || ngx_rbcs_metrics == NULL || r != r->main) {
        return NGX_OK;
    }

    status = r->headers_out.status ? r->headers_out.status : r->err_status;
    route = ctx->route < NGX_RBCS_MR_N ? ctx->route : NGX_RBCS_MR_NONE;

    (void) ngx_atomic_fetch_add(
        &ngx_rbcs_metrics->requests[route][ngx_rbcs_metrics_status(status)],
        1);

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    us = (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    us = (us > ctx->start_us) ? us - ctx->start_us : 0;

    if (route == NGX_RBCS_MR_TRANSFER) {
        ngx_rbcs_metrics_observe(&ngx_rbcs_metrics->transfer, us);
        (void) ngx_atomic_fetch_add(
            &ngx_rbcs_metrics->outcomes[ngx_rbcs_metrics_outcome(status,
                                                                 &ctx->code)],
            1);

    } else if (route == NGX_RBCS_MR_BALANCE) {
        ngx_rbcs_metrics_observe(&ngx_rbcs_metrics->balance, us);
    }

    return NGX_OK;
}


static void
ngx_rbcs_metrics_render_hist(ngx_rbcs_out_t *out, const char *name,
    const char *help, ngx_rbcs_metrics_hist_t *h)
{
    u_char      buf[256];
    uint64_t    sum;
    ngx_uint_t  i, cumulative;

    ngx_rbcs_out_raw(out, buf,
                     ngx_sprintf(buf, "# HELP %s %s\n# TYPE %s histogram\n",
                                 name, help, name) - buf);

    cumulative = 0;

    for (i = 0; i < NGX_RBCS_MH_N; i++) {
        cumulative += h->bucket[i];
        ngx_rbcs_out_raw(out, buf,
                         ngx_sprintf(buf, "%s_bucket{le=\"%s\"} %ui\n", name,
                                     ngx_rbcs_metrics_les[i], cumulative)
                         - buf);
    }

    sum = h->sum_us;

    ngx_rbcs_out_raw(out, buf,
                     ngx_sprintf(buf, "%s_sum %uL.%06uL\n%s_count %ui\n",
                                 name, sum / 1000000, sum % 1000000, name,
                                 (ngx_uint_t) h->count)
                     - buf);
}


/* samples of a table, each family's help and type before its first */

static void
ngx_rbcs_metrics_render_samples(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sample_t *s, ngx_uint_t *values, ngx_uint_t n)
{
    u_char      buf[512];
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (s[i].help) {
            ngx_rbcs_out_raw(out, buf, ngx_sprintf(buf,
                "# HELP %s %s\n# TYPE %s %s\n", s[i].name, s[i].help,
                s[i].name, s[i].type) - buf);
        }

        ngx_rbcs_out_raw(out, buf, ngx_sprintf(buf, "%s%s%s%s %ui\n",
            s[i].name, s[i].labels ? "{" : "",
            s[i].labels ? s[i].labels : "", s[i].labels ? "}" : "",
            values[i]) - buf);
    }
}


static void
ngx_rbcs_metrics_render_requests(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m)
{
    u_char      buf[256], *p;
    ngx_uint_t  i, j, v;

    ngx_rbcs_out_cstr(out,
        "# HELP rbcs_http_requests_total Requests answered, by route and "
        "status.\n# TYPE rbcs_http_requests_total counter\n");

    for (i = 0; i < NGX_RBCS_MR_N; i++) {
        for (j = 0; j < NGX_RBCS_MS_N; j++) {
            v = m->requests[i][j];
            if (v == 0) {
                continue;
            }

            p = ngx_sprintf(buf,
                            "rbcs_http_requests_total{route=\"%s\",status=\"",
                            ngx_rbcs_metrics_routes[i]);

            if (j < NGX_RBCS_MS_N - 1) {
                p = ngx_sprintf(p, "%ui", ngx_rbcs_metrics_statuses[j]);

            } else {
                p = ngx_cpymem(p, "other", sizeof("other") - 1);
            }

            p = ngx_sprintf(p, "\"} %ui\n", v);

            ngx_rbcs_out_raw(out, buf, p - buf);
        }
    }
}


static void
ngx_rbcs_metrics_render_outcomes(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m)
{
    u_char      buf[256];
    ngx_uint_t  i;

    ngx_rbcs_out_cstr(out,
        "# HELP rbcs_transfers_total Transfer requests, by outcome: completed"
        " (201), replayed (200) or the error code.\n"
        "# TYPE rbcs_transfers_total counter\n");

    for (i = 0; i < NGX_RBCS_MO_N; i++) {
        ngx_rbcs_out_raw(out, buf, ngx_sprintf(buf,
            "rbcs_transfers_total{outcome=\"%s\"} %ui\n",
            ngx_rbcs_metrics_outcomes[i], (ngx_uint_t) m->outcomes[i]) - buf);
    }
}


static void
ngx_rbcs_metrics_render_batch(ngx_rbcs_out_t *out, ngx_rbcs_metrics_sh_t *m)
{
    u_char      buf[256], *p;
    ngx_uint_t  i, cumulative;

    ngx_rbcs_out_cstr(out,
        "# HELP rbcs_mysql_batch_size Operations taken into one write batch "
        "(one database transaction; 1 when sent alone).\n"
        "# TYPE rbcs_mysql_batch_size histogram\n");

    cumulative = 0;

    for (i = 0; i < NGX_RBCS_MB_N; i++) {
        cumulative += m->batch[i];

        p = ngx_cpymem(buf, "rbcs_mysql_batch_size_bucket{le=\"",
                       sizeof("rbcs_mysql_batch_size_bucket{le=\"") - 1);

        if (i < NGX_RBCS_MB_N - 1) {
            p = ngx_sprintf(p, "%ui", ngx_rbcs_metrics_batch_bounds[i]);

        } else {
            p = ngx_cpymem(p, "+Inf", sizeof("+Inf") - 1);
        }

        p = ngx_sprintf(p, "\"} %ui\n", cumulative);

        ngx_rbcs_out_raw(out, buf, p - buf);
    }

    ngx_rbcs_out_raw(out, buf, ngx_sprintf(buf,
        "rbcs_mysql_batch_size_sum %ui\nrbcs_mysql_batch_size_count %ui\n",
        (ngx_uint_t) m->batch_sum, (ngx_uint_t) m->batch_count) - buf);
}


/* gauges summed over the workers this master runs now */

static void
ngx_rbcs_metrics_render_gauges(ngx_rbcs_out_t *out, ngx_rbcs_metrics_sh_t *m)
{
    ngx_uint_t                  i, v[8];
    ngx_core_conf_t            *ccf;
    ngx_rbcs_metrics_worker_t  *w;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    ngx_memzero(v, sizeof(v));

    for (i = 0; i < (ngx_uint_t) ccf->worker_processes
                && i < NGX_RBCS_MW_N; i++)
    {
        w = &m->workers[i];
        v[0] += w->busy;
        v[1] += w->idle;
        v[2] += w->connecting;
        v[3] += w->waiting;
        v[4] += w->write_queue;
        v[5] += w->write_queue_limit;
        v[6] += w->redis;
    }

    v[7] = ccf->worker_processes;

    ngx_rbcs_metrics_render_samples(out, ngx_rbcs_metrics_gauge_samples, v,
                                    8);
}


static void
ngx_rbcs_metrics_render_hold_lag(ngx_rbcs_out_t *out,
    ngx_rbcs_metrics_sh_t *m)
{
    u_char    buf[512];
    uint64_t  due, now;

    due = m->hold_due;
    now = ngx_rbcs_metrics_now_us() / 1000;
    due = (due && now > due) ? now - due : 0;

    ngx_rbcs_out_raw(out, buf, ngx_sprintf(buf,
        "# HELP rbcs_hold_expiry_lag_seconds How long the oldest pending "
        "hold has been past its expiresAt, as the expiry scan last saw it "
        "and growing until a scan sees it go; 0 when none.\n"
        "# TYPE rbcs_hold_expiry_lag_seconds gauge\n"
        "rbcs_hold_expiry_lag_seconds %uL.%03uL\n",
        due / 1000, due % 1000) - buf);
}


static void
ngx_rbcs_metrics_render_cache(ngx_rbcs_out_t *out,
    ngx_rbcs_main_conf_t *rmcf)
{
    ngx_uint_t              v[4];
    ngx_rbcs_cache_stats_t  st;

    if (rmcf->cache == NULL) {
        return;
    }

    ngx_rbcs_cache_stats(rmcf->cache, &st);

    v[0] = st.size;
    v[1] = st.free;
    v[2] = st.emptied;
    v[3] = st.subscribed;

    /* the subscription is shown only where there is Redis to subscribe to */

    ngx_rbcs_metrics_render_samples(out, ngx_rbcs_metrics_cache_samples, v,
                                    rmcf->redis ? 4 : 3);
}


ngx_int_t
ngx_rbcs_metrics_handler(ngx_http_request_t *r)
{
    ngx_uint_t              i, v[NGX_RBCS_M_N];
    ngx_rbcs_out_t          out;
    ngx_rbcs_metrics_sh_t  *m;

    m = ngx_rbcs_metrics;

    if (m == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (ngx_rbcs_out_init(&out, r->pool, 16384) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_metrics_render_requests(&out, m);
    ngx_rbcs_metrics_render_outcomes(&out, m);

    ngx_rbcs_metrics_render_hist(&out, "rbcs_transfer_duration_seconds",
                                 "Time to answer a transfer.", &m->transfer);
    ngx_rbcs_metrics_render_hist(&out, "rbcs_balance_read_duration_seconds",
                                 "Time to answer a balance read.",
                                 &m->balance);

    for (i = 0; i < NGX_RBCS_M_N; i++) {
        v[i] = m->counters[i];
    }

    ngx_rbcs_metrics_render_samples(&out, ngx_rbcs_metrics_counters, v,
                                    NGX_RBCS_M_N);

    ngx_rbcs_metrics_render_batch(&out, m);
    ngx_rbcs_metrics_render_gauges(&out, m);
    ngx_rbcs_metrics_render_hold_lag(&out, m);
    ngx_rbcs_metrics_render_cache(&out,
        ngx_http_get_module_main_conf(r, ngx_rbcs_module));

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_send(r, NGX_HTTP_OK,
        &(ngx_str_t) ngx_string("text/plain; version=0.0.4; charset=utf-8"),
        out.start, out.pos - out.start);
}
