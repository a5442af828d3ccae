
/*
 * RBCS: transfers.  The module validates what it can know from the request
 * alone; everything that needs the accounts (the amount's scale, the
 * replay check, 404 and 422 outcomes, the guarded debit) happens in the
 * stored procedure rbcs_transfer (conf/schema.sql), inside one database
 * transaction sent in one round trip.
 */


#include "ngx_rbcs_transfer.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_router.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_time.h"
#include "ngx_rbcs_balance.h"


/* the longest amount text kept as given (for a rejection of unknown scale) */
#define NGX_RBCS_AMOUNT_TEXT_MAX  512

/* columns of rbcs_transaction_row() */
#define NGX_RBCS_TX_RESULT        0
#define NGX_RBCS_TX_HTTP_STATUS   1
#define NGX_RBCS_TX_CODE          2
#define NGX_RBCS_TX_DETAIL        3
#define NGX_RBCS_TX_ID            4
#define NGX_RBCS_TX_SOURCE        5
#define NGX_RBCS_TX_DESTINATION   6
#define NGX_RBCS_TX_AMOUNT        7
#define NGX_RBCS_TX_AMOUNT_TEXT   8
#define NGX_RBCS_TX_CURRENCY      9
#define NGX_RBCS_TX_SCALE         10
#define NGX_RBCS_TX_STATUS        11
#define NGX_RBCS_TX_CLIENT_TS     12
#define NGX_RBCS_TX_CREATED       13
#define NGX_RBCS_TX_SRC_BALANCE   14
#define NGX_RBCS_TX_DST_BALANCE   15
#define NGX_RBCS_TX_SRC_VERSION   16
#define NGX_RBCS_TX_DST_VERSION   17


static void ngx_rbcs_transfer_done(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_transfer_send(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q, ngx_uint_t status);
static ngx_int_t ngx_rbcs_transfer_problem(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_transfer_spread(ngx_http_request_t *r,
    ngx_rbcs_mysql_query_t *q, ngx_uint_t current);


static ngx_rbcs_field_spec_t  ngx_rbcs_transfer_fields[] = {
    { ngx_string("transactionId"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("sourceAccountNumber"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("destinationAccountNumber"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("amount"), NGX_RBCS_FIELD_AMOUNT, 1 },
    { ngx_string("timestamp"), NGX_RBCS_FIELD_STRING, 0 },
    { ngx_string("currency"), NGX_RBCS_FIELD_STRING, 0 },
};

#define NGX_RBCS_F_ID           0
#define NGX_RBCS_F_SOURCE       1
#define NGX_RBCS_F_DESTINATION  2
#define NGX_RBCS_F_AMOUNT       3
#define NGX_RBCS_F_TIMESTAMP    4
#define NGX_RBCS_F_CURRENCY     5


ngx_int_t
ngx_rbcs_transfer_post(ngx_http_request_t *r, ngx_rbcs_json_field_t *fields,
    size_t nfields)
{
    int                      is_zero;
    u_char                  *p, *key;
    size_t                   int_digits, frac_digits, key_len;
    int64_t                  ts;
    ngx_int_t                rc;
    ngx_str_t               *amount;
    ngx_rbcs_field_t         f[6];
    ngx_rbcs_currency_t     *currency;
    ngx_rbcs_main_conf_t    *rmcf;
    ngx_rbcs_mysql_query_t  *q;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    rc = ngx_rbcs_http_fields(fields, nfields, ngx_rbcs_transfer_fields, 6,
                              f);

    if (rc == NGX_RBCS_INVALID_REQUEST
        || !ngx_rbcs_valid_id(f[NGX_RBCS_F_ID].value.data,
                              f[NGX_RBCS_F_ID].value.len)
        || !ngx_rbcs_valid_account(f[NGX_RBCS_F_SOURCE].value.data,
                                   f[NGX_RBCS_F_SOURCE].value.len)
        || !ngx_rbcs_valid_account(f[NGX_RBCS_F_DESTINATION].value.data,
                                   f[NGX_RBCS_F_DESTINATION].value.len))
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_request",
                   "transactionId, sourceAccountNumber, "
                   "destinationAccountNumber and amount are required, ids "
                   "must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$; "
                   "timestamp and currency are optional; no other field is "
                   "known");
    }

    ngx_rbcs_ctx(r)->transaction_id = f[NGX_RBCS_F_ID].value;

    ts = 0;

    if (f[NGX_RBCS_F_TIMESTAMP].present
        && ngx_rbcs_time_parse_rfc3339(f[NGX_RBCS_F_TIMESTAMP].value.data,
                                       f[NGX_RBCS_F_TIMESTAMP].value.len,
                                       &ts)
           != 0)
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "timestamp must be an RFC 3339 "
                                     "date-time");
    }

    currency = NULL;

    if (f[NGX_RBCS_F_CURRENCY].present) {
        currency = ngx_rbcs_currency_find(rmcf,
                                          f[NGX_RBCS_F_CURRENCY].value.data,
                                          f[NGX_RBCS_F_CURRENCY].value.len);
        if (currency == NULL) {
            return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                         "unsupported_currency",
                                         "the currency is not supported");
        }
    }

    amount = &f[NGX_RBCS_F_AMOUNT].value;

    if (rc == NGX_RBCS_INVALID_AMOUNT
        || amount->len > NGX_RBCS_AMOUNT_TEXT_MAX
        || ngx_rbcs_amount_check_grammar(amount->data, amount->len,
                                         &int_digits, &frac_digits,
                                         &is_zero)
           != NGX_RBCS_AMOUNT_OK)
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_amount",
                   "amount must be a positive decimal such as \"10.50\", "
                   "within the currency's scale");
    }

    key = ngx_pnalloc(r->pool, amount->len);
    if (key == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    key_len = ngx_rbcs_amount_normalize(key, amount->data, amount->len);

    q = ngx_rbcs_mysql_create(r);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.data = ngx_pnalloc(r->pool, 512 + 3 * amount->len);
    if (q->sql.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* every value is a validated id, digits or a configured code */

    p = ngx_cpymem(q->sql.data, "START TRANSACTION;",
                   sizeof("START TRANSACTION;") - 1);

    q->call.data = p;

    p = ngx_sprintf(p, "CALL rbcs_transfer('%V','%V','%V',",
                    &f[NGX_RBCS_F_ID].value, &f[NGX_RBCS_F_SOURCE].value,
                    &f[NGX_RBCS_F_DESTINATION].value);

    if (int_digits <= 18 && frac_digits <= 18) {
        p = ngx_sprintf(p, "%V,", amount);

    } else {
        p = ngx_cpymem(p, "NULL,", 5);
    }

    p = ngx_sprintf(p, "'%V','%*s',%uz,%uz,%d,", amount, key_len, key,
                    int_digits, frac_digits, is_zero);

    if (currency) {
        p = ngx_sprintf(p, "'%V',%ui,", &currency->code, currency->scale);

    } else {
        p = ngx_cpymem(p, "NULL,NULL,", 10);
    }

    if (f[NGX_RBCS_F_TIMESTAMP].present) {
        p = ngx_sprintf(p, "%L,", (int64_t) ts);

    } else {
        p = ngx_cpymem(p, "NULL,", 5);
    }

    /* the audit log's actor: an authenticated key id matches the id pattern */

    p = ngx_rbcs_sql_actor(p, r);

    *p++ = ')';
    q->call.len = p - q->call.data;

    p = ngx_cpymem(p, ";COMMIT", 7);

    q->sql.len = p - q->sql.data;
    q->handler = ngx_rbcs_transfer_done;
    q->transaction = 1;
    q->idempotent = 1;

    /* transfers that wait together are committed together */

    q->batchable = 1;
    q->lock[0] = f[NGX_RBCS_F_SOURCE].value;
    q->lock[1] = f[NGX_RBCS_F_DESTINATION].value;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        return ngx_rbcs_http_unavailable(r, NULL);
    }

    return NGX_DONE;
}


static void
ngx_rbcs_transfer_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_str_t           *result, *status, *code, *detail;
    ngx_uint_t           http_status;
    ngx_http_request_t  *r;

    r = q->data;

    result = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_RESULT);
    status = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_HTTP_STATUS);

    if (q->rc != NGX_RBCS_MYSQL_OK || result == NULL || result->data == NULL
        || ngx_rbcs_atoui(status, &http_status) != NGX_OK)
    {
        rc = ngx_rbcs_http_unavailable(r, q);
        goto done;
    }

    if (ngx_strcmp(result->data, "invalid") == 0
        || ngx_strcmp(result->data, "conflict") == 0)
    {
        code = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CODE);
        detail = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DETAIL);
        rc = ngx_rbcs_http_problem_str(r, http_status, code, detail);
        goto done;
    }

    if (http_status != NGX_HTTP_CREATED) {
        rc = ngx_rbcs_transfer_problem(r, q);
        goto done;
    }

    /*
     * A replay answers 200 with the original body; but when an earlier
     * attempt of this very request was lost with its connection, the
     * replay is this request's own outcome.
     */

    if (ngx_strcmp(result->data, "replay") == 0) {
        if (!q->unknown) {
            http_status = NGX_HTTP_OK;
        }

        ngx_rbcs_transfer_spread(r, q, 0);

    } else {
        ngx_rbcs_transfer_spread(r, q, 1);
    }

    rc = ngx_rbcs_transfer_send(r, q, http_status);

done:

    ngx_rbcs_router_done(r, rc);
}


/*
 * The balances a transfer produced, before its reply (see balance.c): the
 * current balances after a commit, floors after a replay, whose balances
 * are of the past but were acknowledged by this pod all the same.
 */

static void
ngx_rbcs_transfer_spread(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q,
    ngx_uint_t current)
{
    ngx_str_t   *currency;
    ngx_uint_t   scale;

    if (ngx_rbcs_atoui(ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SCALE),
                       &scale)
        != NGX_OK)
    {
        return;
    }

    currency = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CURRENCY);

    ngx_rbcs_balance_update(r,
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SOURCE),
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SRC_VERSION),
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SRC_BALANCE),
                      scale, currency, current);

    ngx_rbcs_balance_update(r,
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DESTINATION),
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DST_VERSION),
                      ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DST_BALANCE),
                      scale, currency, current);
}


/* a recorded rejection, the same document every time it is reported */

static ngx_int_t
ngx_rbcs_transfer_problem(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q)
{
    ngx_str_t   *code, *detail;
    ngx_uint_t   status;

    if (ngx_rbcs_atoui(ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_HTTP_STATUS),
                       &status)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    code = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CODE);
    detail = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DETAIL);

    if (code->data == NULL || detail->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_problem_str(r, status, code, detail);
}


/* the transaction resource from a rbcs_transaction_row() row */

static ngx_int_t
ngx_rbcs_transfer_send(ngx_http_request_t *r, ngx_rbcs_mysql_query_t *q,
    ngx_uint_t status)
{
    u_char           buf[NGX_RBCS_TIME_LEN];
    size_t           n;
    int64_t          ts;
    ngx_str_t       *c, *st;
    ngx_uint_t       scale, completed, has_scale;
    ngx_rbcs_out_t   out;

    if (ngx_rbcs_out_init(&out, r->pool, 640) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    has_scale = (ngx_rbcs_atoui(ngx_rbcs_mysql_cell(q, 0, 0,
                                                    NGX_RBCS_TX_SCALE),
                                &scale)
                 == NGX_OK);

    st = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_STATUS);
    completed = (st->len == 9 && ngx_strncmp(st->data, "COMPLETED", 9) == 0);

    ngx_rbcs_out_cstr(&out, "{");

    c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_ID);
    ngx_rbcs_out_jstr(&out, "transactionId", c->data, c->len);

    c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SOURCE);
    ngx_rbcs_out_jstr(&out, "sourceAccountNumber", c->data, c->len);

    c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DESTINATION);
    ngx_rbcs_out_jstr(&out, "destinationAccountNumber", c->data, c->len);

    if (has_scale) {
        ngx_rbcs_out_amount(&out, "amount",
                            ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_AMOUNT),
                            scale, 0);

    } else {
        c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_AMOUNT_TEXT);
        ngx_rbcs_out_jstr(&out, "amount", c->data, c->len);
    }

    c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CURRENCY);
    ngx_rbcs_out_jstr(&out, "currency", c->data, c->len);

    ngx_rbcs_out_jstr(&out, "status", st->data, st->len);

    if (!completed) {
        c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CODE);
        ngx_rbcs_out_jstr(&out, "code", c->data, c->len);
    }

    c = ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CLIENT_TS);

    if (c->data) {
        ts = ngx_atoof(c->data[0] == '-' ? c->data + 1 : c->data,
                       c->data[0] == '-' ? c->len - 1 : c->len);
        if (ts == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (c->data[0] == '-') {
            ts = -ts;
        }

        n = ngx_rbcs_time_format(buf, ts);
        if (n == 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_rbcs_out_jstr(&out, "timestamp", buf, n);
    }

    ngx_rbcs_out_datetime(&out, "createdAt",
                          ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_CREATED));

    if (completed) {
        ngx_rbcs_out_amount(&out, "sourceBalance",
                        ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SRC_BALANCE),
                        scale, 0);
        ngx_rbcs_out_amount(&out, "destinationBalance",
                        ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DST_BALANCE),
                        scale, 0);

        /* the accounts' versions after it: what read-your-writes means */

        ngx_rbcs_out_juint(&out, "sourceVersion",
                        ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_SRC_VERSION));
        ngx_rbcs_out_juint(&out, "destinationVersion",
                        ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_DST_VERSION));
    }

    ngx_rbcs_out_cstr(&out, "}");

    return ngx_rbcs_http_send_out(r, status, &out);
}


ngx_int_t
ngx_rbcs_transfer_get(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_rbcs_mysql_query_t  *q;

    if (!ngx_rbcs_valid_id(id->data, id->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     "transaction_not_found",
                                     "the transaction does not exist");
    }

    q = ngx_rbcs_mysql_create(r);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.data = ngx_pnalloc(r->pool, 128);
    if (q->sql.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.len = ngx_sprintf(q->sql.data,
                             "CALL rbcs_transaction_row('found','%V')", id)
                 - q->sql.data;
    q->handler = ngx_rbcs_transfer_get_done;
    q->idempotent = 1;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        return ngx_rbcs_http_unavailable(r, NULL);
    }

    return NGX_DONE;
}


static void
ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = q->data;

    if (q->rc != NGX_RBCS_MYSQL_OK) {
        rc = ngx_rbcs_http_unavailable(r, q);

    } else if (ngx_rbcs_mysql_rows(q, 0) == 0) {
        rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                   "transaction_not_found",
                                   "the transaction does not exist");

    } else {
        rc = ngx_rbcs_transfer_send(r, q, NGX_HTTP_OK);
    }

    ngx_rbcs_router_done(r, rc);
}
