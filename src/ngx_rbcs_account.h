
/*
 * RBCS: accounts: opening, the account resource, the balance, the history.
 */


#ifndef _NGX_RBCS_ACCOUNT_H_INCLUDED_
#define _NGX_RBCS_ACCOUNT_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_json.h"


/*
 * An account's row by its (validated) number, read by the NGX_RBCS_ACC_*
 * indexes of ngx_rbcs_batch.h
 */
#define NGX_RBCS_ACC_SELECT                                                  \
    "SELECT " NGX_RBCS_ACC_COLUMNS " FROM accounts WHERE account_number = '%V'"

/* the code and detail of the problem of an account that does not exist */
#define NGX_RBCS_NO_ACCOUNT  "account_not_found", "the account does not exist"


ngx_int_t ngx_rbcs_account_open(ngx_http_request_t *r,
    ngx_rbcs_json_field_t *fields, size_t nfields);
ngx_int_t ngx_rbcs_account_get(ngx_http_request_t *r, ngx_str_t *number);
ngx_int_t ngx_rbcs_account_patch(ngx_http_request_t *r, ngx_str_t *number,
    ngx_rbcs_json_field_t *fields, size_t nfields);
ngx_int_t ngx_rbcs_account_balance_at(ngx_http_request_t *r,
    ngx_str_t *number, ngx_str_t *at);
ngx_int_t ngx_rbcs_account_holds(ngx_http_request_t *r, ngx_str_t *number);
ngx_int_t ngx_rbcs_account_history(ngx_http_request_t *r,
    ngx_str_t *number);
ngx_int_t ngx_rbcs_account_ready(ngx_http_request_t *r);


#endif /* _NGX_RBCS_ACCOUNT_H_INCLUDED_ */
