
/*
 * RBCS: transfers between two accounts, holds and their capture or void,
 * and the transaction resource.
 */


#ifndef _NGX_RBCS_TRANSFER_H_INCLUDED_
#define _NGX_RBCS_TRANSFER_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_json.h"


ngx_int_t ngx_rbcs_transfer_post(ngx_http_request_t *r,
    ngx_rbcs_json_field_t *fields, size_t nfields);
ngx_int_t ngx_rbcs_transfer_get(ngx_http_request_t *r, ngx_str_t *id);
ngx_int_t ngx_rbcs_transfer_init_process(ngx_cycle_t *cycle,
    ngx_uint_t scanner);
ngx_int_t ngx_rbcs_transfer_resolve(ngx_http_request_t *r, ngx_str_t *id,
    ngx_uint_t capture, ngx_rbcs_json_field_t *fields, size_t nfields);


#endif /* _NGX_RBCS_TRANSFER_H_INCLUDED_ */
