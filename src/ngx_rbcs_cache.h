
/*
 * RBCS: the pod-wide balance cache in shared memory.
 *
 * An rbtree keyed by account number, with an LRU queue for eviction.  An
 * entry is only ever replaced by a higher version.  How far an entry is
 * trusted depends on the Redis subscription that carries other pods'
 * changes: while it is up, an entry filled since it came up is trusted
 * (up to max_age); otherwise only for ttl after it was filled.
 */


#ifndef _NGX_RBCS_CACHE_H_INCLUDED_
#define _NGX_RBCS_CACHE_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_amount.h"


#define NGX_RBCS_CACHE_HIT       0   /* trusted */
#define NGX_RBCS_CACHE_STALE     1   /* present, not trusted: a version floor */
#define NGX_RBCS_CACHE_MISS      2


typedef struct {
    uint64_t                   version;
    ngx_rbcs_uint128_t         units;
    ngx_uint_t                 scale;
    size_t                     currency_len;
    u_char                     currency[NGX_RBCS_CURRENCY_MAX_LEN];
} ngx_rbcs_cache_entry_t;


typedef struct ngx_rbcs_cache_sh_s  ngx_rbcs_cache_sh_t;

struct ngx_rbcs_cache_s {
    ngx_slab_pool_t           *shpool;
    ngx_rbcs_cache_sh_t       *sh;
    ngx_shm_zone_t            *shm_zone;
    ngx_msec_t                 ttl;
    ngx_msec_t                 max_age;
    ngx_msec_t                 alive;      /* heartbeat grace */
};


char *ngx_rbcs_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

ngx_uint_t ngx_rbcs_cache_get(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e);
void ngx_rbcs_cache_put(ngx_rbcs_cache_t *cache, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_uint_t current);
void ngx_rbcs_cache_subscription(ngx_rbcs_cache_t *cache, ngx_uint_t event);
ngx_uint_t ngx_rbcs_cache_emptied_recently(ngx_rbcs_cache_t *cache);
size_t ngx_rbcs_cache_node_size(ngx_str_t *account);


#endif /* _NGX_RBCS_CACHE_H_INCLUDED_ */
