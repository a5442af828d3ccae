
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of request bodies: the strict JSON parser
 * (src/ngx_rbcs_json.c) and then a route's handler with its field rules
 * (src/ngx_rbcs_account.c, src/ngx_rbcs_transfer.c, #included here for
 * their tables and static functions), up to the operation handed to the
 * write path or the read it starts, which stop here: the operation's
 * texts are checked and it is freed.
 *
 * The input's first byte picks the route (POST /accounts, PATCH
 * /accounts/{n}, POST /transfers, capture, void); the rest is the body.
 */


#include "fuzz_ngx.h"
#include "ngx_rbcs_json.h"


/* the handlers' ways out, taken here */

#define ngx_rbcs_http_problem     fuzz_http_problem
#define ngx_rbcs_http_write       fuzz_http_write
#define ngx_rbcs_http_query       fuzz_http_query
#define ngx_rbcs_http_unavailable fuzz_http_unavailable
#define ngx_rbcs_mysql_run        fuzz_mysql_run

#include "ngx_rbcs_account.c"
#include "ngx_rbcs_transfer.c"

#undef ngx_rbcs_http_problem
#undef ngx_rbcs_http_write
#undef ngx_rbcs_http_query
#undef ngx_rbcs_http_unavailable
#undef ngx_rbcs_mysql_run


#define FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)


static ngx_uint_t  fuzz_answered;


ngx_int_t
fuzz_http_problem(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    const char *detail)
{
    FUZZ_CHECK(status >= 400 && status < 600 && code && detail);
    fuzz_answered++;
    return NGX_DONE;
}


ngx_int_t
fuzz_http_unavailable(ngx_http_request_t *r, ngx_uint_t unknown)
{
    fuzz_answered++;
    return NGX_DONE;
}


static void
fuzz_check_str(ngx_str_t *s)
{
    /* each text the operation carries is readable to its length */
    if (s->len) {
        FUZZ_CHECK(s->data != NULL);
        (void) ngx_hash_key(s->data, s->len);
    }
}


ngx_int_t
fuzz_http_write(ngx_http_request_t *r, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_http_write_pt handler)
{
    FUZZ_CHECK(ngx_rbcs_valid_account(op->source.data, op->source.len));

    if (op->kind == NGX_RBCS_LEDGER_TRANSFER) {
        FUZZ_CHECK(ngx_rbcs_valid_id(op->id.data, op->id.len));
        FUZZ_CHECK(ngx_rbcs_valid_account(op->destination.data,
                                          op->destination.len));
        FUZZ_CHECK(ngx_rbcs_amount_check_grammar(op->amount.data,
                                                 op->amount.len, NULL, NULL,
                                                 NULL)
                   == NGX_RBCS_AMOUNT_OK);
        FUZZ_CHECK(op->amount_key.len >= 1
                   && op->amount_key.len <= op->amount.len + 3
                                            + NGX_INT_T_LEN);
    }

    fuzz_check_str(&op->id);
    fuzz_check_str(&op->destination);
    fuzz_check_str(&op->amount);
    fuzz_check_str(&op->amount_key);
    fuzz_check_str(&op->initial);
    fuzz_check_str(&op->limit);
    fuzz_check_str(&op->actor);

    fuzz_answered++;
    ngx_rbcs_batch_cancel(op);

    return NGX_DONE;
}


ngx_rbcs_mysql_query_t *
fuzz_http_query(ngx_http_request_t *r, ngx_rbcs_mysql_handler_pt handler)
{
    return ngx_pcalloc(r->pool, sizeof(ngx_rbcs_mysql_query_t));
}


ngx_int_t
fuzz_mysql_run(ngx_rbcs_mysql_query_t *q)
{
    /* ids reach SQL unescaped: only what valid_id lets through may */
    FUZZ_CHECK(q->sql.len > 0 && ngx_strlchr(q->sql.data,
                                             q->sql.data + q->sql.len, '\\')
                                 == NULL);
    fuzz_answered++;
    return NGX_OK;
}


static void *
fuzz_alloc(void *ctx, size_t size)
{
    return ngx_palloc((ngx_pool_t *) ctx, size);
}


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const u_char *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const u_char *data, size_t size)
{
    int                     jrc;
    u_char                 *body;
    size_t                  nfields, i;
    ngx_int_t               rc;
    ngx_str_t               number = ngx_string("acc-1");
    ngx_str_t               id = ngx_string("tx-1");
    ngx_uint_t              route;
    ngx_pool_t             *pool;
    const char             *err;
    ngx_http_request_t     *r;
    ngx_rbcs_json_field_t  *fields;

    if (size < 1) {
        return 0;
    }

    route = data[0] % 5;

    pool = ngx_create_pool(1024, &fuzz_log);
    FUZZ_CHECK(pool != NULL);

    /* the body as the request has it: a buffer of exactly its length */
    body = ngx_pnalloc(pool, size - 1);
    FUZZ_CHECK(body != NULL || size == 1);
    ngx_memcpy(body, data + 1, size - 1);

    err = NULL;
    jrc = ngx_rbcs_json_parse_object(body, size - 1, fuzz_alloc, pool,
                                     &fields, &nfields, &err);

    if (jrc != NGX_RBCS_JSON_OK) {
        FUZZ_CHECK(jrc == NGX_RBCS_JSON_EINVALID && fields == NULL
                   && nfields == 0 && err != NULL);
        ngx_destroy_pool(pool);
        return 0;
    }

    for (i = 0; i < nfields; i++) {
        (void) ngx_hash_key((u_char *) fields[i].key, fields[i].key_len);
        if (fields[i].value) {
            (void) ngx_hash_key((u_char *) fields[i].value,
                                fields[i].value_len);
        }
    }

    r = fuzz_request(pool);
    FUZZ_CHECK(r != NULL);

    fuzz_answered = 0;

    switch (route) {
    case 0:
        rc = ngx_rbcs_account_open(r, fields, nfields);
        break;
    case 1:
        rc = ngx_rbcs_account_patch(r, &number, fields, nfields);
        break;
    case 2:
        rc = ngx_rbcs_transfer_post(r, fields, nfields);
        break;
    default:
        rc = ngx_rbcs_transfer_resolve(r, &id, route == 3, fields, nfields);
        break;
    }

    FUZZ_CHECK(rc == NGX_DONE && fuzz_answered == 1);

    ngx_destroy_pool(pool);

    return 0;
}
