
/*
 * RBCS: accounts: opening, the account resource, the balance, the history,
 * and the readiness probe (a round trip through the pool).
 */


#include "ngx_rbcs_account.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_publish.h"
#include "ngx_rbcs_time.h"


#define NGX_RBCS_READY            "{\"status\":\"ready\"}"

#define NGX_RBCS_HISTORY_DEFAULT  50
#define NGX_RBCS_HISTORY_MAX      500

/*
 * The columns each read looks up by name in its second result set, once:
 * the macros index the lists below, not the SELECT.
 */
#define NGX_RBCS_ENT_TYPE         0
#define NGX_RBCS_ENT_TXID         1
#define NGX_RBCS_ENT_PEER         2
#define NGX_RBCS_ENT_AMOUNT       3
#define NGX_RBCS_ENT_BALANCE      4
#define NGX_RBCS_ENT_CREATED      5
#define NGX_RBCS_ENT_VERSION      6
#define NGX_RBCS_ENT_N            7

#define NGX_RBCS_AT_BALANCE       0
#define NGX_RBCS_AT_VERSION       1
#define NGX_RBCS_AT_N             2

#define NGX_RBCS_HOLD_ID          0
#define NGX_RBCS_HOLD_SOURCE      1
#define NGX_RBCS_HOLD_DESTINATION 2
#define NGX_RBCS_HOLD_AMOUNT      3
#define NGX_RBCS_HOLD_EXPIRES     4
#define NGX_RBCS_HOLD_CREATED     5
#define NGX_RBCS_HOLD_N           6


typedef struct ngx_rbcs_account_ctx_s  ngx_rbcs_account_ctx_t;

/* a part of a read's answer, from a row of its set 1; NGX_ERROR: 500 */
typedef ngx_int_t (*ngx_rbcs_account_write_pt)(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);


/*
 * A read that answered the account's row (result set 0) and rows with the
 * named columns about it (set 1): a page of them, as the array list with
 * the cursor next writes, or (list NULL) the one row item writes, its
 * absence a 404 as the account's is.
 */

typedef struct {
    ngx_str_t                   *columns;
    const char                  *detail;     /* of the 404 */
    ngx_uint_t                   currency;   /* the answer names it */
    size_t                       room;       /* the answer's, per row */
    const char                  *list;
    ngx_rbcs_account_write_pt    item;
    ngx_rbcs_account_write_pt    next;
} ngx_rbcs_account_read_t;


struct ngx_rbcs_account_ctx_s {
    ngx_rbcs_account_read_t     *read;
    ngx_uint_t                   limit;
    ngx_uint_t                   scale;
    ngx_uint_t                   col[NGX_RBCS_ENT_N];    /* the most */
    u_char                       at[NGX_RBCS_TIME_LEN];
};


static void ngx_rbcs_account_get_done(ngx_rbcs_mysql_query_t *q);
static ngx_rbcs_account_ctx_t *ngx_rbcs_account_paged(ngx_http_request_t *r,
    ngx_str_t *number, ngx_rbcs_account_read_t *rd, ngx_int_t *rc);
static ngx_int_t ngx_rbcs_account_read(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q, ngx_rbcs_account_ctx_t *ctx,
    ngx_rbcs_out_t *out, ngx_int_t *rc);
static void ngx_rbcs_account_read_done(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_account_head(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_uint_t currency);
static ngx_int_t ngx_rbcs_account_entry(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);
static ngx_int_t ngx_rbcs_account_entry_next(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);
static ngx_int_t ngx_rbcs_account_at(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);
static ngx_int_t ngx_rbcs_account_hold(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);
static ngx_int_t ngx_rbcs_account_hold_next(ngx_rbcs_out_t *out,
    ngx_str_t *row, ngx_rbcs_account_ctx_t *ctx);
static void ngx_rbcs_account_ready_done(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_account_spread(ngx_http_request_t *r,
    ngx_str_t *row, ngx_msec_t known);
static ngx_int_t ngx_rbcs_account_send(ngx_http_request_t *r,
    ngx_str_t *row, ngx_uint_t status);


static ngx_str_t  ngx_rbcs_account_entry_columns[] = {
    ngx_string("type"),
    ngx_string("transaction_id"),
    ngx_string("counterparty"),
    ngx_string("amount"),
    ngx_string("balance_after"),
    ngx_string("created_at"),
    ngx_string("version"),
    ngx_null_string
};

static ngx_str_t  ngx_rbcs_account_at_columns[] = {
    ngx_string("balance_after"),
    ngx_string("version"),
    ngx_null_string
};

static ngx_str_t  ngx_rbcs_account_hold_columns[] = {
    ngx_string("transaction_id"),
    ngx_string("source_account"),
    ngx_string("destination_account"),
    ngx_string("amount"),
    ngx_string("expires_at"),
    ngx_string("created_at"),
    ngx_null_string
};


static ngx_rbcs_account_read_t  ngx_rbcs_account_history_read = {
    ngx_rbcs_account_entry_columns, "the account does not exist", 1, 256,
    ",\"entries\":[", ngx_rbcs_account_entry, ngx_rbcs_account_entry_next
};

static ngx_rbcs_account_read_t  ngx_rbcs_account_at_read = {
    ngx_rbcs_account_at_columns, "the account does not exist at that time",
    1, 64, NULL, ngx_rbcs_account_at, NULL
};

static ngx_rbcs_account_read_t  ngx_rbcs_account_holds_read = {
    ngx_rbcs_account_hold_columns, "the account does not exist", 0, 320,
    ",\"holds\":[", ngx_rbcs_account_hold, ngx_rbcs_account_hold_next
};


static ngx_rbcs_field_spec_t  ngx_rbcs_account_fields[] = {
    { ngx_string("accountNumber"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("currency"), NGX_RBCS_FIELD_STRING, 0 },
    { ngx_string("initialBalance"), NGX_RBCS_FIELD_AMOUNT, 0 },
    { ngx_string("kind"), NGX_RBCS_FIELD_STRING, 0 },
    { ngx_string("overdraftLimit"), NGX_RBCS_FIELD_AMOUNT, 0 },
};


static ngx_rbcs_field_spec_t  ngx_rbcs_account_patch_fields[] = {
    { ngx_string("overdraftLimit"), NGX_RBCS_FIELD_AMOUNT, 1 },
};


ngx_int_t
ngx_rbcs_account_open(ngx_http_request_t *r, ngx_rbcs_json_field_t *fields,
    size_t nfields)
{
    ngx_int_t              rc;
    ngx_str_t             *cur, *init, *limit;
    ngx_uint_t             external;
    ngx_rbcs_field_t       f[5];
    ngx_rbcs_batch_op_t   *op;
    ngx_rbcs_uint128_t     units;
    ngx_rbcs_currency_t   *currency;
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    rc = ngx_rbcs_http_fields(fields, nfields, ngx_rbcs_account_fields, 5, f);

    if (rc == NGX_RBCS_INVALID_REQUEST
        || !ngx_rbcs_valid_account(f[0].value.data, f[0].value.len))
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_request",
                   "accountNumber is required and must match "
                   "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$; currency, "
                   "initialBalance, kind and overdraftLimit are optional; "
                   "no other field is known");
    }

    external = f[3].present && ngx_rbcs_str_is(&f[3].value, "EXTERNAL");

    if (f[3].present && !external
        && !ngx_rbcs_str_is(&f[3].value, "STANDARD"))
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "kind must be STANDARD or EXTERNAL");
    }

    if (external && f[4].present) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "an EXTERNAL account has no "
                                     "overdraftLimit");
    }

    cur = f[1].present ? &f[1].value : &rmcf->default_currency;

    currency = ngx_rbcs_currency_find(rmcf, cur->data, cur->len);
    if (currency == NULL) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "unsupported_currency",
                                     "the currency is not supported");
    }

    init = f[2].present ? &f[2].value : &(ngx_str_t) ngx_string("0");
    limit = f[4].present ? &f[4].value : &(ngx_str_t) ngx_string("0");

    if (rc == NGX_RBCS_INVALID_AMOUNT
        || ngx_rbcs_amount_parse(init->data, init->len,
                                 (unsigned) currency->scale, 1, &units)
           != NGX_RBCS_AMOUNT_OK
        || ngx_rbcs_amount_parse(limit->data, limit->len,
                                 (unsigned) currency->scale, 1, &units)
           != NGX_RBCS_AMOUNT_OK)
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_amount",
                   "initialBalance and overdraftLimit must be non-negative "
                   "decimals within the currency's scale");
    }

    op = ngx_rbcs_http_op(r, NGX_RBCS_LEDGER_OPEN);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->currency = currency;
    op->external = external;

    if (ngx_rbcs_http_copy(op, &op->source, &f[0].value) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->initial, init) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->limit, limit) != NGX_OK)
    {
        ngx_rbcs_batch_cancel(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_write(r, op, ngx_rbcs_account_send);
}


/*
 * PATCH /accounts/{n}: the overdraft limit, set by the write path (the
 * account's scale and kind are known there).  The amount's grammar is
 * checked here: a bad one changes nothing and needs no account.
 */

ngx_int_t
ngx_rbcs_account_patch(ngx_http_request_t *r, ngx_str_t *number,
    ngx_rbcs_json_field_t *fields, size_t nfields)
{
    ngx_int_t              rc;
    ngx_rbcs_field_t       f[1];
    ngx_rbcs_batch_op_t   *op;

    rc = ngx_rbcs_http_fields(fields, nfields, ngx_rbcs_account_patch_fields,
                              1, f);

    if (rc == NGX_RBCS_INVALID_REQUEST) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "overdraftLimit is required; no other "
                                     "field is known");
    }

    if (rc == NGX_RBCS_INVALID_AMOUNT
        || ngx_rbcs_amount_check_grammar(f[0].value.data, f[0].value.len,
                                         NULL, NULL, NULL)
           != NGX_RBCS_AMOUNT_OK)
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_amount",
                                     "overdraftLimit must be a non-negative "
                                     "decimal within the currency's scale");
    }

    if (!ngx_rbcs_valid_account(number->data, number->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     NGX_RBCS_NO_ACCOUNT);
    }

    op = ngx_rbcs_http_op(r, NGX_RBCS_LEDGER_LIMIT);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_rbcs_http_copy(op, &op->source, number) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->limit, &f[0].value) != NGX_OK)
    {
        ngx_rbcs_batch_cancel(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_write(r, op, ngx_rbcs_account_send);
}


ngx_int_t
ngx_rbcs_account_get(ngx_http_request_t *r, ngx_str_t *number)
{
    if (!ngx_rbcs_valid_account(number->data, number->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     NGX_RBCS_NO_ACCOUNT);
    }

    return ngx_rbcs_http_read(r, ngx_rbcs_account_get_done, NULL, NULL,
                              sizeof(NGX_RBCS_ACC_SELECT) + number->len,
                              NGX_RBCS_ACC_SELECT, number);
}


static void
ngx_rbcs_account_get_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_str_t           *row;
    ngx_http_request_t  *r;

    r = ngx_rbcs_http_query_request(q);

    row = ngx_rbcs_http_row(r, q, NGX_RBCS_ACC_N, NGX_RBCS_NO_ACCOUNT, &rc);
    if (row) {
        rc = ngx_rbcs_account_spread(r, row, q->start);

        if (rc == NGX_OK) {
            rc = ngx_rbcs_account_send(r, row, NGX_HTTP_OK);
        }
    }

    ngx_rbcs_http_done(r, rc);
}


/* an account row read from MariaDB is current: it feeds the caches */

static ngx_int_t
ngx_rbcs_account_spread(ngx_http_request_t *r, ngx_str_t *row,
    ngx_msec_t known)
{
    ngx_rbcs_cache_entry_t  e;

    if (ngx_rbcs_publish_row_entry(&e, row) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "rbcs: unreadable state of account \"%V\"",
                      &row[NGX_RBCS_ACC_NUMBER]);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_publish_current(r->connection->log, &row[NGX_RBCS_ACC_NUMBER],
                             &e, known);

    return NGX_OK;
}


/*
 * The account resource from an account row: read, or written (created
 * 201, repeated 200, 201 when its own lost answer; a 409 has no row)
 */

static ngx_int_t
ngx_rbcs_account_send(ngx_http_request_t *r, ngx_str_t *row,
    ngx_uint_t status)
{
    ngx_rbcs_out_t           out;
    ngx_rbcs_cache_entry_t   e;

    if (ngx_rbcs_publish_row_entry(&e, row) != NGX_OK
        || ngx_rbcs_out_init(&out, r->pool, 320 + NGX_RBCS_PUBLISH_JSON_LEN)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbcs_account_head(&out, row, 1);

    /* the state members, in the room the buffer was made with */
    out.pos = ngx_rbcs_publish_json(out.pos, &e);

    ngx_rbcs_out_juint(&out, "version", &row[NGX_RBCS_ACC_VERSION]);
    ngx_rbcs_out_datetime(&out, "createdAt", &row[NGX_RBCS_ACC_CREATED]);
    ngx_rbcs_out_datetime(&out, "updatedAt", &row[NGX_RBCS_ACC_UPDATED]);

    ngx_rbcs_out_cstr(&out, "}");

    return ngx_rbcs_http_send_out(r, status, &out);
}



/* the start of an answer about an account, from its row */

static void
ngx_rbcs_account_head(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_uint_t currency)
{
    ngx_rbcs_out_cstr(out, "{");
    ngx_rbcs_out_jstrv(out, "accountNumber", &row[NGX_RBCS_ACC_NUMBER]);

    if (currency) {
        ngx_rbcs_out_jstrv(out, "currency", &row[NGX_RBCS_ACC_CURRENCY]);
    }
}


/*
 * The state of a paged listing of an account; NULL with the answer in
 * *rc: 404 for a number no account can have, 400 for a ?limit= not in
 * 1..500 (50 when absent).
 */

static ngx_rbcs_account_ctx_t *
ngx_rbcs_account_paged(ngx_http_request_t *r, ngx_str_t *number,
    ngx_rbcs_account_read_t *rd, ngx_int_t *rc)
{
    ngx_int_t                n;
    ngx_str_t                value;
    ngx_rbcs_account_ctx_t  *ctx;

    if (!ngx_rbcs_valid_account(number->data, number->len)) {
        *rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND, NGX_RBCS_NO_ACCOUNT);
        return NULL;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_account_ctx_t));
    if (ctx == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    ctx->read = rd;
    ctx->limit = NGX_RBCS_HISTORY_DEFAULT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &value) == NGX_OK) {
        n = (value.len > 0 && value.len <= 3 && value.data[0] != '0')
            ? ngx_atoi(value.data, value.len) : NGX_ERROR;

        if (n == NGX_ERROR || n < 1 || n > NGX_RBCS_HISTORY_MAX) {
            *rc = ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_request",
                                        "limit must be an integer from 1 "
                                        "to 500");
            return NULL;
        }

        ctx->limit = (ngx_uint_t) n;
    }

    return ctx;
}


/*
 * The history walks entries by the account's version, newest first; the
 * cursor is the version of the last entry given, so new transfers (higher
 * versions) never shift the pages being walked.
 */

ngx_int_t
ngx_rbcs_account_history(ngx_http_request_t *r, ngx_str_t *number)
{
    u_char                   before[sizeof(" AND version < ")
                                    + NGX_INT_T_LEN];
    size_t                   blen;
    ngx_str_t                value;
    ngx_int_t                n, rc;
    ngx_rbcs_account_ctx_t  *ctx;

    ctx = ngx_rbcs_account_paged(r, number, &ngx_rbcs_account_history_read,
                                 &rc);
    if (ctx == NULL) {
        return rc;
    }

    blen = 0;

    if (ngx_http_arg(r, (u_char *) "before", 6, &value) == NGX_OK) {
        n = (value.len > 0 && value.len <= 18 && value.data[0] != '0')
            ? ngx_atoi(value.data, value.len) : NGX_ERROR;

        if (n == NGX_ERROR) {
            return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "the cursor is not valid");
        }

        blen = ngx_sprintf(before, " AND version < %i", n) - before;
    }

    return ngx_rbcs_http_read(r, ngx_rbcs_account_read_done, ctx, NULL, 1024,
                              NGX_RBCS_ACC_SELECT ";"
                              "SELECT type, transaction_id, counterparty, "
                              "amount, balance_after, created_at, version "
                              "FROM entries WHERE account_number = '%V'%*s"
                              " ORDER BY version DESC LIMIT %ui",
                              number, number, blen, before, ctx->limit + 1);
}


/*
 * The checks of a read's answer, and its start: NGX_OK, or NGX_ERROR with
 * the answer in *rc (503, 500, or 404 with the read's detail).  The
 * account's row is read by position: its SELECT list is
 * NGX_RBCS_ACC_COLUMNS, the macro the NGX_RBCS_ACC_* indexes are kept
 * with, and its width is checked here.
 */

static ngx_int_t
ngx_rbcs_account_read(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q,
    ngx_rbcs_account_ctx_t *ctx, ngx_rbcs_out_t *out, ngx_int_t *rc)
{
    ngx_rbcs_account_read_t  *rd;

    rd = ctx->read;

    if (q->rc != NGX_RBCS_MYSQL_OK || q->results.nelts != 2) {
        *rc = ngx_rbcs_http_unavailable(r, q->rc == NGX_RBCS_MYSQL_EUNKNOWN);
        return NGX_ERROR;
    }

    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (ngx_rbcs_mysql_shape(q, 2, (ngx_uint_t) NGX_RBCS_ACC_N,
                             (ngx_uint_t) 0)
           != NGX_OK
        || ngx_rbcs_mysql_columns(q, 1, rd->columns, ctx->col) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_rbcs_mysql_rows(q, 0) == 0) {
        goto not_found;
    }

    if (ngx_rbcs_atoui(ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_ACC_SCALE),
                       &ctx->scale)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rd->list == NULL && ngx_rbcs_mysql_rows(q, 1) == 0) {
        goto not_found;
    }

    if (ngx_rbcs_out_init(out, r->pool,
                          256 + ngx_rbcs_mysql_rows(q, 1) * rd->room)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_rbcs_account_head(out, ngx_rbcs_mysql_cell(q, 0, 0, 0),
                          rd->currency);

    return NGX_OK;

not_found:

    *rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND, "account_not_found",
                                rd->detail);
    return NGX_ERROR;
}


static void
ngx_rbcs_account_read_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, n;
    ngx_rbcs_out_t            out;
    ngx_http_request_t       *r;
    ngx_rbcs_account_ctx_t   *ctx;
    ngx_rbcs_account_read_t  *rd;

    r = ngx_rbcs_http_query_request(q);
    ctx = ngx_rbcs_ctx(r)->data;
    rd = ctx->read;

    if (ngx_rbcs_account_read(r, q, ctx, &out, &rc) != NGX_OK) {
        goto done;
    }

    n = ngx_rbcs_mysql_rows(q, 1);

    if (rd->list == NULL) {
        rc = rd->item(&out, ngx_rbcs_mysql_cell(q, 1, 0, 0), ctx);

    } else {
        ngx_rbcs_out_cstr(&out, rd->list);

        for (i = 0; i < n && i < ctx->limit; i++) {
            ngx_rbcs_out_cstr(&out, i ? ",{" : "{");
            (void) rd->item(&out, ngx_rbcs_mysql_cell(q, 1, i, 0), ctx);
            ngx_rbcs_out_cstr(&out, "}");
        }

        ngx_rbcs_out_cstr(&out, "]");

        if (n > ctx->limit) {
            rc = rd->next(&out, ngx_rbcs_mysql_cell(q, 1, ctx->limit - 1, 0),
                          ctx);

        } else {
            ngx_rbcs_out_jnull(&out, "next");
            rc = NGX_OK;
        }
    }

    if (rc != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_rbcs_out_cstr(&out, "}");

    rc = ngx_rbcs_http_send_out(r, NGX_HTTP_OK, &out);

done:

    ngx_rbcs_http_done(r, rc);
}


static ngx_int_t
ngx_rbcs_account_entry(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_rbcs_account_ctx_t *ctx)
{
    ngx_uint_t  *col;

    col = ctx->col;

    ngx_rbcs_out_jstrv(out, "type", &row[col[NGX_RBCS_ENT_TYPE]]);
    ngx_rbcs_out_jstrv(out, "transactionId", &row[col[NGX_RBCS_ENT_TXID]]);
    ngx_rbcs_out_jstrv(out, "counterpartyAccountNumber",
                       &row[col[NGX_RBCS_ENT_PEER]]);
    ngx_rbcs_out_amount(out, "amount", &row[col[NGX_RBCS_ENT_AMOUNT]],
                        ctx->scale, 0);
    ngx_rbcs_out_amount(out, "balanceAfter", &row[col[NGX_RBCS_ENT_BALANCE]],
                        ctx->scale, 0);
    ngx_rbcs_out_datetime(out, "createdAt", &row[col[NGX_RBCS_ENT_CREATED]]);

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_account_entry_next(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_rbcs_account_ctx_t *ctx)
{
    ngx_rbcs_out_jstrv(out, "next", &row[ctx->col[NGX_RBCS_ENT_VERSION]]);

    return NGX_OK;
}


/*
 * GET /accounts/{n}/balance?at=RFC3339: the balance after the account's
 * last history entry at or before that instant, from the database (the
 * cache knows only the present).  A time after this pod's clock: 400.
 */

ngx_int_t
ngx_rbcs_account_balance_at(ngx_http_request_t *r, ngx_str_t *number,
    ngx_str_t *at)
{
    u_char                  *p, *dst, buf[NGX_RBCS_TIME_LEN];
    int64_t                  ms, now;
    ngx_str_t                text;
    ngx_time_t              *tp;
    ngx_rbcs_account_ctx_t  *ctx;

    text.data = ngx_pnalloc(r->pool, at->len);
    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = at->data;
    dst = text.data;
    ngx_unescape_uri(&dst, &p, at->len, 0);
    text.len = dst - text.data;

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    if (ngx_rbcs_time_parse_rfc3339(text.data, text.len, &ms) != 0
        || ngx_rbcs_time_format(buf, ms) == 0)
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "at must be an RFC 3339 date-time");
    }

    if (ms > now) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "at is in the future");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_account_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->read = &ngx_rbcs_account_at_read;
    ngx_memcpy(ctx->at, buf, NGX_RBCS_TIME_LEN);
    buf[10] = ' ';

    return ngx_rbcs_http_read(r, ngx_rbcs_account_read_done, ctx, NULL,
                              512 + 2 * number->len,
                              NGX_RBCS_ACC_SELECT ";"
                              "SELECT balance_after, version FROM entries"
                              " WHERE account_number = '%V' AND created_at"
                              " <= '%*s' ORDER BY created_at DESC,"
                              " version DESC LIMIT 1",
                              number, number,
                              (size_t) (NGX_RBCS_TIME_LEN - 1), buf);
}


static ngx_int_t
ngx_rbcs_account_at(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_rbcs_account_ctx_t *ctx)
{
    ngx_rbcs_out_amount(out, "balance", &row[ctx->col[NGX_RBCS_AT_BALANCE]],
                        ctx->scale, 0);
    ngx_rbcs_out_juint(out, "version", &row[ctx->col[NGX_RBCS_AT_VERSION]]);
    ngx_rbcs_out_jstr(out, "at", ctx->at, NGX_RBCS_TIME_LEN);

    return NGX_OK;
}


/*
 * GET /accounts/{n}/holds: the account's pending holds, as source or
 * destination, newest first.  The cursor is "<createdAt in ms>_<id>" of
 * the last hold of a page: (createdAt, id) orders the holds strictly, so
 * that pages list each hold once while new ones arrive.
 */

#define NGX_RBCS_HOLDS_AFTER                                                 \
    " AND (created_at < '%*s' OR (created_at = '%*s' AND transaction_id"       \
    " < '%V'))"

/* the holds of one side of the account, after the cursor (%*s) */
#define NGX_RBCS_HOLDS_OF(side)                                              \
    "(SELECT transaction_id, source_account, destination_account, amount, "  \
    "expires_at, created_at FROM holds WHERE " side " = '%V'%*s ORDER BY"     \
    " created_at DESC, transaction_id DESC LIMIT %ui)"

ngx_int_t
ngx_rbcs_account_holds(ngx_http_request_t *r, ngx_str_t *number)
{
    u_char                  *p, *sep, buf[NGX_RBCS_TIME_LEN];
    int64_t                  ms;
    ngx_str_t                value, id;
    ngx_int_t                n, rc;
    ngx_uint_t               m;
    ngx_rbcs_account_ctx_t  *ctx;
    u_char                   after[sizeof(NGX_RBCS_HOLDS_AFTER)
                                   + 2 * NGX_RBCS_TIME_LEN
                                   + NGX_RBCS_ID_MAX_LEN];
    u_char                  *src;
    size_t                   alen;

    ctx = ngx_rbcs_account_paged(r, number, &ngx_rbcs_account_holds_read,
                                 &rc);
    if (ctx == NULL) {
        return rc;
    }

    alen = 0;

    if (ngx_http_arg(r, (u_char *) "before", 6, &value) == NGX_OK) {

        /* ids may hold ':', which a client may percent-encode */

        p = ngx_pnalloc(r->pool, value.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        src = value.data;
        value.data = p;
        ngx_unescape_uri(&p, &src, value.len, 0);
        value.len = p - value.data;

        sep = ngx_strlchr(value.data, value.data + value.len, '_');
        n = NGX_ERROR;

        if (sep && sep > value.data && sep - value.data <= 15) {
            n = ngx_atoi(value.data, sep - value.data);
            id.data = sep + 1;
            id.len = value.data + value.len - id.data;
        }

        ms = n;

        if (n == NGX_ERROR || !ngx_rbcs_valid_id(id.data, id.len)
            || ngx_rbcs_time_format(buf, ms) == 0)
        {
            return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "the cursor is not valid");
        }

        buf[10] = ' ';

        alen = ngx_snprintf(after, sizeof(after), NGX_RBCS_HOLDS_AFTER,
                            (size_t) (NGX_RBCS_TIME_LEN - 1), buf,
                            (size_t) (NGX_RBCS_TIME_LEN - 1), buf, &id)
               - after;
    }

    m = ctx->limit + 1;

    return ngx_rbcs_http_read(r, ngx_rbcs_account_read_done, ctx, NULL, 1536,
                              NGX_RBCS_ACC_SELECT ";SELECT * FROM ("
                              NGX_RBCS_HOLDS_OF("source_account") " UNION "
                              NGX_RBCS_HOLDS_OF("destination_account")
                              ") h ORDER BY created_at DESC,"
                              " transaction_id DESC LIMIT %ui",
                              number, number, alen, after, m,
                              number, alen, after, m, m);
}


static ngx_int_t
ngx_rbcs_account_hold(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_rbcs_account_ctx_t *ctx)
{
    ngx_str_t   *c;
    ngx_uint_t  *col;

    col = ctx->col;

    ngx_rbcs_out_jstrv(out, "transactionId", &row[col[NGX_RBCS_HOLD_ID]]);
    ngx_rbcs_out_jstrv(out, "sourceAccountNumber",
                       &row[col[NGX_RBCS_HOLD_SOURCE]]);
    ngx_rbcs_out_jstrv(out, "destinationAccountNumber",
                       &row[col[NGX_RBCS_HOLD_DESTINATION]]);
    ngx_rbcs_out_amount(out, "amount", &row[col[NGX_RBCS_HOLD_AMOUNT]],
                        ctx->scale, 0);

    c = &row[col[NGX_RBCS_HOLD_EXPIRES]];

    if (c->data) {
        ngx_rbcs_out_datetime(out, "expiresAt", c);
    }

    ngx_rbcs_out_datetime(out, "createdAt", &row[col[NGX_RBCS_HOLD_CREATED]]);

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_account_hold_next(ngx_rbcs_out_t *out, ngx_str_t *row,
    ngx_rbcs_account_ctx_t *ctx)
{
    u_char      buf[NGX_RBCS_TIME_LEN];
    u_char      cursor[NGX_INT64_LEN + 2 + NGX_RBCS_ID_MAX_LEN];
    int64_t     ms;
    ngx_str_t  *c;

    c = &row[ctx->col[NGX_RBCS_HOLD_CREATED]];

    if (ngx_rbcs_time_from_datetime(buf, c->data, c->len) == 0
        || ngx_rbcs_time_parse_rfc3339(buf, NGX_RBCS_TIME_LEN, &ms) != 0)
    {
        return NGX_ERROR;
    }

    ngx_rbcs_out_jstr(out, "next", cursor,
                      ngx_sprintf(cursor, "%L_%V", ms,
                                  &row[ctx->col[NGX_RBCS_HOLD_ID]])
                      - cursor);

    return NGX_OK;
}


/*
 * Ready when the database answered a moment ago (any round trip of this
 * worker's pool within the last second), else when a round trip succeeds
 * now.  A busy pool thus answers a probe at once instead of queueing it
 * behind transfers; a frozen database stops answering, its connections
 * time out and are dropped, and the probe goes to it and fails.
 */

ngx_int_t
ngx_rbcs_account_ready(ngx_http_request_t *r)
{
    if (ngx_rbcs_mysql_answered_within(1000)) {
        return ngx_rbcs_http_send_json(r, NGX_RBCS_READY);
    }

    return ngx_rbcs_http_read(r, ngx_rbcs_account_ready_done, NULL, NULL,
                              sizeof("DO 1"), "DO 1");
}


static void
ngx_rbcs_account_ready_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ngx_rbcs_http_query_request(q);

    if (q->rc != NGX_RBCS_MYSQL_OK) {
        rc = ngx_rbcs_http_unavailable(r, q->rc == NGX_RBCS_MYSQL_EUNKNOWN);

    } else {
        rc = ngx_rbcs_http_send_json(r, NGX_RBCS_READY);
    }

    ngx_rbcs_http_done(r, rc);
}
