
/*
 * RBCS: the write path.  Every state change (a transfer or hold, an
 * account opening, an overdraft limit set, a hold's capture, void or
 * expiry) is an operation queued on its worker's writer, which takes
 * whatever queued as one batch when it is free:
 *
 *   round trip 1  START TRANSACTION, the time, every account the batch
 *                 touches locked in key order, the batch's recorded ids;
 *   the judge     (ngx_rbcs_ledger.c) decides each operation in arrival
 *                 order against those rows;
 *   round trip 2  the outcome rows, history entries and audit rows in one
 *                 multi-row INSERT each, one net UPDATE of the accounts,
 *                 COMMIT;
 *
 * then the zone and Redis get each touched account's final state once,
 * and every operation's handler is called.  Operations own their memory
 * (op->pool): a request that goes away leaves its operation to finish.
 */


#ifndef _NGX_RBCS_BATCH_H_INCLUDED_
#define _NGX_RBCS_BATCH_H_INCLUDED_


#include "ngx_rbcs.h"
#include "ngx_rbcs_ledger.h"


/*
 * Rows of transactions and accounts are read by position, not by name:
 * every SELECT of them takes its list from NGX_RBCS_TX_COLUMNS or
 * NGX_RBCS_ACC_COLUMNS, kept here beside the indexes, and every reader
 * checks the width.  Round trip 1 could not go by name anyway: it is one
 * UNION ALL result set whose column names are those of its first SELECT.
 */

/* columns of a transaction row (NGX_RBCS_TX_COLUMNS) */
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
#define NGX_RBCS_TX_FINGERPRINT   18
#define NGX_RBCS_TX_REQ_CURRENCY  19
#define NGX_RBCS_TX_HOLD          20
#define NGX_RBCS_TX_EXPIRES       21
#define NGX_RBCS_TX_CAPTURED      22
#define NGX_RBCS_TX_SRC_AVAILABLE 23
#define NGX_RBCS_TX_RES_BALANCE   24   /* the source after a resolution */
#define NGX_RBCS_TX_RES_VERSION   25
#define NGX_RBCS_TX_RES_AVAILABLE 26
#define NGX_RBCS_TX_N             27

#define NGX_RBCS_TX_COLUMNS                                                  \
    "'found', http_status, code, detail, transaction_id, source_account, "    \
    "destination_account, amount, amount_text, currency, scale, status, "     \
    "client_ts, created_at, source_balance, destination_balance, "            \
    "source_version, destination_version, fingerprint, request_currency, "    \
    "hold, expires_at, captured_amount, source_available, "                   \
    "resolved_source_balance, resolved_source_version, "                      \
    "resolved_source_available"

/* columns of an account row (NGX_RBCS_ACC_COLUMNS) */
#define NGX_RBCS_ACC_RESULT       0
#define NGX_RBCS_ACC_NUMBER       1
#define NGX_RBCS_ACC_CURRENCY     2
#define NGX_RBCS_ACC_SCALE        3
#define NGX_RBCS_ACC_BALANCE      4
#define NGX_RBCS_ACC_VERSION      5
#define NGX_RBCS_ACC_CREATED      6
#define NGX_RBCS_ACC_UPDATED      7
#define NGX_RBCS_ACC_INITIAL      8
#define NGX_RBCS_ACC_KIND         9
#define NGX_RBCS_ACC_LIMIT        10
#define NGX_RBCS_ACC_HELD         11
#define NGX_RBCS_ACC_OPENING_LIMIT 12
#define NGX_RBCS_ACC_N            13

/*
 * Round trip 1 reads these in one result set with the transaction columns
 * (a UNION), whose types merge column by column: the limits are read as
 * text so that the transaction rows' scale and client_ts beside them are
 * not turned into DECIMALs.
 */
#define NGX_RBCS_ACC_FIELDS                                                  \
    "account_number, currency, scale, balance, version, created_at, "         \
    "updated_at, initial_balance, kind, CAST(overdraft_limit AS CHAR), "      \
    "held_balance, CAST(opening_limit AS CHAR)"

#define NGX_RBCS_ACC_COLUMNS  "'found', " NGX_RBCS_ACC_FIELDS


typedef struct ngx_rbcs_batch_op_s  ngx_rbcs_batch_op_t;

typedef void (*ngx_rbcs_batch_handler_pt)(ngx_rbcs_batch_op_t *op);


struct ngx_rbcs_batch_op_s {
    unsigned                   kind;        /* NGX_RBCS_LEDGER_... */

    /* inputs, in op->pool */
    ngx_str_t                  id;          /* a transfer's, a hold's */
    ngx_str_t                  source;      /* an opening's account */
    ngx_str_t                  destination;
    ngx_str_t                  amount;      /* as given (a capture's:
                                               empty for the whole hold) */
    ngx_str_t                  amount_key;  /* normalized */
    ngx_rbcs_currency_t       *currency;    /* requested, or the opening's */
    ngx_str_t                  initial;     /* an opening's, as given */
    ngx_str_t                  limit;       /* an opening's overdraft limit
                                               (empty: none), a limit's */
    unsigned                   external:1;  /* an opening's kind */
    unsigned                   hold:1;      /* a transfer that holds */
    ngx_uint_t                 expires_in;  /* a hold's, in seconds (0:
                                               never) */
    ngx_str_t                  actor;       /* authenticated key id */
    int64_t                    client_ts;
    unsigned                   has_ts:1;

    /*
     * The answer.  rc NGX_OK: status, and a row (a transaction or account
     * row by the columns above) or a problem (code, detail).  Otherwise
     * the database could not be used: unknown says whether the operation
     * may have been applied.
     */
    ngx_int_t                  rc;
    ngx_uint_t                 status;
    ngx_str_t                 *row;
    ngx_str_t                  code;
    ngx_str_t                  detail;
    unsigned                   unknown:1;

    ngx_rbcs_batch_handler_pt  handler;
    void                      *data;
    ngx_pool_t                *pool;
    ngx_log_t                 *log;
    ngx_msec_t                 start;

    /* the writer's */
    ngx_queue_t                queue;
    ngx_event_t                timer;
    ngx_uint_t                 state;
    unsigned                   solo:1;
};


ngx_int_t ngx_rbcs_batch_init_process(ngx_cycle_t *cycle,
    ngx_rbcs_mysql_conf_t *conf);
void ngx_rbcs_batch_exit_process(ngx_cycle_t *cycle);

ngx_rbcs_batch_op_t *ngx_rbcs_batch_op_create(ngx_log_t *log);
ngx_int_t ngx_rbcs_batch_submit(ngx_rbcs_batch_op_t *op);
ngx_uint_t ngx_rbcs_batch_room(void);
void ngx_rbcs_batch_cancel(ngx_rbcs_batch_op_t *op);


#endif /* _NGX_RBCS_BATCH_H_INCLUDED_ */
