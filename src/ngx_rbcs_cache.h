
/*
 * RBCS: the pod-wide balance cache in shared memory.
 *
 * A hash index by account number, with an LRU queue for eviction.  An
 * entry is only ever replaced by a higher version.  An entry is trusted
 * for as long as the pod hears every change: the Redis subscription that
 * carries other pods' changes up since before the entry was known
 * current, and the cache generation (the database's record of changes
 * some pod could not publish) read within the last few seconds and not
 * moved since.  Otherwise an entry is trusted only for ttl after it was
 * known current, and never when it predates a sign of a missed change.
 */


#ifndef _NGX_RBCS_CACHE_H_INCLUDED_
#define _NGX_RBCS_CACHE_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_amount.h"


#define NGX_RBCS_CACHE_HIT       0   /* trusted */
#define NGX_RBCS_CACHE_STALE     1   /* present, not trusted: a version floor */
#define NGX_RBCS_CACHE_MISS      2


/*
 * An account's state as the balance read serves it: money in minor units
 * at the currency's scale.  A floor entry only says that the account is
 * at least at that version (a replayed transfer's balance of the past):
 * its other fields are not served.
 */
typedef struct {
    uint64_t                   version;
    ngx_rbcs_int128_t          balance;
    ngx_rbcs_uint128_t         held;
    ngx_rbcs_uint128_t         limit;
    ngx_uint_t                 scale;
    size_t                     currency_len;
    u_char                     currency[NGX_RBCS_CURRENCY_MAX_LEN];
    unsigned                   external:1;
    unsigned                   floor:1;
} ngx_rbcs_cache_entry_t;


/* what /metrics shows of the zone */
typedef struct {
    size_t                     size;        /* bytes of its slab pages */
    size_t                     free;        /* of them, in free pages */
    ngx_uint_t                 emptied;     /* times emptied */
    ngx_uint_t                 subscribed;  /* subscription up and alive */
} ngx_rbcs_cache_stats_t;


typedef struct ngx_rbcs_cache_sh_s  ngx_rbcs_cache_sh_t;

struct ngx_rbcs_cache_s {
    ngx_slab_pool_t           *shpool;
    ngx_rbcs_cache_sh_t       *sh;
    ngx_shm_zone_t            *shm_zone;
    ngx_msec_t                 ttl;
    ngx_msec_t                 max_age;
    ngx_msec_t                 alive;      /* heartbeat grace */
    ngx_msec_t                 poll;       /* generation read every; 0: off */
};


char *ngx_rbcs_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

ngx_uint_t ngx_rbcs_cache_get(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e);
ngx_uint_t ngx_rbcs_cache_put(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known);
ngx_msec_t ngx_rbcs_cache_now(void);
ngx_uint_t ngx_rbcs_cache_generation(ngx_rbcs_cache_t *cache,
    uint64_t count, uint64_t sum, ngx_msec_t started);
uint64_t ngx_rbcs_cache_generation_sum(ngx_rbcs_cache_t *cache);
void ngx_rbcs_cache_distrust(ngx_rbcs_cache_t *cache, ngx_msec_t since);
ngx_uint_t ngx_rbcs_cache_fresh(ngx_rbcs_cache_t *cache, ngx_msec_t known,
    uint64_t generation);
void ngx_rbcs_cache_subscription(ngx_rbcs_cache_t *cache, ngx_uint_t event);
void ngx_rbcs_cache_stats(ngx_rbcs_cache_t *cache,
    ngx_rbcs_cache_stats_t *st);
ngx_uint_t ngx_rbcs_cache_emptied_recently(ngx_rbcs_cache_t *cache);
size_t ngx_rbcs_cache_node_size(ngx_str_t *account);


#endif /* _NGX_RBCS_CACHE_H_INCLUDED_ */
