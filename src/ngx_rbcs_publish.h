
/*
 * RBCS: committed balances to the pod's zone and to Redis (and so to the
 * other pods), and the zone entry made from a balance's texts.
 */


#ifndef _NGX_RBCS_PUBLISH_H_INCLUDED_
#define _NGX_RBCS_PUBLISH_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_cache.h"


/* an account's state after a committed write, as texts */
typedef struct {
    ngx_str_t                  account;
    ngx_str_t                  version;
    ngx_str_t                  balance;     /* DECIMAL text */
    ngx_uint_t                 scale;
    ngx_str_t                  currency;
} ngx_rbcs_publish_change_t;


void ngx_rbcs_publish_update(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version, ngx_str_t *balance, ngx_uint_t scale,
    ngx_str_t *currency, ngx_msec_t known);
ngx_int_t ngx_rbcs_publish_commit(ngx_log_t *log,
    ngx_rbcs_publish_change_t *c, ngx_uint_t n, ngx_pool_t *pool);
void ngx_rbcs_publish_current(ngx_log_t *log, ngx_str_t *account,
    ngx_rbcs_cache_entry_t *e, ngx_msec_t known);
ngx_int_t ngx_rbcs_publish_entry(ngx_rbcs_cache_entry_t *e,
    ngx_str_t *version, ngx_str_t *decimal, ngx_uint_t scale,
    ngx_str_t *currency, ngx_uint_t exact);


#endif /* _NGX_RBCS_PUBLISH_H_INCLUDED_ */
