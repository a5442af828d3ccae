
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
#include "ngx_rbcs_metrics.h"


/* the longest amount text kept as given (for a rejection of unknown scale) */
#define NGX_RBCS_AMOUNT_TEXT_MAX  512


static ngx_int_t ngx_rbcs_transfer_expires_in(ngx_rbcs_field_t *f,
    ngx_uint_t hold);
static ngx_rbcs_batch_op_t *ngx_rbcs_transfer_op(ngx_http_request_t *r,
    ngx_rbcs_field_t *f, ngx_uint_t hold, ngx_uint_t expires_in, int64_t ts,
    ngx_rbcs_currency_t *currency);
static ngx_int_t ngx_rbcs_transfer_written(ngx_http_request_t *r,
    ngx_str_t *row, ngx_uint_t status);
static ngx_int_t ngx_rbcs_transfer_read(ngx_http_request_t *r, ngx_str_t *id,
    const char *columns, ngx_rbcs_mysql_handler_pt handler, void *data);
static void ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_transfer_resolve_read(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_transfer_send(ngx_http_request_t *r,
    ngx_str_t *row, ngx_uint_t status);


/* the columns the readers of a SELECT look up by name */
static ngx_str_t  ngx_rbcs_transfer_resolve_columns[] = {
    ngx_string("source_account"),
    ngx_string("destination_account"),
    ngx_null_string
};

static ngx_str_t  ngx_rbcs_transfer_expiry_columns[] = {
    ngx_string("transaction_id"),
    ngx_string("source_account"),
    ngx_string("overdue_ms"),
    ngx_null_string
};


static ngx_rbcs_field_spec_t  ngx_rbcs_transfer_fields[] = {
    { ngx_string("transactionId"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("sourceAccountNumber"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("destinationAccountNumber"), NGX_RBCS_FIELD_STRING, 1 },
    { ngx_string("amount"), NGX_RBCS_FIELD_AMOUNT, 1 },
    { ngx_string("timestamp"), NGX_RBCS_FIELD_STRING, 0 },
    { ngx_string("currency"), NGX_RBCS_FIELD_STRING, 0 },
    { ngx_string("hold"), NGX_RBCS_FIELD_BOOL, 0 },
    { ngx_string("expiresIn"), NGX_RBCS_FIELD_INTEGER, 0 },
};

#define NGX_RBCS_F_ID           0
#define NGX_RBCS_F_SOURCE       1
#define NGX_RBCS_F_DESTINATION  2
#define NGX_RBCS_F_AMOUNT       3
#define NGX_RBCS_F_TIMESTAMP    4
#define NGX_RBCS_F_CURRENCY     5
#define NGX_RBCS_F_HOLD         6
#define NGX_RBCS_F_EXPIRES_IN   7
#define NGX_RBCS_F_N            8

/* the code and detail of the problem of a transaction that does not exist */
#define NGX_RBCS_NO_TRANSACTION                                              \
    "transaction_not_found", "the transaction does not exist"

/* a year: the longest a hold may wait for its capture */
#define NGX_RBCS_HOLD_MAX_SECONDS  31536000


ngx_int_t
ngx_rbcs_transfer_post(ngx_http_request_t *r, ngx_rbcs_json_field_t *fields,
    size_t nfields)
{
    int                      is_zero;
    size_t                   int_digits, frac_digits;
    int64_t                  ts;
    ngx_int_t                rc;
    ngx_str_t               *amount;
    ngx_int_t                expires_in;
    ngx_uint_t               hold;
    ngx_rbcs_field_t         f[NGX_RBCS_F_N];
    ngx_rbcs_batch_op_t     *op;
    ngx_rbcs_currency_t     *currency;
    ngx_rbcs_main_conf_t    *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    rc = ngx_rbcs_http_fields(fields, nfields, ngx_rbcs_transfer_fields,
                              NGX_RBCS_F_N, f);

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
                   "timestamp, currency, hold (a boolean) and expiresIn (an "
                   "integer) are optional; no other field is known");
    }

    hold = f[NGX_RBCS_F_HOLD].present
           && f[NGX_RBCS_F_HOLD].value.data[0] == '1';
    expires_in = ngx_rbcs_transfer_expires_in(f, hold);

    if (expires_in == NGX_ERROR) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "expiresIn is a whole number of "
                                     "seconds from 1 to 31536000, and "
                                     "only for a hold");
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

    op = ngx_rbcs_transfer_op(r, f, hold, (ngx_uint_t) expires_in, ts,
                              currency);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_http_write(r, op, ngx_rbcs_transfer_written);
}


/* a hold's expiresIn in seconds, 0 when not given; NGX_ERROR: not valid */

static ngx_int_t
ngx_rbcs_transfer_expires_in(ngx_rbcs_field_t *f, ngx_uint_t hold)
{
    ngx_uint_t  expires_in;

    if (!f[NGX_RBCS_F_EXPIRES_IN].present) {
        return 0;
    }

    expires_in = (ngx_uint_t) ngx_atoof(f[NGX_RBCS_F_EXPIRES_IN].value.data,
                                        f[NGX_RBCS_F_EXPIRES_IN].value.len);

    if (!hold || expires_in < 1 || expires_in > NGX_RBCS_HOLD_MAX_SECONDS) {
        return NGX_ERROR;
    }

    return (ngx_int_t) expires_in;
}


/* the write operation of a checked transfer or hold; NULL: out of memory */

static ngx_rbcs_batch_op_t *
ngx_rbcs_transfer_op(ngx_http_request_t *r, ngx_rbcs_field_t *f,
    ngx_uint_t hold, ngx_uint_t expires_in, int64_t ts,
    ngx_rbcs_currency_t *currency)
{
    u_char               *p;
    ngx_str_t            *amount;
    ngx_rbcs_batch_op_t  *op;

    amount = &f[NGX_RBCS_F_AMOUNT].value;

    op = ngx_rbcs_http_op(r, NGX_RBCS_LEDGER_TRANSFER);
    if (op == NULL) {
        return NULL;
    }

    op->currency = currency;
    op->client_ts = ts;
    op->has_ts = f[NGX_RBCS_F_TIMESTAMP].present;
    op->hold = hold;
    op->expires_in = expires_in;

    /* a hold's terms join its amount in the replay key: "10.5|H3600" */

    op->amount_key.data = ngx_pnalloc(op->pool,
                                      amount->len + 3 + NGX_INT_T_LEN);

    if (op->amount_key.data == NULL
        || ngx_rbcs_http_copy(op, &op->id, &f[NGX_RBCS_F_ID].value) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->source, &f[NGX_RBCS_F_SOURCE].value)
           != NGX_OK
        || ngx_rbcs_http_copy(op, &op->destination,
                              &f[NGX_RBCS_F_DESTINATION].value)
           != NGX_OK
        || ngx_rbcs_http_copy(op, &op->amount, amount) != NGX_OK)
    {
        ngx_rbcs_batch_cancel(op);
        return NULL;
    }

    op->amount_key.len = ngx_rbcs_amount_normalize(op->amount_key.data,
                                                   amount->data,
                                                   amount->len);

    if (hold) {
        p = ngx_sprintf(op->amount_key.data + op->amount_key.len, "|H");

        if (expires_in) {
            p = ngx_sprintf(p, "%ui", expires_in);
        }

        op->amount_key.len = p - op->amount_key.data;
    }

    return op;
}


/*
 * A hold's capture or void.  The hold's accounts are read first (they
 * never change): the write path locks them, reads the hold under that
 * lock and judges the resolution with the batch.
 */

static ngx_rbcs_field_spec_t  ngx_rbcs_capture_fields[] = {
    { ngx_string("amount"), NGX_RBCS_FIELD_AMOUNT, 0 },
};


typedef struct {
    ngx_uint_t                 kind;
    ngx_str_t                  id;
    ngx_str_t                  amount;
} ngx_rbcs_resolve_t;


ngx_int_t
ngx_rbcs_transfer_resolve(ngx_http_request_t *r, ngx_str_t *id,
    ngx_uint_t capture, ngx_rbcs_json_field_t *fields, size_t nfields)
{
    int                      is_zero;
    size_t                   int_digits, frac_digits;
    ngx_int_t                rc;
    ngx_rbcs_field_t         f[1];
    ngx_rbcs_resolve_t      *rs;

    rc = ngx_rbcs_http_fields(fields, nfields, ngx_rbcs_capture_fields,
                              capture ? 1 : 0, f);

    if (rc == NGX_RBCS_INVALID_REQUEST) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     capture ? "the body is {} or "
                                               "{\"amount\": \"...\"}"
                                             : "the body is {}");
    }

    if (capture && f[0].present
        && (rc == NGX_RBCS_INVALID_AMOUNT
            || f[0].value.len > NGX_RBCS_AMOUNT_TEXT_MAX
            || ngx_rbcs_amount_check_grammar(f[0].value.data, f[0].value.len,
                                             &int_digits, &frac_digits,
                                             &is_zero)
               != NGX_RBCS_AMOUNT_OK
            || is_zero))
    {
        return ngx_rbcs_http_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid_amount",
                   "amount must be a positive decimal such as \"10.50\", "
                   "within the currency's scale");
    }

    if (!ngx_rbcs_valid_id(id->data, id->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     NGX_RBCS_NO_TRANSACTION);
    }

    rs = ngx_pcalloc(r->pool, sizeof(ngx_rbcs_resolve_t));
    if (rs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rs->kind = capture ? NGX_RBCS_LEDGER_CAPTURE : NGX_RBCS_LEDGER_VOID;
    rs->id = *id;

    if (capture && f[0].present) {
        rs->amount = f[0].value;
    }

    ngx_rbcs_ctx(r)->transaction_id = *id;

    /* the columns of ngx_rbcs_transfer_resolve_columns */
    return ngx_rbcs_transfer_read(r, id, "source_account, destination_account",
                                  ngx_rbcs_transfer_resolve_read, rs);
}


static void
ngx_rbcs_transfer_resolve_read(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t             rc;
    ngx_str_t            *src, *dst;
    ngx_uint_t            col[2];
    ngx_http_request_t   *r;
    ngx_rbcs_resolve_t   *rs;
    ngx_rbcs_batch_op_t  *op;

    r = ngx_rbcs_http_query_request(q);
    rs = ngx_rbcs_ctx(r)->data;

    rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (q->rc != NGX_RBCS_MYSQL_OK) {
        rc = ngx_rbcs_http_unavailable(r, 0);
        goto done;
    }

    if (ngx_rbcs_mysql_columns(q, 0, ngx_rbcs_transfer_resolve_columns, col)
        != NGX_OK)
    {
        goto done;
    }

    if (ngx_rbcs_mysql_rows(q, 0) == 0) {
        rc = ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                   NGX_RBCS_NO_TRANSACTION);
        goto done;
    }

    src = ngx_rbcs_mysql_cell(q, 0, 0, col[0]);
    dst = ngx_rbcs_mysql_cell(q, 0, 0, col[1]);

    if (src->data == NULL || dst->data == NULL) {
        goto done;
    }

    op = ngx_rbcs_http_op(r, rs->kind);
    if (op == NULL) {
        goto done;
    }

    if (ngx_rbcs_http_copy(op, &op->id, &rs->id) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->source, src) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->destination, dst) != NGX_OK
        || ngx_rbcs_http_copy(op, &op->amount, &rs->amount) != NGX_OK)
    {
        ngx_rbcs_batch_cancel(op);
        goto done;
    }

    rc = ngx_rbcs_http_write(r, op, ngx_rbcs_transfer_written);

    if (rc == NGX_DONE) {
        return;
    }

done:

    ngx_rbcs_http_done(r, rc);
}


/*
 * The judged transfer with its row (a problem without one is answered by
 * ngx_rbcs_http_write()): a recorded rejection (the same document every
 * time it is reported), or the transaction resource (201 applied, 200
 * replayed; 201 when this very request's earlier attempt applied it and
 * its answer was lost).
 */

static ngx_int_t
ngx_rbcs_transfer_written(ngx_http_request_t *r, ngx_str_t *row,
    ngx_uint_t status)
{
    ngx_str_t   *st;
    ngx_uint_t   recorded;

    st = &row[NGX_RBCS_TX_STATUS];

    if (ngx_rbcs_str_is(st, "REJECTED")) {
        if (ngx_rbcs_atoui(&row[NGX_RBCS_TX_HTTP_STATUS], &recorded)
            != NGX_OK
            || row[NGX_RBCS_TX_CODE].data == NULL
            || row[NGX_RBCS_TX_DETAIL].data == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_rbcs_http_problem_str(r, recorded,
                                         &row[NGX_RBCS_TX_CODE],
                                         &row[NGX_RBCS_TX_DETAIL]);
    }

    return ngx_rbcs_transfer_send(r, row, status);
}


/* the transaction resource from a transaction row */

static ngx_int_t
ngx_rbcs_transfer_send(ngx_http_request_t *r, ngx_str_t *row,
    ngx_uint_t status)
{
    u_char           buf[NGX_RBCS_TIME_LEN];
    size_t           n;
    int64_t          ts;
    ngx_str_t       *c, *st, *sb, *sv, *sa;
    ngx_uint_t       scale, completed, has_scale, res;
    ngx_rbcs_out_t   out;

    if (ngx_rbcs_out_init(&out, r->pool, 640) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    has_scale = (ngx_rbcs_atoui(&row[NGX_RBCS_TX_SCALE],
                                &scale)
                 == NGX_OK);

    st = &row[NGX_RBCS_TX_STATUS];
    completed = ngx_rbcs_str_is(st, "COMPLETED");

    ngx_rbcs_out_cstr(&out, "{");

    ngx_rbcs_out_jstrv(&out, "transactionId", &row[NGX_RBCS_TX_ID]);
    ngx_rbcs_out_jstrv(&out, "sourceAccountNumber", &row[NGX_RBCS_TX_SOURCE]);
    ngx_rbcs_out_jstrv(&out, "destinationAccountNumber",
                       &row[NGX_RBCS_TX_DESTINATION]);

    if (has_scale) {
        ngx_rbcs_out_amount(&out, "amount", &row[NGX_RBCS_TX_AMOUNT], scale,
                            0);

    } else {
        ngx_rbcs_out_jstrv(&out, "amount", &row[NGX_RBCS_TX_AMOUNT_TEXT]);
    }

    ngx_rbcs_out_jstrv(&out, "currency", &row[NGX_RBCS_TX_CURRENCY]);
    ngx_rbcs_out_jstrv(&out, "status", st);

    if (ngx_rbcs_str_is(st, "REJECTED")) {
        ngx_rbcs_out_jstrv(&out, "code", &row[NGX_RBCS_TX_CODE]);
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

    /* a hold: its expiry, what it left available, what it captured */

    if (row[NGX_RBCS_TX_EXPIRES].data) {
        ngx_rbcs_out_datetime(&out, "expiresAt", &row[NGX_RBCS_TX_EXPIRES]);
    }

    if (row[NGX_RBCS_TX_CAPTURED].data) {
        ngx_rbcs_out_amount(&out, "capturedAmount",
                            &row[NGX_RBCS_TX_CAPTURED], scale, 0);
    }

    /* the source as the hold left it, or as its resolution did */

    res = (row[NGX_RBCS_TX_RES_VERSION].data != NULL);
    sb = &row[res ? NGX_RBCS_TX_RES_BALANCE : NGX_RBCS_TX_SRC_BALANCE];
    sv = &row[res ? NGX_RBCS_TX_RES_VERSION : NGX_RBCS_TX_SRC_VERSION];
    sa = &row[res ? NGX_RBCS_TX_RES_AVAILABLE : NGX_RBCS_TX_SRC_AVAILABLE];

    if (sa->data) {
        ngx_rbcs_out_amount(&out, "sourceAvailableBalance", sa, scale, 0);

        if (!completed) {
            ngx_rbcs_out_juint(&out, "sourceVersion", sv);
        }
    }

    if (completed) {
        ngx_rbcs_out_amount(&out, "sourceBalance", sb, scale, 0);
        ngx_rbcs_out_amount(&out, "destinationBalance",
                            &row[NGX_RBCS_TX_DST_BALANCE], scale, 0);

        /* the accounts' versions after it: what read-your-writes means */

        ngx_rbcs_out_juint(&out, "sourceVersion", sv);
        ngx_rbcs_out_juint(&out, "destinationVersion",
                           &row[NGX_RBCS_TX_DST_VERSION]);
    }

    ngx_rbcs_out_cstr(&out, "}");

    return ngx_rbcs_http_send_out(r, status, &out);
}


ngx_int_t
ngx_rbcs_transfer_get(ngx_http_request_t *r, ngx_str_t *id)
{
    if (!ngx_rbcs_valid_id(id->data, id->len)) {
        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND,
                                     NGX_RBCS_NO_TRANSACTION);
    }

    return ngx_rbcs_transfer_read(r, id, NGX_RBCS_TX_COLUMNS,
                                  ngx_rbcs_transfer_get_done, NULL);
}


/* a transaction's columns, by its (validated) id, for a request */

static ngx_int_t
ngx_rbcs_transfer_read(ngx_http_request_t *r, ngx_str_t *id,
    const char *columns, ngx_rbcs_mysql_handler_pt handler, void *data)
{
    return ngx_rbcs_http_read(r, handler, data, NULL,
                              sizeof("SELECT  FROM transactions "
                                     "WHERE transaction_id = ''")
                              + ngx_strlen(columns) + id->len,
                              "SELECT %s FROM transactions "
                              "WHERE transaction_id = '%V'", columns, id);
}


static void
ngx_rbcs_transfer_get_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_int_t            rc;
    ngx_str_t           *row;
    ngx_http_request_t  *r;

    r = ngx_rbcs_http_query_request(q);

    row = ngx_rbcs_http_row(r, q, NGX_RBCS_TX_N, NGX_RBCS_NO_TRANSACTION, &rc);
    if (row) {
        rc = ngx_rbcs_transfer_send(r, row, NGX_HTTP_OK);
    }

    ngx_rbcs_http_done(r, rc);
}


/*
 * Expiry.  One worker of each pod looks for holds whose expiresAt has
 * passed, several times a second, and queues their expiry on its write
 * path; the judge releases a hold only if it is still pending and due,
 * under the lock of its source, so pods that race for one hold release it
 * once.  A scan waits for the expiries of the one before it.  It also
 * tells the metrics how late the oldest hold it found is.
 */

#define NGX_RBCS_EXPIRY_INTERVAL  250    /* ms */
#define NGX_RBCS_EXPIRY_BATCH     64


static void ngx_rbcs_transfer_expiry_scan(ngx_event_t *ev);
static void ngx_rbcs_transfer_expiry_found(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_transfer_expired(ngx_rbcs_batch_op_t *op);


static ngx_event_t       ngx_rbcs_expiry_event;
static ngx_uint_t        ngx_rbcs_expiry_pending;
static ngx_uint_t        ngx_rbcs_expiry_limit;

/* the timer's data: debug logs read an event's data as a connection */
static ngx_connection_t  ngx_rbcs_expiry_conn;


ngx_int_t
ngx_rbcs_transfer_init_process(ngx_cycle_t *cycle, ngx_uint_t scanner)
{
    if (!scanner) {
        return NGX_OK;
    }

    ngx_rbcs_expiry_conn.fd = (ngx_socket_t) -1;
    ngx_rbcs_expiry_event.data = &ngx_rbcs_expiry_conn;
    ngx_rbcs_expiry_event.handler = ngx_rbcs_transfer_expiry_scan;
    ngx_rbcs_expiry_event.log = cycle->log;
    ngx_rbcs_expiry_event.cancelable = 1;

    ngx_add_timer(&ngx_rbcs_expiry_event, NGX_RBCS_EXPIRY_INTERVAL);

    return NGX_OK;
}


static void
ngx_rbcs_transfer_expiry_scan(ngx_event_t *ev)
{
    ngx_uint_t               n;
    ngx_pool_t              *pool;
    ngx_rbcs_mysql_query_t  *q;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    /* at most half of the write queue's free room: clients come first */

    n = ngx_min(NGX_RBCS_EXPIRY_BATCH, ngx_rbcs_batch_room() / 2);

    if (ngx_rbcs_expiry_pending || n == 0 || !ngx_rbcs_mysql_ready()) {
        goto later;
    }

    pool = ngx_create_pool(4096, ev->log);
    if (pool == NULL) {
        goto later;
    }

    q = ngx_rbcs_mysql_create(pool, ev->log);
    if (q == NULL) {
        goto failed;
    }

    q->sql.data = ngx_pnalloc(pool, 256);
    if (q->sql.data == NULL) {
        goto failed;
    }

    q->sql.len = ngx_sprintf(q->sql.data, "SELECT transaction_id,"
                             " source_account, TIMESTAMPDIFF(MICROSECOND,"
                             " expires_at, UTC_TIMESTAMP(3)) DIV 1000"
                             " AS overdue_ms FROM holds WHERE expires_at <="
                             " UTC_TIMESTAMP(3) ORDER BY expires_at LIMIT %ui",
                             n)
                 - q->sql.data;
    ngx_rbcs_expiry_limit = n;
    q->idempotent = 1;
    q->handler = ngx_rbcs_transfer_expiry_found;
    q->data = pool;

    if (ngx_rbcs_mysql_run(q) == NGX_OK) {
        return;
    }

failed:

    ngx_destroy_pool(pool);

later:

    ngx_add_timer(ev, NGX_RBCS_EXPIRY_INTERVAL);
}


static void
ngx_rbcs_transfer_expiry_found(ngx_rbcs_mysql_query_t *q)
{
    off_t                 lag;
    ngx_str_t            *id, *source, *overdue;
    ngx_uint_t            i, n, answered, col[3];
    ngx_pool_t           *pool;
    ngx_rbcs_batch_op_t  *op;

    pool = q->data;
    answered = (q->rc == NGX_RBCS_MYSQL_OK
                && ngx_rbcs_mysql_columns(q, 0,
                                          ngx_rbcs_transfer_expiry_columns,
                                          col)
                   == NGX_OK);
    n = answered ? ngx_rbcs_mysql_rows(q, 0) : 0;

    /* the first row is the oldest; a scan without an answer tells nothing */

    if (n) {
        overdue = ngx_rbcs_mysql_cell(q, 0, 0, col[2]);
        lag = overdue->data ? ngx_atoof(overdue->data, overdue->len) : 0;
        ngx_rbcs_metrics_holds_overdue(1, lag > 0 ? (uint64_t) lag : 0);

    } else if (answered) {
        ngx_rbcs_metrics_holds_overdue(0, 0);
    }

    for (i = 0; i < n; i++) {
        id = ngx_rbcs_mysql_cell(q, 0, i, col[0]);
        source = ngx_rbcs_mysql_cell(q, 0, i, col[1]);

        if (id->data == NULL || source->data == NULL) {
            break;
        }

        op = ngx_rbcs_batch_op_create(ngx_cycle->log);
        if (op == NULL) {
            break;
        }

        op->kind = NGX_RBCS_LEDGER_EXPIRE;
        op->handler = ngx_rbcs_transfer_expired;

        if ((op->id.data = ngx_pstrdup(op->pool, id)) == NULL
            || (op->source.data = ngx_pstrdup(op->pool, source)) == NULL)
        {
            ngx_rbcs_batch_cancel(op);
            break;
        }

        op->id.len = id->len;
        op->source.len = source->len;

        if (ngx_rbcs_batch_submit(op) != NGX_OK) {
            ngx_rbcs_batch_cancel(op);
            break;
        }

        ngx_rbcs_expiry_pending++;
    }

    ngx_destroy_pool(pool);

    if (!ngx_exiting && !ngx_terminate
        && !ngx_rbcs_expiry_event.timer_set)
    {
        ngx_add_timer(&ngx_rbcs_expiry_event,
                      n == ngx_rbcs_expiry_limit ? 1
                                                 : NGX_RBCS_EXPIRY_INTERVAL);
    }
}


static void
ngx_rbcs_transfer_expired(ngx_rbcs_batch_op_t *op)
{
    ngx_rbcs_expiry_pending--;

    if (op->rc == NGX_RBCS_MYSQL_OK && op->status == NGX_HTTP_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, op->log, 0,
                       "rbcs: hold \"%V\" expired", &op->id);
    }
}
