
/*
 * RBCS: the balance read path (zone, then Redis, then MariaDB).
 */


#ifndef _NGX_RBCS_BALANCE_H_INCLUDED_
#define _NGX_RBCS_BALANCE_H_INCLUDED_


#include "ngx_rbcs.h"


ngx_int_t ngx_rbcs_balance_get(ngx_http_request_t *r, ngx_str_t *number);


#endif /* _NGX_RBCS_BALANCE_H_INCLUDED_ */
