
/*
 * RBCS: transfers.  The module validates what it can know from the request
 * alone; everything that needs the accounts (the amount's scale, the
 * replay check, 404 and 422 outcomes) is decided by the write path's judge
 * (ngx_rbcs_batch.c, ngx_rbcs_ledger.c), in a batch with whatever else
 * this worker is writing.
 */


#include "ngx_rbcs_transfer.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_time.h"


/* the longest amount text kept as given (for a rejection of unknown scale) */
#define NGX_RBCS_AMOUNT_TEXT_MAX  512


static ngx_int_t ngx_rbcs_transfer_written(ngx_http_request_t *r,
    ngx_rbcs_batch_op_t *op);
static void ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_transfer_send(ngx_http_request_t *r,
    ngx_str_t *row, ngx_uint_t status);


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
    size_t                   int_digits, frac_digits;
    int64_t                  ts;
    ngx_int_t                rc;
    ngx_str_t               *amount, *actor;
    ngx_rbcs_field_t         f[6];
    ngx_rbcs_batch_op_t     *op;
    ngx_rbcs_currency_t     *currency;
    ngx_rbcs_main_conf_t    *rmcf;

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

    op = ngx_rbcs_batch_op_create(r->connection->log);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the operation outlives the request if it must: its own copies */

    actor = ngx_rbcs_http_actor(r);

    op->kind = NGX_RBCS_LEDGER_TRANSFER;
    op->currency = currency;
    op->client_ts = ts;
    op->has_ts = f[NGX_RBCS_F_TIMESTAMP].present;

    op->amount_key.data = ngx_pnalloc(op->pool, amount->len);

    if (op->amount_key.data == NULL
        || (op->id.data = ngx_pstrdup(op->pool, &f[NGX_RBCS_F_ID].value))
           == NULL
        || (op->source.data = ngx_pstrdup(op->pool,
                                          &f[NGX_RBCS_F_SOURCE].value))
           == NULL
        || (op->destination.data = ngx_pstrdup(op->pool,
                                       &f[NGX_RBCS_F_DESTINATION].value))
           == NULL
        || (op->amount.data = ngx_pstrdup(op->pool, amount)) == NULL
        || (actor && (op->actor.data = ngx_pstrdup(op->pool, actor))
                     == NULL))
    {
        ngx_rbcs_batch_cancel(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->id.len = f[NGX_RBCS_F_ID].value.len;
    op->source.len = f[NGX_RBCS_F_SOURCE].value.len;
    op->destination.len = f[NGX_RBCS_F_DESTINATION].value.len;
    op->amount.len = amount->len;
    op->actor.len = actor ? actor->len : 0;
    op->amount_key.len = ngx_rbcs_amount_normalize(op->amount_key.data,
                                                   amount->data,
                                                   amount->len);

    return ngx_rbcs_http_write(r, op, ngx_rbcs_transfer_written);
}


/*
 * The judged transfer: a problem, a recorded rejection (the same document
 * every time it is reported), or the transaction resource (201 applied,
 * 200 replayed; 201 when this very request's earlier attempt applied it
 * and its answer was lost).
 */

static ngx_int_t
ngx_rbcs_transfer_written(ngx_http_request_t *r, ngx_rbcs_batch_op_t *op)
{
    ngx_str_t   *row, *st;
    ngx_uint_t   status;

    row = op->row;

    if (row == NULL) {
        return ngx_rbcs_http_problem_str(r, op->status, &op->code,
                                         &op->detail);
    }

    st = &row[NGX_RBCS_TX_STATUS];

    if (st->len == 8 && ngx_strncmp(st->data, "REJECTED", 8) == 0) {
        if (ngx_rbcs_atoui(&row[NGX_RBCS_TX_HTTP_STATUS], &status) != NGX_OK
            || row[NGX_RBCS_TX_CODE].data == NULL
            || row[NGX_RBCS_TX_DETAIL].data == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_rbcs_http_problem_str(r, status, &row[NGX_RBCS_TX_CODE],
                                         &row[NGX_RBCS_TX_DETAIL]);
    }

    return ngx_rbcs_transfer_send(r, row, op->status);
}


/* the transaction resource from a transaction row */

static ngx_int_t
ngx_rbcs_transfer_send(ngx_http_request_t *r, ngx_str_t *row,
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

    has_scale = (ngx_rbcs_atoui(&row[NGX_RBCS_TX_SCALE],
                                &scale)
                 == NGX_OK);

    st = &row[NGX_RBCS_TX_STATUS];
    completed = (st->len == 9 && ngx_strncmp(st->data, "COMPLETED", 9) == 0);

    ngx_rbcs_out_cstr(&out, "{");

    c = &row[NGX_RBCS_TX_ID];
    ngx_rbcs_out_jstr(&out, "transactionId", c->data, c->len);

    c = &row[NGX_RBCS_TX_SOURCE];
    ngx_rbcs_out_jstr(&out, "sourceAccountNumber", c->data, c->len);

    c = &row[NGX_RBCS_TX_DESTINATION];
    ngx_rbcs_out_jstr(&out, "destinationAccountNumber", c->data, c->len);

    if (has_scale) {
        ngx_rbcs_out_amount(&out, "amount",
                            &row[NGX_RBCS_TX_AMOUNT],
                            scale, 0);

    } else {
        c = &row[NGX_RBCS_TX_AMOUNT_TEXT];
        ngx_rbcs_out_jstr(&out, "amount", c->data, c->len);
    }

    c = &row[NGX_RBCS_TX_CURRENCY];
    ngx_rbcs_out_jstr(&out, "currency", c->data, c->len);

    ngx_rbcs_out_jstr(&out, "status", st->data, st->len);

    if (!completed) {
        c = &row[NGX_RBCS_TX_CODE];
        ngx_rbcs_out_jstr(&out, "code", c->data, c->len);
    }

    c = &row[NGX_RBCS_TX_CLIENT_TS];

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
                          &row[NGX_RBCS_TX_CREATED]);

    if (completed) {
        ngx_rbcs_out_amount(&out, "sourceBalance",
                        &row[NGX_RBCS_TX_SRC_BALANCE],
                        scale, 0);
        ngx_rbcs_out_amount(&out, "destinationBalance",
                        &row[NGX_RBCS_TX_DST_BALANCE],
                        scale, 0);

        /* the accounts' versions after it: what read-your-writes means */

        ngx_rbcs_out_juint(&out, "sourceVersion",
                        &row[NGX_RBCS_TX_SRC_VERSION]);
        ngx_rbcs_out_juint(&out, "destinationVersion",
                        &row[NGX_RBCS_TX_DST_VERSION]);
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

    q = ngx_rbcs_http_query(r, ngx_rbcs_transfer_get_done);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.data = ngx_pnalloc(r->pool, sizeof("SELECT " NGX_RBCS_TX_COLUMNS
                                              " FROM transactions WHERE "
                                              "transaction_id = ''")
                                       + id->len);
    if (q->sql.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql.len = ngx_sprintf(q->sql.data,
                             "SELECT " NGX_RBCS_TX_COLUMNS " FROM "
                             "transactions WHERE transaction_id = '%V'", id)
                 - q->sql.data;
    q->idempotent = 1;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        return ngx_rbcs_http_unavailable(r, 0);
    }

    return NGX_DONE;
}


static void
ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ngx_rbcs_http_query_request(q);

    if (q->rc != NGX_RBCS_MYSQL_OK) {
        rc = ngx_rbcs_http_unavailable(r,
                                       q->rc == NGX_RBCS_MYSQL_EUNKNOWN);

    } else if (ngx_rbcs_mysql_rows(q, 0) == 0) {
        rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                   "transaction_not_found",
                                   "the transaction does not exist");

    } else if (ngx_rbcs_mysql_cell(q, 0, 0, NGX_RBCS_TX_N - 1) == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        rc = ngx_rbcs_transfer_send(r, ngx_rbcs_mysql_cell(q, 0, 0, 0),
                                    NGX_HTTP_OK);
    }

    ngx_rbcs_http_done(r, rc);
}
