
/*
 * RBCS: HTTP helpers shared by the routes.
 */


#include <time.h>

#include "ngx_rbcs_http.h"
#include "ngx_rbcs_problem.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_time.h"


static void ngx_rbcs_http_query_cleanup(void *data);
static void ngx_rbcs_http_db_time(ngx_http_request_t *r, ngx_msec_t ms);
static void ngx_rbcs_http_write_done(ngx_rbcs_batch_op_t *op);
static void ngx_rbcs_http_write_cleanup(void *data);


typedef struct {
    const char                *code;
    const char                *title;
} ngx_rbcs_problem_title_t;


static ngx_int_t ngx_rbcs_out_grow(ngx_rbcs_out_t *out, size_t need);
static void ngx_rbcs_out_name(ngx_rbcs_out_t *out, const char *name);
static void *ngx_rbcs_http_alloc(void *ctx, size_t size);
static ngx_uint_t ngx_rbcs_http_json_type(ngx_http_request_t *r);


static ngx_str_t  ngx_rbcs_json_type = ngx_string("application/json");
static ngx_str_t  ngx_rbcs_problem_type =
    ngx_string("application/problem+json");


/* the problems of the errors nginx raises; the last one is any other's */

typedef struct {
    ngx_uint_t                 status;
    const char                *code;
    const char                *detail;
} ngx_rbcs_status_problem_t;


static ngx_rbcs_status_problem_t  ngx_rbcs_status_problems[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request", "the request is malformed" },
    { NGX_HTTP_NOT_FOUND, "not_found", NULL },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed", NULL },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "the request body is larger than the configured limit" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", NULL },
    { 429, "rate_limited", "the request rate is over the configured limit" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable; retry later" },
    { 0, "internal_error", NULL }
};


#define NGX_RBCS_PROBLEM_TITLE(code, title)  { #code, title },

static ngx_rbcs_problem_title_t  ngx_rbcs_problem_titles[] = {
    NGX_RBCS_PROBLEMS(NGX_RBCS_PROBLEM_TITLE)
    { NULL, NULL }
};


ngx_int_t
ngx_rbcs_http_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_rbcs_http_send_out(ngx_http_request_t *r, ngx_uint_t status,
    ngx_rbcs_out_t *out)
{
    if (out->failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_send(r, status, &ngx_rbcs_json_type, out->start,
                              out->pos - out->start);
}


/*
 * RFC 9457 problem details.  The document carries nothing specific to one
 * request, so a replayed rejection is the same document byte for byte.
 */

ngx_int_t
ngx_rbcs_http_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *detail)
{
    return ngx_rbcs_http_problem_str(r, status,
               &(ngx_str_t) { ngx_strlen(code), (u_char *) code },
               &(ngx_str_t) { ngx_strlen(detail), (u_char *) detail });
}


ngx_int_t
ngx_rbcs_http_problem_str(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *code, ngx_str_t *detail)
{
    u_char                     p[NGX_INT_T_LEN];
    const char                *title;
    ngx_rbcs_ctx_t            *ctx;
    ngx_rbcs_out_t             out;
    ngx_rbcs_problem_title_t  *t;

    title = "Error";

    /* the code outlives the answer (logs, metrics): the request's copy */

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);
    if (ctx) {
        ctx->code.data = ngx_pstrdup(r->pool, code);
        ctx->code.len = ctx->code.data ? code->len : 0;
    }

    for (t = ngx_rbcs_problem_titles; t->code; t++) {
        if (ngx_rbcs_str_is(code, t->code)) {
            title = t->title;
            break;
        }
    }

    if (ngx_rbcs_out_init(&out, r->pool, 256 + detail->len * 6) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_out_cstr(&out, "{\"type\":\"urn:rbcs:problem:");
    ngx_rbcs_out_raw(&out, code->data, code->len);
    ngx_rbcs_out_cstr(&out, "\"");
    ngx_rbcs_out_jstr(&out, "title", (u_char *) title, ngx_strlen(title));

    ngx_rbcs_out_name(&out, "status");
    ngx_rbcs_out_raw(&out, p, ngx_sprintf(p, "%ui", status) - p);

    ngx_rbcs_out_jstrv(&out, "detail", detail);
    ngx_rbcs_out_jstrv(&out, "code", code);
    ngx_rbcs_out_cstr(&out, "}");

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_send(r, status, &ngx_rbcs_problem_type, out.start,
                              out.pos - out.start);
}


/* a response header; key and value outlive the request */

ngx_int_t
ngx_rbcs_http_header(ngx_http_request_t *r, char *key, u_char *value,
    size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = value;
    h->value.len = len;

    return NGX_OK;
}


/* 503: nothing is known to be applied, or the outcome is unknown */

ngx_int_t
ngx_rbcs_http_unavailable(ngx_http_request_t *r, ngx_uint_t unknown)
{
    if (ngx_rbcs_http_header(r, "Retry-After", (u_char *) "1", 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
               "unavailable",
               unknown ? "the outcome is not known yet; retrying with the "
                         "same transactionId is safe"
                       : "the database is unavailable; retry later");
}


ngx_int_t
ngx_rbcs_http_not_allowed(ngx_http_request_t *r, char *allow)
{
    if (ngx_rbcs_http_header(r, "Allow", (u_char *) allow,
                             ngx_strlen(allow))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed",
                                 "the method is not allowed on this route");
}


/* error_page target: the error nginx itself raised, as problem details */

ngx_int_t
ngx_rbcs_http_problem_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_uint_t                  status;
    ngx_rbcs_status_problem_t  *p;

    status = r->err_status ? r->err_status : NGX_HTTP_INTERNAL_SERVER_ERROR;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        r->keepalive = 0;
    }

    for (p = ngx_rbcs_status_problems; p->status; p++) {
        if (p->status == status) {
            break;
        }
    }

    return ngx_rbcs_http_problem(r, status, p->code,
                                 p->detail ? p->detail
                                           : "the request could not be "
                                             "processed");
}


static void *
ngx_rbcs_http_alloc(void *ctx, size_t size)
{
    return ngx_palloc((ngx_pool_t *) ctx, size);
}


static ngx_uint_t
ngx_rbcs_http_json_type(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t  *ct;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    ct = &r->headers_in.content_type->value;
    p = ct->data;
    last = p + ct->len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t) (last - p) >= sizeof("application/json") - 1
        && ngx_strncasecmp(p, (u_char *) "application/json",
                           sizeof("application/json") - 1)
           == 0)
    {
        p += sizeof("application/json") - 1;

    } else if (r->method == NGX_HTTP_PATCH
               && (size_t) (last - p)
                  >= sizeof("application/merge-patch+json") - 1
               && ngx_strncasecmp(p, (u_char *) "application/merge-patch+json",
                                  sizeof("application/merge-patch+json") - 1)
                  == 0)
    {
        /* RFC 7396: a PATCH's JSON merge patch */
        p += sizeof("application/merge-patch+json") - 1;

    } else {
        return 0;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p == last || *p == ';';
}


/*
 * The request body, read completely into memory (client_body_buffer_size
 * is at least client_max_body_size in our configurations), parsed as one
 * strict JSON object.  Returns NGX_OK with the fields, or NGX_DECLINED
 * when the request was answered here; *rc is then what to finalize it with.
 */

ngx_int_t
ngx_rbcs_http_body(ngx_http_request_t *r, ngx_rbcs_json_field_t **fields,
    size_t *nfields, ngx_int_t *rc)
{
    int           jrc;
    size_t        len;
    u_char       *body, *p;
    ngx_buf_t    *b;
    const char   *err;
    ngx_chain_t  *cl;

    len = 0;

    if (r->request_body && r->request_body->bufs) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "rbcs: request body buffered to a file; set "
                              "client_body_buffer_size to "
                              "client_max_body_size");
                *rc = ngx_rbcs_http_problem(r,
                          NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                          "the request body could not be read");
                return NGX_DECLINED;
            }

            len += b->last - b->pos;
        }
    }

    if (len == 0) {
        *rc = ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid_request",
                                    "the request needs a JSON body");
        return NGX_DECLINED;
    }

    if (!ngx_rbcs_http_json_type(r)) {
        *rc = ngx_rbcs_http_problem(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    "unsupported_media_type",
                                    "the body must be application/json");
        return NGX_DECLINED;
    }

    if (r->request_body->bufs->next == NULL) {
        body = r->request_body->bufs->buf->pos;

    } else {
        body = ngx_pnalloc(r->pool, len);
        if (body == NULL) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_DECLINED;
        }

        p = body;
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    err = NULL;

    jrc = ngx_rbcs_json_parse_object(body, len, ngx_rbcs_http_alloc, r->pool,
                                     fields, nfields, &err);

    if (jrc == NGX_RBCS_JSON_ENOMEM) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (jrc != NGX_RBCS_JSON_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "rbcs: invalid JSON body: %s", err ? err : "");

        *rc = ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid_request",
                                    "the body must be a single valid JSON "
                                    "object");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Match the body's members against a route's fields.  Unknown, missing,
 * null or mistyped fields are invalid_request, except that an amount field
 * that is null or of another type than string or number is invalid_amount,
 * which ranks after every invalid_request.
 */

ngx_int_t
ngx_rbcs_http_fields(ngx_rbcs_json_field_t *fields, size_t nfields,
    ngx_rbcs_field_spec_t *spec, ngx_uint_t nspec, ngx_rbcs_field_t *out)
{
    size_t                  i, k;
    ngx_uint_t              j, bad_amount;
    ngx_rbcs_json_field_t  *f;

    bad_amount = 0;

    for (j = 0; j < nspec; j++) {
        out[j].present = 0;
        ngx_str_null(&out[j].value);
    }

    for (i = 0; i < nfields; i++) {
        f = &fields[i];

        for (j = 0; j < nspec; j++) {
            if (spec[j].name.len == f->key_len
                && ngx_memcmp(spec[j].name.data, f->key, f->key_len) == 0)
            {
                break;
            }
        }

        if (j == nspec) {
            return NGX_RBCS_INVALID_REQUEST;
        }

        if (spec[j].kind == NGX_RBCS_FIELD_AMOUNT) {
            if (f->type != NGX_RBCS_JSON_STRING
                && f->type != NGX_RBCS_JSON_NUMBER)
            {
                bad_amount = 1;
            }

        } else if (spec[j].kind == NGX_RBCS_FIELD_BOOL) {
            if (f->type != NGX_RBCS_JSON_TRUE
                && f->type != NGX_RBCS_JSON_FALSE)
            {
                return NGX_RBCS_INVALID_REQUEST;
            }

            out[j].present = 1;
            out[j].value.data = (u_char *)
                                (f->type == NGX_RBCS_JSON_TRUE ? "1" : "0");
            out[j].value.len = 1;
            continue;

        } else if (spec[j].kind == NGX_RBCS_FIELD_INTEGER) {
            if (f->type != NGX_RBCS_JSON_NUMBER || f->value_len == 0
                || f->value_len > 18)
            {
                return NGX_RBCS_INVALID_REQUEST;
            }

            for (k = 0; k < f->value_len; k++) {
                if (f->value[k] < '0' || f->value[k] > '9') {
                    return NGX_RBCS_INVALID_REQUEST;
                }
            }

        } else if (f->type != NGX_RBCS_JSON_STRING) {
            return NGX_RBCS_INVALID_REQUEST;
        }

        out[j].present = 1;
        out[j].value.data = (u_char *) f->value;
        out[j].value.len = f->value_len;
    }

    for (j = 0; j < nspec; j++) {
        if (spec[j].required && !out[j].present) {
            return NGX_RBCS_INVALID_REQUEST;
        }
    }

    return bad_amount ? NGX_RBCS_INVALID_AMOUNT : NGX_OK;
}


/* ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$ */

ngx_uint_t
ngx_rbcs_valid_id(u_char *p, size_t len)
{
    size_t  i;
    u_char  c;

    if (len == 0 || len > NGX_RBCS_ID_MAX_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = p[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9'))
        {
            continue;
        }

        if (i > 0 && (c == '_' || c == '.' || c == ':' || c == '-')) {
            continue;
        }

        return 0;
    }

    return 1;
}


ngx_uint_t
ngx_rbcs_valid_account(u_char *p, size_t len)
{
    if (len == sizeof("transactions") - 1
        && ngx_strncmp(p, "transactions", len) == 0)
    {
        return 0;
    }

    return ngx_rbcs_valid_id(p, len);
}


/*
 * The audit log's actor: the authenticated key id (it matches the id
 * pattern, so SQL needs no escaping for it), or NULL.
 */

ngx_str_t *
ngx_rbcs_http_actor(ngx_http_request_t *r)
{
    ngx_rbcs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);

    if (ctx == NULL || ctx->key_id.len == 0
        || !ngx_rbcs_valid_id(ctx->key_id.data, ctx->key_id.len))
    {
        return NULL;
    }

    return &ctx->key_id;
}


ngx_int_t
ngx_rbcs_atoui(ngx_str_t *s, ngx_uint_t *n)
{
    ngx_int_t  v;

    if (s == NULL || s->data == NULL || s->len == 0) {
        return NGX_ERROR;
    }

    v = ngx_atoi(s->data, s->len);
    if (v == NGX_ERROR) {
        return NGX_ERROR;
    }

    *n = (ngx_uint_t) v;

    return NGX_OK;
}


ngx_int_t
ngx_rbcs_out_init(ngx_rbcs_out_t *out, ngx_pool_t *pool, size_t size)
{
    out->start = ngx_pnalloc(pool, size);
    if (out->start == NULL) {
        return NGX_ERROR;
    }

    out->pos = out->start;
    out->end = out->start + size;
    out->pool = pool;
    out->failed = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_out_grow(ngx_rbcs_out_t *out, size_t need)
{
    size_t   size, used;
    u_char  *p;

    if (out->failed) {
        return NGX_ERROR;
    }

    if ((size_t) (out->end - out->pos) >= need) {
        return NGX_OK;
    }

    used = out->pos - out->start;
    size = ngx_max((size_t) (out->end - out->start) * 2, used + need + 256);

    p = ngx_pnalloc(out->pool, size);
    if (p == NULL) {
        out->failed = 1;
        return NGX_ERROR;
    }

    ngx_memcpy(p, out->start, used);

    out->start = p;
    out->pos = p + used;
    out->end = p + size;

    return NGX_OK;
}


void
ngx_rbcs_out_raw(ngx_rbcs_out_t *out, u_char *p, size_t len)
{
    if (ngx_rbcs_out_grow(out, len) != NGX_OK) {
        return;
    }

    out->pos = ngx_cpymem(out->pos, p, len);
}


void
ngx_rbcs_out_cstr(ngx_rbcs_out_t *out, const char *s)
{
    ngx_rbcs_out_raw(out, (u_char *) s, ngx_strlen(s));
}


/* a member name, with the comma that separates it from the previous one */

static void
ngx_rbcs_out_name(ngx_rbcs_out_t *out, const char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    if (ngx_rbcs_out_grow(out, len + 4) != NGX_OK) {
        return;
    }

    if (out->pos > out->start && out->pos[-1] != '{' && out->pos[-1] != '[')
    {
        *out->pos++ = ',';
    }

    *out->pos++ = '"';
    out->pos = ngx_cpymem(out->pos, name, len);
    *out->pos++ = '"';
    *out->pos++ = ':';
}


/*
 * The texts written are ASCII (ids, currencies, the module's own texts,
 * the ascii columns of the schema), so nginx's escaping of quotes,
 * backslashes and control characters is all they need.
 */

void
ngx_rbcs_out_jstr(ngx_rbcs_out_t *out, const char *name, u_char *p,
    size_t len)
{
    size_t  n;

    if (p == NULL) {
        ngx_rbcs_out_jnull(out, name);
        return;
    }

    ngx_rbcs_out_name(out, name);

    n = len + ngx_escape_json(NULL, p, len);

    if (ngx_rbcs_out_grow(out, n + 2) != NGX_OK) {
        return;
    }

    *out->pos++ = '"';
    out->pos = (u_char *) ngx_escape_json(out->pos, p, len);
    *out->pos++ = '"';
}


void
ngx_rbcs_out_jstrv(ngx_rbcs_out_t *out, const char *name, ngx_str_t *s)
{
    ngx_rbcs_out_jstr(out, name, s->data, s->len);
}


void
ngx_rbcs_out_jnull(ngx_rbcs_out_t *out, const char *name)
{
    ngx_rbcs_out_name(out, name);
    ngx_rbcs_out_cstr(out, "null");
}


void
ngx_rbcs_out_juint(ngx_rbcs_out_t *out, const char *name, ngx_str_t *digits)
{
    if (digits == NULL || digits->data == NULL) {
        ngx_rbcs_out_jnull(out, name);
        return;
    }

    ngx_rbcs_out_name(out, name);
    ngx_rbcs_out_raw(out, digits->data, digits->len);
}


/* a DECIMAL from the database, as a string at the currency's scale */

void
ngx_rbcs_out_amount(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *decimal, ngx_uint_t scale, ngx_uint_t negate)
{
    int                  negative;
    size_t               n;
    u_char               buf[NGX_RBCS_AMOUNT_MAX_LEN + 1];
    ngx_rbcs_uint128_t   units;

    if (decimal == NULL || decimal->data == NULL) {
        ngx_rbcs_out_jnull(out, name);
        return;
    }

    if (ngx_rbcs_amount_from_decimal(decimal->data, decimal->len,
                                     (unsigned) scale, &units, &negative)
        != NGX_RBCS_AMOUNT_OK)
    {
        out->failed = 1;
        return;
    }

    if (negate) {
        negative = !negative;
    }

    n = ngx_rbcs_amount_format(buf, units, (unsigned) scale, negative);

    ngx_rbcs_out_jstr(out, name, buf, n);
}


void
ngx_rbcs_out_datetime(ngx_rbcs_out_t *out, const char *name,
    ngx_str_t *datetime)
{
    size_t  n;
    u_char  buf[NGX_RBCS_TIME_LEN + 1];

    if (datetime == NULL || datetime->data == NULL) {
        ngx_rbcs_out_jnull(out, name);
        return;
    }

    n = ngx_rbcs_time_from_datetime(buf, datetime->data, datetime->len);
    if (n == 0) {
        out->failed = 1;
        return;
    }

    ngx_rbcs_out_jstr(out, name, buf, n);
}


/*
 * A string of the request's context, at offset data: $rbcs_key_id (the
 * key that signed the request) and $rbcs_transaction_id; empty when unset.
 */

ngx_int_t
ngx_rbcs_http_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t       *s;
    ngx_rbcs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    s = ctx ? (ngx_str_t *) ((u_char *) ctx + data) : NULL;

    v->len = s ? s->len : 0;
    v->data = v->len ? s->data : (u_char *) "";

    return NGX_OK;
}


ngx_int_t
ngx_rbcs_http_db_time_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char          *p;
    ngx_msec_t       ms;
    ngx_rbcs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);
    ms = ctx ? ctx->db_time : 0;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;
    v->len = ngx_sprintf(p, "%ui.%03ui", ms / 1000, ms % 1000) - p;

    return NGX_OK;
}


/*
 * A database query for a request: its results in the request's pool, and
 * forgotten by the pool if the request goes away first.
 */

ngx_rbcs_mysql_query_t *
ngx_rbcs_http_query(ngx_http_request_t *r, ngx_rbcs_mysql_handler_pt handler)
{
    ngx_http_cleanup_t      *cln;
    ngx_rbcs_mysql_query_t  *q;

    q = ngx_rbcs_mysql_create(r->pool, r->connection->log);
    if (q == NULL) {
        return NULL;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_rbcs_http_query_cleanup;
    cln->data = q;

    q->handler = handler;
    q->data = r;

    return q;
}


static void
ngx_rbcs_http_query_cleanup(void *data)
{
    ngx_rbcs_mysql_cancel(data);
}


/*
 * The one row a read by key answered, read by position: the SELECT's list
 * is the macro its indexes are kept with (NGX_RBCS_ACC_COLUMNS,
 * NGX_RBCS_TX_COLUMNS), and a row too short for them, narrower than n,
 * is refused here.  NULL with the answer in *rc: 503 when the database
 * did not answer, 404 with the code and detail given when there is no
 * such row, 500 for a row too short.
 */

ngx_str_t *
ngx_rbcs_http_row(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q,
    ngx_uint_t n, const char *code, const char *detail, ngx_int_t *rc)
{
    if (q->rc != NGX_RBCS_MYSQL_OK) {
        *rc = ngx_rbcs_http_unavailable(r, q->rc == NGX_RBCS_MYSQL_EUNKNOWN);
        return NULL;
    }

    if (ngx_rbcs_mysql_rows(q, 0) == 0) {
        *rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND, code, detail);
        return NULL;
    }

    if (ngx_rbcs_mysql_cell(q, 0, 0, n - 1) == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    return ngx_rbcs_mysql_cell(q, 0, 0, 0);
}


/* the request a query's handler answers, its database time counted */

ngx_http_request_t *
ngx_rbcs_http_query_request(ngx_rbcs_mysql_query_t *q)
{
    ngx_http_request_t  *r;

    r = q->data;

    ngx_rbcs_http_db_time(r, q->elapsed);

    return r;
}


static void
ngx_rbcs_http_db_time(ngx_http_request_t *r, ngx_msec_t ms)
{
    ngx_rbcs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);
    if (ctx) {
        ctx->db_time += ms;
    }
}


/*
 * A request's state change, with the actor of its audit log.  The
 * operation outlives the request if it must: its texts are its own copies
 * (ngx_rbcs_http_copy()).  NULL: out of memory.
 */

ngx_rbcs_batch_op_t *
ngx_rbcs_http_op(ngx_http_request_t *r, ngx_uint_t kind)
{
    ngx_str_t            *actor;
    ngx_rbcs_batch_op_t  *op;

    op = ngx_rbcs_batch_op_create(r->connection->log);
    if (op == NULL) {
        return NULL;
    }

    op->kind = kind;

    actor = ngx_rbcs_http_actor(r);

    if (actor && ngx_rbcs_http_copy(op, &op->actor, actor) != NGX_OK) {
        ngx_rbcs_batch_cancel(op);
        return NULL;
    }

    return op;
}


/* an operation's own copy of a text; an empty one stays unset */

ngx_int_t
ngx_rbcs_http_copy(ngx_rbcs_batch_op_t *op, ngx_str_t *dst, ngx_str_t *src)
{
    if (src->len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pstrdup(op->pool, src);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = src->len;

    return NGX_OK;
}


/*
 * A request's state change, queued on the write path.  NGX_DONE: the
 * handler answers later from the operation's row (a problem without one
 * is answered here); otherwise the status to finalize with (503 when the
 * write path cannot take it).  A request that goes away leaves the
 * operation to be written without an answer.
 */

typedef struct {
    ngx_http_request_t        *request;
    ngx_rbcs_batch_op_t       *op;
    ngx_rbcs_http_write_pt     handler;
} ngx_rbcs_http_write_t;


ngx_int_t
ngx_rbcs_http_write(ngx_http_request_t *r, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_http_write_pt handler)
{
    ngx_http_cleanup_t     *cln;
    ngx_rbcs_http_write_t  *wr;

    cln = ngx_http_cleanup_add(r, sizeof(ngx_rbcs_http_write_t));
    if (cln == NULL) {
        ngx_rbcs_batch_cancel(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wr = cln->data;
    wr->request = r;
    wr->op = op;
    wr->handler = handler;

    cln->handler = ngx_rbcs_http_write_cleanup;

    op->handler = ngx_rbcs_http_write_done;
    op->data = wr;

    if (ngx_rbcs_batch_submit(op) != NGX_OK) {
        wr->op = NULL;
        ngx_rbcs_batch_cancel(op);
        return ngx_rbcs_http_unavailable(r, 0);
    }

    return NGX_DONE;
}


static void
ngx_rbcs_http_write_done(ngx_rbcs_batch_op_t *op)
{
    ngx_int_t               rc;
    ngx_http_request_t     *r;
    ngx_rbcs_http_write_t  *wr;

    wr = op->data;
    wr->op = NULL;
    r = wr->request;

    ngx_rbcs_http_db_time(r, ngx_current_msec - op->start);

    if (op->rc != NGX_RBCS_MYSQL_OK) {
        rc = (op->rc == NGX_RBCS_MYSQL_ESQL)
             ? NGX_HTTP_INTERNAL_SERVER_ERROR
             : ngx_rbcs_http_unavailable(r, op->rc
                                            == NGX_RBCS_MYSQL_EUNKNOWN);

    } else if (op->row == NULL) {
        /* a problem the judge decided: it has no row to show */
        rc = ngx_rbcs_http_problem_str(r, op->status, &op->code,
                                       &op->detail);

    } else {
        rc = wr->handler(r, op->row, op->status);
    }

    ngx_rbcs_http_done(r, rc);
}


static void
ngx_rbcs_http_write_cleanup(void *data)
{
    ngx_rbcs_http_write_t  *wr = data;

    if (wr->op) {
        ngx_rbcs_batch_cancel(wr->op);
        wr->op = NULL;
    }
}


/* the end of a request whose answer came from an event */

void
ngx_rbcs_http_done(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    /* a failure without an answer yet still answers problem details */

    if (rc == NGX_HTTP_INTERNAL_SERVER_ERROR && !r->header_sent) {
        rc = ngx_rbcs_http_problem(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "internal_error",
                                   "the request could not be completed");
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the request's context, made on first use */

ngx_rbcs_ctx_t *
ngx_rbcs_ctx(ngx_http_request_t *r)
{
    ngx_rbcs_ctx_t   *ctx;
    struct timespec   ts;

    ctx = ngx_http_get_module_ctx(r, ngx_rbcs_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        ctx->start_us = (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;

        ngx_http_set_ctx(r, ctx, ngx_rbcs_module);
    }

    return ctx;
}
