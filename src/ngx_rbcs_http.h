
/*
 * RBCS: HTTP helpers shared by the routes: JSON and problem-details
 * responses, the request body, field validation.
 */


#ifndef _NGX_RBCS_HTTP_H_INCLUDED_
#define _NGX_RBCS_HTTP_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_json.h"
#include "ngx_rbcs_mysql.h"
#include "ngx_rbcs_batch.h"
#include "ngx_rbcs_metrics.h"


/* a 200 of a constant JSON text */
#define ngx_rbcs_http_send_json(r, text)                                     \
    ngx_rbcs_http_send(r, NGX_HTTP_OK,                                       \
                       &(ngx_str_t) ngx_string("application/json"),          \
                       (u_char *) text, sizeof(text) - 1)


/* field kinds for ngx_rbcs_http_fields() */
#define NGX_RBCS_FIELD_STRING   0
#define NGX_RBCS_FIELD_AMOUNT   1   /* a JSON string or number */
#define NGX_RBCS_FIELD_BOOL     2   /* true or false: value "1" or "0" */
#define NGX_RBCS_FIELD_INTEGER  3   /* a JSON number of digits only */

/* results of ngx_rbcs_http_fields() */
#define NGX_RBCS_INVALID_REQUEST  1
#define NGX_RBCS_INVALID_AMOUNT   2


/* the answer of a written operation from its row, with its status */
typedef ngx_int_t (*ngx_rbcs_http_write_pt)(ngx_http_request_t *r,
    ngx_str_t *row, ngx_uint_t status);


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 kind;
    ngx_uint_t                 required;
} ngx_rbcs_field_spec_t;


typedef struct {
    ngx_str_t                  value;    /* string text or number text */
    ngx_uint_t                 present;
} ngx_rbcs_field_t;


/* an output buffer that grows in the request pool */
typedef struct {
    u_char                    *start;
    u_char                    *pos;
    u_char                    *end;
    ngx_pool_t                *pool;
    ngx_uint_t                 failed;
} ngx_rbcs_out_t;


ngx_int_t ngx_rbcs_http_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, u_char *body, size_t len);
ngx_int_t ngx_rbcs_http_send_out(ngx_http_request_t *r, ngx_uint_t status,
    ngx_rbcs_out_t *out);
ngx_int_t ngx_rbcs_http_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *detail);
ngx_int_t ngx_rbcs_http_problem_str(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *code, ngx_str_t *detail);
ngx_int_t ngx_rbcs_http_header(ngx_http_request_t *r, char *key,
    u_char *value, size_t len);
ngx_int_t ngx_rbcs_http_unavailable(ngx_http_request_t *r,
    ngx_uint_t unknown);
ngx_rbcs_mysql_query_t *ngx_rbcs_http_query(ngx_http_request_t *r,
    ngx_rbcs_mysql_handler_pt handler);
ngx_str_t *ngx_rbcs_http_row(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q, ngx_uint_t n, const char *code,
    const char *detail, ngx_int_t *rc);
ngx_http_request_t *ngx_rbcs_http_query_request(ngx_rbcs_mysql_query_t *q);
ngx_rbcs_batch_op_t *ngx_rbcs_http_op(ngx_http_request_t *r,
    ngx_uint_t kind);
ngx_int_t ngx_rbcs_http_copy(ngx_rbcs_batch_op_t *op, ngx_str_t *dst,
    ngx_str_t *src);
ngx_int_t ngx_rbcs_http_write(ngx_http_request_t *r, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_http_write_pt handler);
void ngx_rbcs_http_done(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_rbcs_http_not_allowed(ngx_http_request_t *r, char *allow);
ngx_int_t ngx_rbcs_http_problem_handler(ngx_http_request_t *r);

ngx_int_t ngx_rbcs_http_body(ngx_http_request_t *r,
    ngx_rbcs_json_field_t **fields, size_t *nfields, ngx_int_t *rc);
ngx_int_t ngx_rbcs_http_fields(ngx_rbcs_json_field_t *fields,
    size_t nfields, ngx_rbcs_field_spec_t *spec, ngx_uint_t nspec,
    ngx_rbcs_field_t *out);

ngx_uint_t ngx_rbcs_valid_id(u_char *p, size_t len);
ngx_uint_t ngx_rbcs_valid_account(u_char *p, size_t len);

ngx_int_t ngx_rbcs_out_init(ngx_rbcs_out_t *out, ngx_pool_t *pool,
    size_t size);
void ngx_rbcs_out_raw(ngx_rbcs_out_t *out, u_char *p, size_t len);
void ngx_rbcs_out_cstr(ngx_rbcs_out_t *out, const char *s);
void ngx_rbcs_out_jstr(ngx_rbcs_out_t *out, const char *name, u_char *p,
    size_t len);
void ngx_rbcs_out_jstrv(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *s);
void ngx_rbcs_out_jnull(ngx_rbcs_out_t *out, const char *name);
void ngx_rbcs_out_juint(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *digits);
void ngx_rbcs_out_amount(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *decimal, ngx_uint_t scale, ngx_uint_t negate);
void ngx_rbcs_out_datetime(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *datetime);

ngx_int_t ngx_rbcs_atoui(ngx_str_t *s, ngx_uint_t *n);
ngx_str_t *ngx_rbcs_http_actor(ngx_http_request_t *r);

ngx_int_t ngx_rbcs_http_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_rbcs_http_db_time_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/*
 * A read for a request: the SQL printed from fmt within size bytes, data
 * the route's own state (when not NULL).  NGX_DONE, with the query in *qp
 * when asked for, or the status to finalize with.  Inline: where the
 * routes' sources are compiled into the fuzz harness of request bodies
 * (t/fuzz/fuzz_body.c), the query and its run are the harness's own.
 */

static ngx_inline ngx_int_t
ngx_rbcs_http_read(ngx_http_request_t *r, ngx_rbcs_mysql_handler_pt handler,
    void *data, ngx_rbcs_mysql_query_t **qp, size_t size, const char *fmt,
    ...)
{
    va_list                  args;
    ngx_rbcs_ctx_t          *ctx;
    ngx_rbcs_mysql_query_t  *q;

    q = ngx_rbcs_http_query(r, handler);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.data = ngx_pnalloc(r->pool, size);
    if (q->sql.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    q->sql.len = ngx_vslprintf(q->sql.data, q->sql.data + size, fmt, args)
                 - q->sql.data;
    va_end(args);

    if (q->sql.len == size) {
        /* the SQL may have been cut short: it is not sent */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "rbcs: a read's SQL does not fit in %uz bytes", size);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->idempotent = 1;

    if (data) {
        ctx = ngx_rbcs_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->data = data;
    }

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        return ngx_rbcs_http_unavailable(r, 0);
    }

    if (qp) {
        *qp = q;
    }

    return NGX_DONE;
}


#endif /* _NGX_RBCS_HTTP_H_INCLUDED_ */
