
/*
 * RBCS: the content handler; maps method and path to a route.
 */


#ifndef _NGX_RBCS_ROUTER_H_INCLUDED_
#define _NGX_RBCS_ROUTER_H_INCLUDED_


#include "ngx_rbcs.h"


ngx_int_t ngx_rbcs_router_handler(ngx_http_request_t *r);
ngx_int_t ngx_rbcs_problem_handler(ngx_http_request_t *r);


#endif /* _NGX_RBCS_ROUTER_H_INCLUDED_ */
