
/*
 * RBCS: the balance read path (zone, then Redis, then MariaDB) and the
 * spreading of committed balances to the zone and Redis.
 */


#ifndef _NGX_RBCS_BALANCE_H_INCLUDED_
#define _NGX_RBCS_BALANCE_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_mysql.h"


/* an account's state after a committed write, as texts */
typedef struct {
    ngx_str_t                  account;
    ngx_str_t                  version;
    ngx_str_t                  balance;     /* DECIMAL text */
    ngx_uint_t                 scale;
    ngx_str_t                  currency;
} ngx_rbcs_balance_change_t;


ngx_int_t ngx_rbcs_balance_get(ngx_http_request_t *r, ngx_str_t *number);
ngx_int_t ngx_rbcs_balance_send_row(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q, ngx_uint_t set, ngx_uint_t row,
    ngx_uint_t col);
ngx_int_t ngx_rbcs_balance_stale(ngx_http_request_t *r, ngx_str_t *number);
void ngx_rbcs_balance_update(ngx_log_t *log, ngx_str_t *account,
    ngx_str_t *version, ngx_str_t *balance, ngx_uint_t scale,
    ngx_str_t *currency, ngx_uint_t current);
void ngx_rbcs_balance_commit(ngx_log_t *log, ngx_rbcs_balance_change_t *c,
    ngx_uint_t n, ngx_pool_t *pool);


#endif /* _NGX_RBCS_BALANCE_H_INCLUDED_ */
