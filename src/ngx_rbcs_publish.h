
/*
 * RBCS: committed account states to the pod's zone and to Redis (and so
 * to the other pods); the zone entry made from an account row or from
 * Redis's text, and the JSON members a balance read serves from it.
 */


#ifndef _NGX_RBCS_PUBLISH_H_INCLUDED_
#define _NGX_RBCS_PUBLISH_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_amount.h"


/*
 * The state text of an entry, in Redis and in channel messages:
 * "<balance>:<held>:<limit>:<S|E>", amounts at the currency's scale, the
 * balance with a '-' when negative
 */
#define NGX_RBCS_PUBLISH_STATE_LEN  (3 * NGX_RBCS_AMOUNT_MAX_LEN + 8)

/* the members written by ngx_rbcs_publish_json(), at most */
#define NGX_RBCS_PUBLISH_JSON_LEN   (4 * NGX_RBCS_AMOUNT_MAX_LEN + 160)


/* an account's state after a committed write */
typedef struct {
    ngx_str_t                  account;
    ngx_rbcs_cache_entry_t     entry;
} ngx_rbcs_publish_change_t;


ngx_int_t ngx_rbcs_publish_commit(ngx_log_t *log,
    ngx_rbcs_publish_change_t *c, ngx_uint_t n, ngx_pool_t *pool);
void ngx_rbcs_publish_current(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known);
void ngx_rbcs_publish_floor(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version);

ngx_int_t ngx_rbcs_publish_row_entry(ngx_rbcs_cache_entry_t *e,
    ngx_str_t *row);
ngx_int_t ngx_rbcs_publish_state_entry(ngx_rbcs_cache_entry_t *e,
    uint64_t version, ngx_str_t *state, ngx_uint_t scale,
    ngx_str_t *currency);
size_t ngx_rbcs_publish_state(u_char *buf, ngx_rbcs_cache_entry_t *e);
u_char *ngx_rbcs_publish_json(u_char *p, ngx_rbcs_cache_entry_t *e);


#endif /* _NGX_RBCS_PUBLISH_H_INCLUDED_ */
