
/*
 * RBCS: the pod-wide balance cache in shared memory.
 *
 * Every access holds the slab pool's mutex, which nginx force-unlocks when
 * a worker dies holding it.  What the dead worker may have left half done
 * is caught by the zone's "changing" mark: a change sets it first and
 * clears it last, so a worker that takes the lock and finds it set knows
 * the tree, the queue or an entry may be torn, and empties the zone (it is
 * only a cache) instead of reading them.
 */


#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_metrics.h"


/* entries looked at from the LRU tail to find room */
#define NGX_RBCS_CACHE_EVICT  16


typedef struct ngx_rbcs_cache_node_s  ngx_rbcs_cache_node_t;

struct ngx_rbcs_cache_node_s {
    ngx_rbcs_cache_node_t     *next;       /* in its bucket's chain */
    uint32_t                   hash;
    u_char                     len;
    u_char                     scale;
    u_char                     currency_len;
    u_char                     currency[NGX_RBCS_CURRENCY_MAX_LEN];
    u_char                     external;
    u_char                     floor;      /* a version floor only */
    ngx_queue_t                queue;
    uint64_t                   version;
    ngx_rbcs_int128_t          balance;
    ngx_rbcs_uint128_t         held;
    ngx_rbcs_uint128_t         limit;
    ngx_msec_t                 fill;       /* known current at this time */
    u_char                     data[1];    /* the account number */
};


/*
 * The index: a power of two of buckets, about one per 256 bytes of zone
 * (a full zone holds about one entry per 128 bytes), each the head of a
 * chain.  A lookup reads one bucket and, mostly, one entry.  The rbtree
 * it replaced read a scattered node per level: with 100k accounts read
 * uniformly its walk was 12% of the reading workers' CPU samples (perf),
 * this lookup 4%.
 */

struct ngx_rbcs_cache_sh_s {
    ngx_rbcs_cache_node_t    **buckets;
    ngx_uint_t                 mask;
    ngx_queue_t                queue;
    ngx_uint_t                 changing;
    ngx_msec_t                 sub_since;  /* subscribed since; 0: down */
    ngx_msec_t                 sub_alive;  /* last sign of life */
    ngx_pid_t                  sub_pid;    /* the subscriber's process */
    ngx_msec_t                 emptied;    /* when last emptied; 0: never */
    ngx_uint_t                 resets;
    /* the cache generation as last read, and when that read started */
    uint64_t                   gen_count;
    uint64_t                   gen_sum;
    ngx_msec_t                 gen_read;   /* 0: never read */
    /* nothing known current before this is trusted; 0: none */
    ngx_msec_t                 distrust;
};


static ngx_int_t ngx_rbcs_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_rbcs_cache_set(ngx_rbcs_cache_node_t *cn,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t fill);
static ngx_int_t ngx_rbcs_cache_init_sh(ngx_rbcs_cache_t *cache,
    ngx_uint_t locked);
static void ngx_rbcs_cache_lock(ngx_rbcs_cache_t *cache);
static ngx_rbcs_cache_node_t *ngx_rbcs_cache_lookup(ngx_rbcs_cache_t *cache,
    ngx_str_t *account, uint32_t hash);
static void ngx_rbcs_cache_unlink(ngx_rbcs_cache_sh_t *sh,
    ngx_rbcs_cache_node_t *cn);
static ngx_uint_t ngx_rbcs_cache_trusted(ngx_rbcs_cache_t *cache,
    ngx_msec_t known, ngx_msec_t now);
static ngx_int_t ngx_rbcs_cache_zone_size(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name, ssize_t *size);
static ngx_int_t ngx_rbcs_cache_time(ngx_rbcs_cache_t *cache,
    ngx_str_t *value);


/* the time parameters of rbcs_cache_zone, and where each goes */

typedef struct {
    ngx_str_t                  name;
    size_t                     offset;
} ngx_rbcs_cache_param_t;


static ngx_rbcs_cache_param_t  ngx_rbcs_cache_times[] = {
    { ngx_string("ttl="), offsetof(ngx_rbcs_cache_t, ttl) },
    { ngx_string("max_age="), offsetof(ngx_rbcs_cache_t, max_age) },
    { ngx_string("poll="), offsetof(ngx_rbcs_cache_t, poll) },
    { ngx_null_string, 0 }
};


char *
ngx_rbcs_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    ssize_t            size;
    ngx_str_t         *value, name;
    ngx_int_t          rc;
    ngx_uint_t         i;
    ngx_rbcs_cache_t  *cache;

    if (rmcf->cache) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_rbcs_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->ttl = 2000;
    cache->max_age = 0;
    cache->poll = 1000;
    size = 0;
    ngx_str_null(&name);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            rc = ngx_rbcs_cache_zone_size(cf, &value[i], &name, &size);

        } else {
            rc = ngx_rbcs_cache_time(cache, &value[i]);
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter", &cmd->name);
        return NGX_CONF_ERROR;
    }

    cache->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                            &ngx_rbcs_module);
    if (cache->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cache->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    cache->shm_zone->init = ngx_rbcs_cache_init_zone;
    cache->shm_zone->data = cache;

    rmcf->cache = cache;

    return NGX_CONF_OK;
}


/*
 * "zone=name:size" into name and size; NGX_DECLINED: not of that form,
 * NGX_ERROR: too small, logged
 */

static ngx_int_t
ngx_rbcs_cache_zone_size(ngx_conf_t *cf, ngx_str_t *value, ngx_str_t *name,
    ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    name->data = value->data + 5;

    p = (u_char *) ngx_strchr(name->data, ':');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    name->len = p - name->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    *size = ngx_parse_size(&s);
    if (*size == NGX_ERROR || name->len == 0) {
        return NGX_DECLINED;
    }

    if (*size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "ttl=", "max_age=" or "poll=" and a time; NGX_DECLINED: none of them */

static ngx_int_t
ngx_rbcs_cache_time(ngx_rbcs_cache_t *cache, ngx_str_t *value)
{
    ngx_str_t                s;
    ngx_int_t                ms;
    ngx_rbcs_cache_param_t  *param;

    for (param = ngx_rbcs_cache_times; param->name.len; param++) {

        if (ngx_strncmp(value->data, param->name.data, param->name.len)
            != 0)
        {
            continue;
        }

        s.data = value->data + param->name.len;
        s.len = value->len - param->name.len;

        ms = ngx_parse_time(&s, 0);
        if (ms == NGX_ERROR) {
            return NGX_DECLINED;
        }

        *(ngx_msec_t *) ((char *) cache + param->offset) = ms;

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* a reload keeps the zone, and what is in it, when name and size match */

static ngx_int_t
ngx_rbcs_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_rbcs_cache_t  *ocache = data;

    size_t             len;
    ngx_rbcs_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    if (ngx_rbcs_cache_init_sh(cache, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    len = sizeof(" in rbcs cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in rbcs cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


/* with locked set, the caller holds the slab pool's mutex */

static ngx_int_t
ngx_rbcs_cache_init_sh(ngx_rbcs_cache_t *cache, ngx_uint_t locked)
{
    size_t      size;
    ngx_uint_t  n;

    cache->sh = locked
                ? ngx_slab_alloc_locked(cache->shpool,
                                        sizeof(ngx_rbcs_cache_sh_t))
                : ngx_slab_alloc(cache->shpool, sizeof(ngx_rbcs_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(cache->sh, sizeof(ngx_rbcs_cache_sh_t));

    cache->shpool->data = cache->sh;

    for (n = 1024; n < cache->shm_zone->shm.size / 256; n <<= 1) {
        /* void */
    }

    size = n * sizeof(ngx_rbcs_cache_node_t *);

    cache->sh->buckets = locked ? ngx_slab_alloc_locked(cache->shpool, size)
                                : ngx_slab_alloc(cache->shpool, size);
    if (cache->sh->buckets == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(cache->sh->buckets, size);
    cache->sh->mask = n - 1;

    ngx_queue_init(&cache->sh->queue);

    return NGX_OK;
}


/*
 * Take the lock; if the last holder died in the middle of a change, empty
 * the zone: the slab pool is laid out anew, and the header, its first
 * allocation, lands where every worker already points.
 */

static void
ngx_rbcs_cache_lock(ngx_rbcs_cache_t *cache)
{
    u_char               *log_ctx;
    ngx_uint_t            resets;
    uint64_t              count, sum;
    ngx_msec_t            since, alive, read, distrust;
    ngx_rbcs_cache_sh_t  *sh;

    ngx_shmtx_lock(&cache->shpool->mutex);

    if (!cache->sh->changing) {
        return;
    }

    sh = cache->sh;
    resets = sh->resets + 1;
    since = sh->sub_since;
    alive = sh->sub_alive;
    count = sh->gen_count;
    sum = sh->gen_sum;
    read = sh->gen_read;
    distrust = sh->distrust;
    log_ctx = cache->shpool->log_ctx;

    ngx_slab_init(cache->shpool);

    if (ngx_rbcs_cache_init_sh(cache, 1) != NGX_OK || cache->sh != sh) {

        /*
         * Not expected (the first allocations of an empty pool): an
         * index-less zone where every lookup misses, still locked for the
         * caller, and emptied again at the next lock.
         */

        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "rbcs: cache zone could not be emptied in place");

        cache->sh = sh;
        ngx_memzero(sh, sizeof(ngx_rbcs_cache_sh_t));
        ngx_queue_init(&sh->queue);
        sh->changing = 1;
        return;
    }

    /* log_ctx pointed into the old layout: keep the static default */
    cache->shpool->log_ctx = (log_ctx == NULL) ? NULL : &cache->shpool->zero;
    cache->shpool->log_nomem = 0;

    sh->resets = resets;
    sh->sub_since = since;
    sh->sub_alive = alive;
    sh->gen_count = count;
    sh->gen_sum = sum;
    sh->gen_read = read;
    sh->distrust = distrust;
    sh->emptied = ngx_rbcs_cache_now();

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "rbcs: cache zone emptied: a worker died changing it");
}


/*
 * The cache's clock: nginx's monotonic milliseconds, the same in every
 * worker (CLOCK_MONOTONIC), unmoved when the wall clock is set back.
 */

ngx_msec_t
ngx_rbcs_cache_now(void)
{
    return ngx_current_msec;
}


static void
ngx_rbcs_cache_set(ngx_rbcs_cache_node_t *cn, ngx_rbcs_cache_entry_t *e,
    ngx_msec_t fill)
{
    cn->version = e->version;
    cn->balance = e->balance;
    cn->held = e->held;
    cn->limit = e->limit;
    cn->scale = (u_char) e->scale;
    cn->external = (u_char) e->external;
    cn->floor = (u_char) e->floor;
    cn->currency_len = (u_char) e->currency_len;
    ngx_memcpy(cn->currency, e->currency, e->currency_len);
    cn->fill = fill;
}


static ngx_rbcs_cache_node_t *
ngx_rbcs_cache_lookup(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    uint32_t hash)
{
    ngx_rbcs_cache_node_t  *cn;

    if (cache->sh->buckets == NULL) {
        return NULL;
    }

    for (cn = cache->sh->buckets[hash & cache->sh->mask];
         cn != NULL;
         cn = cn->next)
    {
        if (cn->hash == hash && cn->len == account->len
            && ngx_memcmp(cn->data, account->data, account->len) == 0)
        {
            return cn;
        }
    }

    return NULL;
}


static void
ngx_rbcs_cache_unlink(ngx_rbcs_cache_sh_t *sh, ngx_rbcs_cache_node_t *cn)
{
    ngx_rbcs_cache_node_t  **p;

    for (p = &sh->buckets[cn->hash & sh->mask]; *p != NULL; p = &(*p)->next) {
        if (*p == cn) {
            *p = cn->next;
            return;
        }
    }
}


/*
 * NGX_RBCS_CACHE_HIT: e holds a value trusted to be current;
 * NGX_RBCS_CACHE_STALE: e holds a value that may be old (a floor for the
 * version of anything read elsewhere); NGX_RBCS_CACHE_MISS.
 */

ngx_uint_t
ngx_rbcs_cache_get(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e)
{
    uint32_t                hash;
    ngx_msec_t              now;
    ngx_uint_t              trusted;
    ngx_rbcs_cache_sh_t    *sh;
    ngx_rbcs_cache_node_t  *cn;

    hash = ngx_crc32_short(account->data, account->len);
    now = ngx_rbcs_cache_now();

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;
    cn = ngx_rbcs_cache_lookup(cache, account, hash);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_RBCS_CACHE_MISS;
    }

    e->version = cn->version;
    e->balance = cn->balance;
    e->held = cn->held;
    e->limit = cn->limit;
    e->scale = cn->scale;
    e->external = cn->external;
    e->floor = cn->floor;
    e->currency_len = cn->currency_len;
    ngx_memcpy(e->currency, cn->currency, cn->currency_len);

    trusted = !cn->floor && ngx_rbcs_cache_trusted(cache, cn->fill, now);

    /*
     * the queue is the zone's own order, a read moves the entry up; an
     * entry already at the head (one hot account read by every worker)
     * is left alone, so its reads write nothing but the mutex
     */

    if (ngx_queue_head(&sh->queue) != &cn->queue) {
        sh->changing = 1;
        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&sh->queue, &cn->queue);
        sh->changing = 0;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return trusted ? NGX_RBCS_CACHE_HIT : NGX_RBCS_CACHE_STALE;
}


/*
 * Whether a value known current at "known" is still trusted: not older
 * than a sign of a missed change; then for ttl in any case, and beyond
 * while the pod hears every change (its subscription up since before, the
 * generation read recently), up to max_age when one is set.  Under the
 * lock.
 */

static ngx_uint_t
ngx_rbcs_cache_trusted(ngx_rbcs_cache_t *cache, ngx_msec_t known,
    ngx_msec_t now)
{
    ngx_msec_int_t        age;
    ngx_rbcs_cache_sh_t  *sh;

    sh = cache->sh;

    if (known == 0
        || (sh->distrust && (ngx_msec_int_t) (known - sh->distrust) <= 0))
    {
        return 0;
    }

    age = (ngx_msec_int_t) (now - known);

    if (age < (ngx_msec_int_t) cache->ttl) {
        return 1;
    }

    if (cache->max_age && age >= (ngx_msec_int_t) cache->max_age) {
        return 0;
    }

    /* the subscription, up since before the value was known current */

    if (sh->sub_since == 0
        || (ngx_msec_int_t) (known - sh->sub_since) < 0
        || (ngx_msec_int_t) (now - sh->sub_alive)
           >= (ngx_msec_int_t) cache->alive)
    {
        return 0;
    }

    /* the generation, read lately (the read every poll, one missed) */

    return cache->poll == 0
           || (sh->gen_read
               && (ngx_msec_int_t) (now - sh->gen_read)
                  < (ngx_msec_int_t) (2 * cache->poll + cache->ttl));
}


/*
 * Store a value, known current at "known" (a time of
 * ngx_rbcs_cache_now(), no later than the read or the commit that gave
 * it) or (0) only known to have existed: a floor for what may be
 * answered later, not trusted itself.  A lower version never replaces a
 * higher one; the same version only renews the time it was known current.
 * A value known current before a sign of a missed change is a floor too:
 * its read may have missed that change.  Returns whether it was kept as
 * current.
 */

ngx_uint_t
ngx_rbcs_cache_put(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known)
{
    size_t                  size;
    uint32_t                hash;
    ngx_uint_t              n;
    ngx_msec_t              now;
    ngx_queue_t            *q;
    ngx_rbcs_cache_sh_t    *sh;
    ngx_rbcs_cache_node_t  *cn, *old;

    if (account->len > NGX_RBCS_ID_MAX_LEN
        || e->currency_len > NGX_RBCS_CURRENCY_MAX_LEN)
    {
        return 0;
    }

    hash = ngx_crc32_short(account->data, account->len);

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;

    now = (e->floor
           || (sh->distrust && (ngx_msec_int_t) (known - sh->distrust) <= 0))
          ? 0 : known;
    cn = ngx_rbcs_cache_lookup(cache, account, hash);

    sh->changing = 1;

    if (cn) {
        if (e->version > cn->version
            || (e->version == cn->version && cn->floor && !e->floor))
        {
            ngx_rbcs_cache_set(cn, e, now);

        } else if (e->version == cn->version && !e->floor
                   && (ngx_msec_int_t) (now - cn->fill) > 0)
        {
            cn->fill = now;
        }

        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&sh->queue, &cn->queue);

        goto done;
    }

    if (sh->buckets == NULL) {
        goto done;
    }

    size = ngx_rbcs_cache_node_size(account);

    cn = ngx_slab_alloc_locked(cache->shpool, size);

    for (n = 0; cn == NULL && n < NGX_RBCS_CACHE_EVICT; n++) {

        /* full: the least recently used entries make room */

        if (ngx_queue_empty(&sh->queue)) {
            break;
        }

        q = ngx_queue_last(&sh->queue);
        old = ngx_queue_data(q, ngx_rbcs_cache_node_t, queue);

        ngx_queue_remove(q);
        ngx_rbcs_cache_unlink(sh, old);
        ngx_slab_free_locked(cache->shpool, old);
        ngx_rbcs_metrics_inc(NGX_RBCS_M_CACHE_EVICTIONS);

        cn = ngx_slab_alloc_locked(cache->shpool, size);
    }

    if (cn == NULL) {
        goto done;
    }

    cn->hash = hash;
    cn->len = (u_char) account->len;
    ngx_memcpy(cn->data, account->data, account->len);
    ngx_rbcs_cache_set(cn, e, now);

    cn->next = sh->buckets[hash & sh->mask];
    sh->buckets[hash & sh->mask] = cn;
    ngx_queue_insert_head(&sh->queue, &cn->queue);

done:

    sh->changing = 0;

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return now != 0;
}


/*
 * The zone forgot what it held a moment ago: Redis may still lack the
 * latest writes of this pod (they are sent without waiting), so for a
 * while only the database is a safe place to refill from.
 */

ngx_uint_t
ngx_rbcs_cache_emptied_recently(ngx_rbcs_cache_t *cache)
{
    ngx_msec_t  emptied;

    emptied = cache->sh->emptied;

    return emptied
           && (ngx_msec_int_t) (ngx_rbcs_cache_now() - emptied)
              < (ngx_msec_int_t) cache->ttl;
}


/*
 * The cache generation as read by the poller, the read started at
 * "started": when it moved, nothing known current before that read
 * started is trusted any more.  Returns whether it moved.
 */

ngx_uint_t
ngx_rbcs_cache_generation(ngx_rbcs_cache_t *cache, uint64_t count,
    uint64_t sum, ngx_msec_t started)
{
    ngx_uint_t            moved;
    ngx_rbcs_cache_sh_t  *sh;

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;

    moved = sh->gen_read
            && (count != sh->gen_count || sum != sh->gen_sum);

    if (moved && (sh->distrust == 0
                  || (ngx_msec_int_t) (started - sh->distrust) > 0))
    {
        sh->distrust = started;
    }

    sh->gen_count = count;
    sh->gen_sum = sum;
    sh->gen_read = started ? started : 1;

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return moved;
}


uint64_t
ngx_rbcs_cache_generation_sum(ngx_rbcs_cache_t *cache)
{
    /* one aligned word, written under the lock: no lock to read it */

    return *(volatile uint64_t *) &cache->sh->gen_sum;
}


/* a change may have been missed: nothing known current before is trusted */

void
ngx_rbcs_cache_distrust(ngx_rbcs_cache_t *cache, ngx_msec_t since)
{
    ngx_rbcs_cache_sh_t  *sh;

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;

    if (sh->distrust == 0 || (ngx_msec_int_t) (since - sh->distrust) > 0) {
        sh->distrust = since ? since : 1;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * Whether a value read from Redis, known current at "known" and written
 * there when its writer had read the generation "generation", may be
 * answered: not older than a sign of a missed change, and written at or
 * after the generation this pod last read (a value from before the
 * generation moved may miss a change that was never published).
 */

ngx_uint_t
ngx_rbcs_cache_fresh(ngx_rbcs_cache_t *cache, ngx_msec_t known,
    uint64_t generation)
{
    ngx_uint_t            fresh;
    ngx_rbcs_cache_sh_t  *sh;

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;

    /*
     * Before the generation was first read, a Redis value may predate a
     * move this pod never saw: Redis is not used until then.
     */

    fresh = known
            && (sh->distrust == 0
                || (ngx_msec_int_t) (known - sh->distrust) > 0)
            && generation >= sh->gen_sum
            && (cache->poll == 0 || sh->gen_read != 0);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return fresh;
}


/* the subscription that carries other pods' changes came up, lives, died */

void
ngx_rbcs_cache_subscription(ngx_rbcs_cache_t *cache, ngx_uint_t event)
{
    ngx_msec_t  now;

    now = ngx_rbcs_cache_now();

    ngx_rbcs_cache_lock(cache);

    switch (event) {

    case NGX_RBCS_REDIS_SUB_UP:

        /*
         * A reload starts a new subscriber while the old one still
         * lives: no message was missed in between, the trust goes on.
         * An old one that ended first said so (SUB_DOWN at its exit); one
         * that died said nothing, and is gone.
         */

        if (cache->sh->sub_since == 0
            || (ngx_msec_int_t) (now - cache->sh->sub_alive)
               >= (ngx_msec_int_t) cache->alive
            || (cache->sh->sub_pid != ngx_pid && cache->sh->sub_pid > 0
                && kill(cache->sh->sub_pid, 0) == -1 && ngx_errno == ESRCH))
        {
            cache->sh->sub_since = now ? now : 1;
        }

        cache->sh->sub_pid = ngx_pid;
        cache->sh->sub_alive = now;
        break;

    case NGX_RBCS_REDIS_SUB_ALIVE:
        cache->sh->sub_alive = now;
        break;

    default: /* NGX_RBCS_REDIS_SUB_DOWN */

        /* an old subscriber ending after its successor came up: no gap */

        if (cache->sh->sub_pid == ngx_pid || cache->sh->sub_pid == 0) {
            cache->sh->sub_since = 0;
        }

        break;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * The zone's figures for /metrics: free slab pages (none left, and a new
 * entry evicts the least recently used), the times a worker's death
 * emptied it, and whether the subscription is up and alive.
 */

void
ngx_rbcs_cache_stats(ngx_rbcs_cache_t *cache, ngx_rbcs_cache_stats_t *st)
{
    ngx_msec_t            now;
    ngx_rbcs_cache_sh_t  *sh;

    now = ngx_rbcs_cache_now();

    ngx_rbcs_cache_lock(cache);

    sh = cache->sh;

    st->size = cache->shpool->end - cache->shpool->start;
    st->free = cache->shpool->pfree << ngx_pagesize_shift;
    st->emptied = sh->resets;
    st->subscribed = sh->sub_since != 0
                     && (ngx_msec_int_t) (now - sh->sub_alive)
                        < (ngx_msec_int_t) cache->alive;

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


size_t
ngx_rbcs_cache_node_size(ngx_str_t *account)
{
    return offsetof(ngx_rbcs_cache_node_t, data) + account->len;
}

