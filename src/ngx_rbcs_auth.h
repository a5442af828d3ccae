
/*
 * RBCS: API keys and HMAC-SHA256 request signing.
 */


#ifndef _NGX_RBCS_AUTH_H_INCLUDED_
#define _NGX_RBCS_AUTH_H_INCLUDED_


#include "ngx_rbcs.h"


/* scopes: a key holds a set of them, a route needs one */
#define NGX_RBCS_AUTH_READ         0x01
#define NGX_RBCS_AUTH_TRANSFER     0x02
#define NGX_RBCS_AUTH_ADMIN        0x04

#define NGX_RBCS_AUTH_SECRET_MIN   32
#define NGX_RBCS_AUTH_SECRET_MAX   1024


typedef struct {
    ngx_str_t                  id;
    ngx_str_t                  secret;
    ngx_uint_t                 scopes;
    ngx_uint_t                 line;      /* in the keys file */
} ngx_rbcs_auth_key_t;


char *ngx_rbcs_auth_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_rbcs_auth_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_rbcs_auth_limit_check_keys(ngx_conf_t *cf,
    ngx_rbcs_main_conf_t *rmcf);
char *ngx_rbcs_conf_set_secret_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_rbcs_auth_check(ngx_http_request_t *r, ngx_uint_t scope,
    u_char *body, size_t len);
ngx_int_t ngx_rbcs_auth_check_body(ngx_http_request_t *r, ngx_uint_t scope);
ngx_int_t ngx_rbcs_auth_problem(ngx_http_request_t *r, ngx_int_t rc);



#endif /* _NGX_RBCS_AUTH_H_INCLUDED_ */
