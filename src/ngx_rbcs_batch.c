
/*
 * RBCS: the write path (see ngx_rbcs_batch.h).
 *
 * One writer per worker, with up to rbcs_mysql_writers batches in flight.
 * Operations that arrive while they run wait in the writer's queue
 * (bounded, with a timeout) and go together as the next batch, up to
 * rbcs_mysql_batch_size: a lone operation at low load goes at once, a
 * busy worker sends what queued.
 *
 * Failure paths.  A deadlock, a lock wait timeout, or a duplicate key (an
 * id or account that another worker or pod committed between the two
 * round trips) rolls the whole batch back and runs it again in the same
 * order, with its recorded ids now read as replays.  A connection lost or
 * timed out after round trip 2 was sent leaves the commit unknown: the
 * batch runs again, and an operation whose outcome it had recorded finds
 * it recorded and answers it as its own (201); when the database cannot
 * be reached again within the retries, 503 (retrying with the same id is
 * safe).  Any other error of round trip 2 (a backstop of the schema that
 * refused what the judge allowed) runs each operation of the batch again
 * alone, so that one operation fails on its own.
 */


#include <errmsg.h>
#include <mysqld_error.h>

#include "ngx_rbcs_batch.h"
#include "ngx_rbcs_mysql.h"
#include "ngx_rbcs_amount.h"
#include "ngx_rbcs_publish.h"
#include "ngx_rbcs_metrics.h"
#include "ngx_rbcs_generation.h"
#include "ngx_rbcs_time.h"


#define NGX_RBCS_OP_NEW       0
#define NGX_RBCS_OP_QUEUED    1
#define NGX_RBCS_OP_RUNNING   2
#define NGX_RBCS_OP_DONE      3

/*
 * Round trip 1 answers in one result set, which the server sends at once
 * (it sends each statement's answer as that statement ends): a row of the
 * batch's time, the accounts, then the recorded outcomes, each kind
 * tagged in column 0 and padded with NULLs to a transaction row's width.
 */
#define NGX_RBCS_RT1_NOW       "now"
#define NGX_RBCS_RT1_ACCOUNT   "account"

#define NGX_RBCS_RT1_HEAD                                                    \
    "START TRANSACTION;SELECT '" NGX_RBCS_RT1_NOW "',UTC_TIMESTAMP(3),"      \
    "NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL," \
    "NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL"                 \
    " UNION ALL (SELECT '" NGX_RBCS_RT1_ACCOUNT "',"                         \
    NGX_RBCS_ACC_FIELDS ",SYSDATE(3),NULL,NULL,NULL,NULL,NULL,NULL,NULL,"    \
    "NULL,NULL,NULL,NULL,NULL,NULL FROM accounts WHERE account_number IN ("
#define NGX_RBCS_RT1_LOCK      ") ORDER BY account_number FOR UPDATE)"
#define NGX_RBCS_RT1_RECORDS                                                 \
    " UNION ALL (SELECT " NGX_RBCS_TX_COLUMNS " FROM transactions"           \
    " WHERE transaction_id IN ("

/*
 * A batch that resolves holds reads its ids' rows locked: after the lock
 * of the hold's source, which every resolution of it takes first, the
 * hold's latest committed state.
 */
#define NGX_RBCS_RT1_RECORDS_END         "))"
#define NGX_RBCS_RT1_RECORDS_LOCKED_END  ") FOR UPDATE)"

/*
 * An account row of round trip 1 also carries the time it was read, after
 * its lock: UTC_TIMESTAMP() is the statement's start, before any lock wait
 */
#define NGX_RBCS_RT1_LOCKED_AT  NGX_RBCS_ACC_N

/* a capture, void or expiry that resolved its hold */
#define ngx_rbcs_batch_resolved(j)                                           \
    ((j)->kind >= NGX_RBCS_LEDGER_CAPTURE                                    \
     && (j)->outcome == NGX_RBCS_LEDGER_APPLIED)

/* which judged operations a statement of round trip 2 writes a row of */
#define NGX_RBCS_BATCH_RECORDED   0   /* an outcome recorded */
#define NGX_RBCS_BATCH_TRANSFERS  1   /* a transfer's outcome recorded */
#define NGX_RBCS_BATCH_HOLDS      2   /* a hold placed */
#define NGX_RBCS_BATCH_RESOLVED   3   /* a hold resolved */
#define NGX_RBCS_BATCH_ENTRIES    4   /* a balance moved by an opening, a
                                         transfer or a capture */

/* the columns the net update of the accounts changes */
#define NGX_RBCS_BATCH_BALANCE    0
#define NGX_RBCS_BATCH_VERSION    1
#define NGX_RBCS_BATCH_HELD       2
#define NGX_RBCS_BATCH_LIMIT      3

#define ngx_rbcs_batch_cpylit(p, lit)  ngx_cpymem(p, lit, sizeof(lit) - 1)

/* room for a DECIMAL(36,18) text and a sign */
#define NGX_RBCS_DECIMAL_LEN   (NGX_RBCS_AMOUNT_MAX_LEN + 1)


typedef struct ngx_rbcs_batch_writer_s  ngx_rbcs_batch_writer_t;


/* a batch in flight, and what one try of it needs */

typedef struct {
    ngx_rbcs_batch_writer_t   *writer;
    ngx_log_t                 *log;
    ngx_rbcs_batch_op_t      **ops;
    ngx_uint_t                 nops;
    ngx_rbcs_ledger_op_t      *judged;
    ngx_rbcs_ledger_account_t *accounts;
    ngx_uint_t                 naccounts;
    ngx_str_t                 *numbers;    /* the accounts', sorted */
    ngx_rbcs_ledger_record_t  *records;
    ngx_str_t                 *ids;
    ngx_uint_t                 nrecords;
    ngx_pool_t                *pool;       /* one try's memory */
    ngx_rbcs_mysql_query_t    *query;
    ngx_str_t                  now;
    ngx_uint_t                 attempts;
    ngx_uint_t                 gen_mark;   /* round trip 2 moves the cache
                                              generation */
    ngx_uint_t                 resolves;   /* captures, voids, expiries */
    ngx_event_t                retry;
    unsigned                   busy:1;
} ngx_rbcs_batch_t;


/* a worker's write path: its queue and its batches in flight */

struct ngx_rbcs_batch_writer_s {
    ngx_rbcs_mysql_conf_t     *conf;
    ngx_log_t                 *log;
    ngx_queue_t                queue;
    ngx_uint_t                 nqueued;
    ngx_rbcs_batch_t          *batches;
    ngx_uint_t                 nbatches;
    ngx_event_t                kick;
};


/* a row of a statement of round trip 2, of one judged operation */

typedef u_char *(*ngx_rbcs_batch_row_pt)(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);


static void ngx_rbcs_batch_kick(ngx_event_t *ev);
static void ngx_rbcs_batch_start(ngx_rbcs_batch_writer_t *w);
static void ngx_rbcs_batch_try(ngx_rbcs_batch_t *b);
static void ngx_rbcs_batch_retry_handler(ngx_event_t *ev);
static ngx_int_t ngx_rbcs_batch_slots(ngx_rbcs_batch_t *b);
static ngx_uint_t ngx_rbcs_batch_sort(ngx_str_t *keys, ngx_uint_t n);
static ngx_int_t ngx_rbcs_batch_round1(ngx_rbcs_batch_t *b,
    ngx_str_t *sql);
static void ngx_rbcs_batch_round1_done(ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_batch_read(ngx_rbcs_batch_t *b,
    ngx_rbcs_mysql_query_t *q);
static ngx_int_t ngx_rbcs_batch_read_account(ngx_rbcs_batch_t *b,
    ngx_str_t *row);
static void ngx_rbcs_batch_later_time(ngx_str_t *now, ngx_str_t *t);
static ngx_int_t ngx_rbcs_batch_read_record(ngx_rbcs_batch_t *b,
    ngx_str_t *row);
static ngx_int_t ngx_rbcs_batch_read_hold(ngx_rbcs_ledger_record_t *rec,
    ngx_str_t *row);
static ngx_int_t ngx_rbcs_batch_judge(ngx_rbcs_batch_t *b);
static ngx_int_t ngx_rbcs_batch_round2(ngx_rbcs_batch_t *b,
    ngx_str_t *sql, ngx_uint_t compound);
static u_char *ngx_rbcs_batch_sql_accounts(ngx_rbcs_batch_t *b,
    u_char *p);
static ngx_uint_t ngx_rbcs_batch_writes(ngx_rbcs_ledger_op_t *j,
    ngx_uint_t which);
static u_char *ngx_rbcs_batch_rows(ngx_rbcs_batch_t *b, u_char *p,
    ngx_uint_t which, const char *head, const char *sep,
    ngx_rbcs_batch_row_pt row, const char *tail);
static u_char *ngx_rbcs_batch_row_transaction(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_sql_resolutions(ngx_rbcs_batch_t *b,
    u_char *p);
static u_char *ngx_rbcs_batch_row_resolution(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_sql_holds(ngx_rbcs_batch_t *b, u_char *p);
static u_char *ngx_rbcs_batch_row_hold(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_row_id(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_sql_all_found(u_char *p, ngx_uint_t n,
    ngx_uint_t compound);
static u_char *ngx_rbcs_batch_row_entry(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_row_audit(ngx_rbcs_batch_t *b,
    ngx_rbcs_batch_op_t *op, ngx_rbcs_ledger_op_t *j, u_char *p);
static u_char *ngx_rbcs_batch_sql_update(ngx_rbcs_batch_t *b,
    u_char *p);
static u_char *ngx_rbcs_batch_sql_excess(ngx_rbcs_batch_t *b, u_char *p,
    ngx_uint_t limits);
static ngx_uint_t ngx_rbcs_batch_updates(ngx_rbcs_ledger_account_t *a,
    ngx_uint_t col);
static u_char *ngx_rbcs_batch_sql_when(ngx_rbcs_batch_t *b, u_char *p,
    ngx_uint_t col);
static u_char *ngx_rbcs_batch_sql_in(ngx_rbcs_batch_t *b, u_char *p,
    ngx_uint_t col);
static void ngx_rbcs_batch_round2_done(ngx_rbcs_mysql_query_t *q);
static void ngx_rbcs_batch_committed(ngx_rbcs_batch_t *b);
static ngx_int_t ngx_rbcs_batch_answer(ngx_rbcs_batch_t *b,
    ngx_uint_t i);
static ngx_str_t *ngx_rbcs_batch_tx_row(ngx_rbcs_batch_t *b,
    ngx_uint_t i);
static ngx_str_t *ngx_rbcs_batch_resolved_row(ngx_rbcs_batch_t *b,
    ngx_uint_t i);
static ngx_str_t *ngx_rbcs_batch_pending_row(ngx_rbcs_batch_t *b,
    ngx_str_t *was);
static ngx_str_t *ngx_rbcs_batch_account_row(ngx_rbcs_batch_t *b,
    ngx_uint_t i);
static void ngx_rbcs_batch_spread(ngx_rbcs_batch_t *b);
static void ngx_rbcs_batch_later(ngx_rbcs_batch_t *b,
    ngx_uint_t err);
static void ngx_rbcs_batch_fail(ngx_rbcs_batch_t *b);
static void ngx_rbcs_batch_split(ngx_rbcs_batch_t *b);
static void ngx_rbcs_batch_finish(ngx_rbcs_batch_t *b);
static void ngx_rbcs_batch_deliver(ngx_rbcs_batch_op_t *op);
static void ngx_rbcs_batch_op_timer(ngx_event_t *ev);
static int ngx_libc_cdecl ngx_rbcs_batch_cmp(const void *a, const void *b);
static ngx_rbcs_ledger_account_t *ngx_rbcs_batch_account(ngx_rbcs_batch_t *b,
    ngx_str_t *number);
static ngx_int_t ngx_rbcs_batch_search(ngx_str_t *keys, ngx_uint_t n,
    ngx_str_t *key);
static ngx_rbcs_ledger_str_t ngx_rbcs_batch_lstr(ngx_str_t *s);
static ngx_rbcs_ledger_str_t ngx_rbcs_batch_expiry(ngx_rbcs_batch_t *b,
    ngx_uint_t seconds);
static ngx_str_t ngx_rbcs_batch_nstr(ngx_rbcs_ledger_str_t *s);
static ngx_int_t ngx_rbcs_batch_value(ngx_str_t *decimal,
    ngx_rbcs_int128_t *value);
static u_char *ngx_rbcs_batch_decimal(u_char *p, ngx_rbcs_int128_t v);
static ngx_int_t ngx_rbcs_batch_text(ngx_pool_t *pool, ngx_str_t *s,
    u_char *p, size_t len);
static u_char *ngx_rbcs_batch_quoted(u_char *p, ngx_str_t *s);


static ngx_rbcs_batch_writer_t  *ngx_rbcs_batch_writer;


ngx_int_t
ngx_rbcs_batch_init_process(ngx_cycle_t *cycle, ngx_rbcs_mysql_conf_t *conf)
{
    ngx_uint_t                k, n;
    ngx_rbcs_batch_t         *b;
    ngx_rbcs_batch_writer_t  *w;

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_rbcs_batch_writer_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->conf = conf;
    w->log = cycle->log;
    ngx_queue_init(&w->queue);

    w->kick.handler = ngx_rbcs_batch_kick;
    w->kick.data = w;
    w->kick.log = cycle->log;

    w->nbatches = conf->writers;
    w->batches = ngx_pcalloc(cycle->pool,
                             w->nbatches * sizeof(ngx_rbcs_batch_t));
    if (w->batches == NULL) {
        return NGX_ERROR;
    }

    n = conf->batch_size;

    for (k = 0; k < w->nbatches; k++) {
        b = &w->batches[k];

        b->writer = w;
        b->log = cycle->log;

        b->ops = ngx_pcalloc(cycle->pool, n * sizeof(ngx_rbcs_batch_op_t *));

        /* 128-bit integers inside: aligned as the compiler expects */

        b->judged = ngx_pmemalign(cycle->pool,
                                  n * sizeof(ngx_rbcs_ledger_op_t),
                                  _Alignof(ngx_rbcs_ledger_op_t));
        b->accounts = ngx_pmemalign(cycle->pool,
                                   2 * n * sizeof(ngx_rbcs_ledger_account_t),
                                   _Alignof(ngx_rbcs_ledger_account_t));
        b->records = ngx_pmemalign(cycle->pool,
                                   n * sizeof(ngx_rbcs_ledger_record_t),
                                   _Alignof(ngx_rbcs_ledger_record_t));
        b->ids = ngx_pcalloc(cycle->pool, n * sizeof(ngx_str_t));

        if (b->ops == NULL || b->judged == NULL || b->accounts == NULL
            || b->records == NULL || b->ids == NULL)
        {
            return NGX_ERROR;
        }

        /* a batch waiting out its backoff holds requests: exits wait */

        b->retry.handler = ngx_rbcs_batch_retry_handler;
        b->retry.data = b;
        b->retry.log = cycle->log;
        b->retry.cancelable = 0;
    }

    ngx_rbcs_batch_writer = w;
    ngx_rbcs_metrics_write_queue_limit(conf->queue_size);

    return NGX_OK;
}


void
ngx_rbcs_batch_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                k;
    ngx_rbcs_batch_writer_t  *w;

    w = ngx_rbcs_batch_writer;
    if (w == NULL) {
        return;
    }

    if (w->kick.posted) {
        ngx_delete_posted_event(&w->kick);
    }

    for (k = 0; k < w->nbatches; k++) {
        if (w->batches[k].pool) {
            ngx_destroy_pool(w->batches[k].pool);
            w->batches[k].pool = NULL;
        }
    }

    ngx_rbcs_batch_writer = NULL;
}


/* an operation with a pool of its own, which lives until it is answered */

ngx_rbcs_batch_op_t *
ngx_rbcs_batch_op_create(ngx_log_t *log)
{
    ngx_pool_t           *pool;
    ngx_rbcs_batch_op_t  *op;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_rbcs_batch_op_t));
    if (op == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    op->pool = pool;
    op->log = log;
    op->start = ngx_current_msec;

    op->timer.handler = ngx_rbcs_batch_op_timer;
    op->timer.data = op;
    op->timer.log = log;

    return op;
}


/*
 * Queue an operation.  NGX_OK: its handler will be called from an event
 * handler.  NGX_DECLINED: no database connection can be had, or the queue
 * is full (the caller answers 503 and keeps the operation).
 */

ngx_int_t
ngx_rbcs_batch_submit(ngx_rbcs_batch_op_t *op)
{
    ngx_rbcs_batch_writer_t  *w;

    w = ngx_rbcs_batch_writer;

    if (w == NULL || !ngx_rbcs_mysql_ready()
        || w->nqueued >= w->conf->queue_size)
    {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_QUEUE_FULL);
        return NGX_DECLINED;
    }

    ngx_queue_insert_tail(&w->queue, &op->queue);
    w->nqueued++;
    op->state = NGX_RBCS_OP_QUEUED;
    ngx_add_timer(&op->timer, w->conf->queue_timeout);
    ngx_rbcs_metrics_write_queue(w->nqueued);

    /* from the event loop: what arrives in the same round joins it */

    if (!w->kick.posted) {
        ngx_post_event(&w->kick, &ngx_posted_events);
    }

    return NGX_OK;
}


/* how many more operations the write queue takes now */

ngx_uint_t
ngx_rbcs_batch_room(void)
{
    ngx_rbcs_batch_writer_t  *w;

    w = ngx_rbcs_batch_writer;

    if (w == NULL || w->nqueued >= w->conf->queue_size) {
        return 0;
    }

    return w->conf->queue_size - w->nqueued;
}


/* the operation's owner goes away: it no longer wants an answer */

void
ngx_rbcs_batch_cancel(ngx_rbcs_batch_op_t *op)
{
    switch (op->state) {

    case NGX_RBCS_OP_QUEUED:
        ngx_queue_remove(&op->queue);
        ngx_rbcs_batch_writer->nqueued--;
        ngx_rbcs_metrics_write_queue(ngx_rbcs_batch_writer->nqueued);

        if (op->timer.timer_set) {
            ngx_del_timer(&op->timer);
        }

        ngx_destroy_pool(op->pool);
        return;

    case NGX_RBCS_OP_RUNNING:
        /* it is in a batch: judged and written all the same, not answered */
        op->handler = NULL;
        return;

    case NGX_RBCS_OP_NEW:
        ngx_destroy_pool(op->pool);
        return;

    default:
        /* being answered: the writer frees it */
        return;
    }
}


static void
ngx_rbcs_batch_op_timer(ngx_event_t *ev)
{
    ngx_rbcs_batch_op_t  *op;

    op = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "rbcs: no mysql connection within the queue timeout");

    ngx_queue_remove(&op->queue);
    ngx_rbcs_batch_writer->nqueued--;
    ngx_rbcs_metrics_write_queue(ngx_rbcs_batch_writer->nqueued);

    op->rc = NGX_RBCS_MYSQL_EUNAVAIL;
    ngx_rbcs_batch_deliver(op);
}


static void
ngx_rbcs_batch_kick(ngx_event_t *ev)
{
    ngx_rbcs_batch_start(ev->data);
}


/*
 * each free batch takes what queued, in order; while one is in flight,
 * another starts only for a quarter of a full batch or more: a batch has
 * a fixed cost in the database (two round trips, a commit), and a second
 * one started for a few operations takes them from the next batch, which
 * would have carried them for less
 */

static void
ngx_rbcs_batch_start(ngx_rbcs_batch_writer_t *w)
{
    ngx_uint_t            k, n, busy;
    ngx_queue_t          *x;
    ngx_rbcs_batch_t     *b;
    ngx_rbcs_batch_op_t  *op;

    busy = 0;

    for (k = 0; k < w->nbatches; k++) {
        busy += w->batches[k].busy;
    }

    for (k = 0; k < w->nbatches && !ngx_queue_empty(&w->queue); k++) {
        b = &w->batches[k];

        if (b->busy) {
            continue;
        }

        if (busy && w->nqueued < ngx_max(w->conf->batch_size / 4, 1)) {
            break;
        }

        busy++;
        n = 0;

        while (!ngx_queue_empty(&w->queue) && n < w->conf->batch_size) {
            x = ngx_queue_head(&w->queue);
            op = ngx_queue_data(x, ngx_rbcs_batch_op_t, queue);

            /* an operation whose batch failed oddly goes alone */

            if (op->solo && n > 0) {
                break;
            }

            ngx_queue_remove(x);
            w->nqueued--;

            if (op->timer.timer_set) {
                ngx_del_timer(&op->timer);
            }

            op->state = NGX_RBCS_OP_RUNNING;
            b->ops[n++] = op;

            if (op->solo) {
                break;
            }
        }

        b->nops = n;
        b->busy = 1;
        b->attempts = 0;

        ngx_rbcs_metrics_write_queue(w->nqueued);

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                       "rbcs: write batch of %ui operations", n);

        ngx_rbcs_metrics_batch(n);

        ngx_rbcs_batch_try(b);
    }
}


/* one try of the batch: round trip 1, from the start of its transaction */

static void
ngx_rbcs_batch_try(ngx_rbcs_batch_t *b)
{
    ngx_str_t                sql;
    ngx_rbcs_mysql_query_t  *q;

    if (b->pool) {
        ngx_destroy_pool(b->pool);
    }

    b->pool = ngx_create_pool(16384, b->log);
    if (b->pool == NULL) {
        ngx_rbcs_batch_fail(b);
        return;
    }

    if (ngx_rbcs_batch_slots(b) != NGX_OK
        || ngx_rbcs_batch_round1(b, &sql) != NGX_OK)
    {
        ngx_rbcs_batch_fail(b);
        return;
    }

    q = ngx_rbcs_mysql_create(b->pool, b->log);
    if (q == NULL) {
        ngx_rbcs_batch_fail(b);
        return;
    }

    q->sql = sql;
    q->transaction = 1;
    q->hold = 1;
    q->handler = ngx_rbcs_batch_round1_done;
    q->data = b;

    b->query = q;

    if (ngx_rbcs_mysql_run(q) != NGX_OK) {
        b->query = NULL;
        ngx_rbcs_batch_fail(b);
    }
}


/*
 * The accounts the batch touches and its ids, each once, in key order
 * (the order round trip 1 locks in), for lookups by binary search.
 */

static ngx_int_t
ngx_rbcs_batch_slots(ngx_rbcs_batch_t *b)
{
    ngx_uint_t             i, n, k;
    ngx_str_t             *numbers;
    ngx_rbcs_batch_op_t   *op;

    numbers = ngx_palloc(b->pool, 2 * b->nops * sizeof(ngx_str_t));
    if (numbers == NULL) {
        return NGX_ERROR;
    }

    n = 0;
    k = 0;
    b->resolves = 0;

    for (i = 0; i < b->nops; i++) {
        op = b->ops[i];
        numbers[n++] = op->source;

        switch (op->kind) {

        case NGX_RBCS_LEDGER_TRANSFER:
        case NGX_RBCS_LEDGER_CAPTURE:
            numbers[n++] = op->destination;
            b->ids[k++] = op->id;
            break;

        case NGX_RBCS_LEDGER_VOID:
        case NGX_RBCS_LEDGER_EXPIRE:
            b->ids[k++] = op->id;
            break;

        default:
            break;
        }

        if (op->kind >= NGX_RBCS_LEDGER_CAPTURE) {
            b->resolves++;
        }
    }

    b->numbers = numbers;
    b->naccounts = ngx_rbcs_batch_sort(numbers, n);
    b->nrecords = ngx_rbcs_batch_sort(b->ids, k);

    ngx_memzero(b->accounts,
                b->naccounts * sizeof(ngx_rbcs_ledger_account_t));
    ngx_memzero(b->records, b->nrecords * sizeof(ngx_rbcs_ledger_record_t));

    for (i = 0; i < b->naccounts; i++) {
        b->accounts[i].number = ngx_rbcs_batch_lstr(&numbers[i]);
    }

    return NGX_OK;
}


/* the n keys sorted, each once: how many there are */

static ngx_uint_t
ngx_rbcs_batch_sort(ngx_str_t *keys, ngx_uint_t n)
{
    ngx_uint_t  i, k;

    ngx_qsort(keys, n, sizeof(ngx_str_t), ngx_rbcs_batch_cmp);

    for (i = 0, k = 0; i < n; i++) {
        if (k == 0 || ngx_rbcs_batch_cmp(&keys[i], &keys[k - 1]) != 0) {
            keys[k++] = keys[i];
        }
    }

    return k;
}


/*
 * START TRANSACTION; the time of the batch; every account it touches,
 * locked in key order (as every batch locks, so batches never wait for
 * each other crosswise); its ids' recorded outcomes.
 */

static ngx_int_t
ngx_rbcs_batch_round1(ngx_rbcs_batch_t *b, ngx_str_t *sql)
{
    u_char      *p;
    size_t       size;
    ngx_uint_t   i;

    size = sizeof(NGX_RBCS_RT1_HEAD NGX_RBCS_RT1_LOCK NGX_RBCS_RT1_RECORDS
                  NGX_RBCS_RT1_RECORDS_LOCKED_END)
           + (b->naccounts + b->nrecords) * (NGX_RBCS_ID_MAX_LEN + 3);

    sql->data = ngx_pnalloc(b->pool, size);
    if (sql->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(sql->data, NGX_RBCS_RT1_HEAD,
                   sizeof(NGX_RBCS_RT1_HEAD) - 1);

    /* every value is a validated id: no quoting needed */

    for (i = 0; i < b->naccounts; i++) {
        p = ngx_sprintf(p, "%s'%V'", i ? "," : "", &b->numbers[i]);
    }

    p = ngx_cpymem(p, NGX_RBCS_RT1_LOCK, sizeof(NGX_RBCS_RT1_LOCK) - 1);

    if (b->nrecords) {
        p = ngx_cpymem(p, NGX_RBCS_RT1_RECORDS,
                       sizeof(NGX_RBCS_RT1_RECORDS) - 1);

        for (i = 0; i < b->nrecords; i++) {
            p = ngx_sprintf(p, "%s'%V'", i ? "," : "", &b->ids[i]);
        }

        p = b->resolves
            ? ngx_cpymem(p, NGX_RBCS_RT1_RECORDS_LOCKED_END,
                         sizeof(NGX_RBCS_RT1_RECORDS_LOCKED_END) - 1)
            : ngx_cpymem(p, NGX_RBCS_RT1_RECORDS_END,
                         sizeof(NGX_RBCS_RT1_RECORDS_END) - 1);
    }

    sql->len = p - sql->data;

    return NGX_OK;
}


static void
ngx_rbcs_batch_round1_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_str_t                 sql;
    ngx_rbcs_mysql_query_t   *q2;
    ngx_rbcs_batch_t         *b;

    b = q->data;
    b->query = NULL;

    if (q->rc != NGX_RBCS_MYSQL_OK) {

        /*
         * A lock conflict, or a connection lost: nothing was written, the
         * batch goes again.  No connection, or no answer within the query
         * timeout (a frozen server): 503 now.
         */

        if (q->rc == NGX_RBCS_MYSQL_ESQL
            || (q->rc == NGX_RBCS_MYSQL_EUNKNOWN && q->err == CR_SERVER_LOST))
        {
            ngx_rbcs_batch_later(b, q->err);
            return;
        }

        ngx_rbcs_batch_fail(b);
        return;
    }

    if (ngx_rbcs_batch_read(b, q) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "rbcs: unreadable rows in a write batch");
        ngx_rbcs_batch_fail(b);

        /* the held connection rolls back as it is given up */
        return;
    }

    if (ngx_rbcs_batch_judge(b) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "rbcs: a hold's expiry could not be computed");
        ngx_rbcs_batch_fail(b);
        return;
    }

    q2 = ngx_rbcs_mysql_create(b->pool, b->log);

    if (q2 == NULL
        || ngx_rbcs_batch_round2(b, &sql, ngx_rbcs_mysql_compound(q))
           != NGX_OK)
    {
        ngx_rbcs_batch_fail(b);
        return;
    }

    q2->sql = sql;
    q2->transaction = 1;
    q2->handler = ngx_rbcs_batch_round2_done;
    q2->data = b;

    b->query = q2;

    if (ngx_rbcs_mysql_continue(q2, q) != NGX_OK) {
        /* the connection went, with the transaction: nothing written */
        b->query = NULL;
        ngx_rbcs_batch_later(b, 0);
    }
}


/*
 * round trip 1's rows into the judge's accounts and records, by position:
 * a UNION ALL answers the first SELECT's column names for every row
 */

static ngx_int_t
ngx_rbcs_batch_read(ngx_rbcs_batch_t *b, ngx_rbcs_mysql_query_t *q)
{
    ngx_str_t                *row;
    ngx_uint_t                i, n;
    ngx_rbcs_mysql_result_t  *rs;

    rs = q->results.elts;

    if (q->results.nelts != 1 || rs[0].ncols != NGX_RBCS_TX_N) {
        return NGX_ERROR;
    }

    b->now.data = NULL;

    n = ngx_rbcs_mysql_rows(q, 0);

    for (i = 0; i < n; i++) {
        row = ngx_rbcs_mysql_cell(q, 0, i, 0);

        if (row == NULL || row[0].data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_rbcs_str_is(&row[0], NGX_RBCS_RT1_NOW)) {
            if (row[1].data == NULL || b->now.data != NULL) {
                return NGX_ERROR;
            }

            b->now = row[1];
            continue;
        }

        if (ngx_rbcs_str_is(&row[0], NGX_RBCS_RT1_ACCOUNT)) {
            if (ngx_rbcs_batch_read_account(b, row) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_rbcs_batch_read_record(b, row) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (b->now.data == NULL) {
        return NGX_ERROR;
    }

    /*
     * The batch's time (createdAt, updatedAt, the judge's now) is the
     * latest of the statement's start, the time each account was locked,
     * and each account's last change: read after the lock waits, a hold's
     * expiry is judged against the time the hold was locked, and an
     * account's history never goes back in time.
     */

    for (i = 0; i < b->naccounts; i++) {
        if (!b->accounts[i].exists) {
            continue;
        }

        row = b->accounts[i].data;

        ngx_rbcs_batch_later_time(&b->now, &row[NGX_RBCS_RT1_LOCKED_AT]);
        ngx_rbcs_batch_later_time(&b->now, &row[NGX_RBCS_ACC_UPDATED]);
    }

    return NGX_OK;
}


/* t, if it is a time of the same form later than *now */

static void
ngx_rbcs_batch_later_time(ngx_str_t *now, ngx_str_t *t)
{
    if (t->data != NULL && t->len == now->len
        && ngx_memcmp(t->data, now->data, t->len) > 0)
    {
        *now = *t;
    }
}


/* an account row: the judge's starting state of that account */

static ngx_int_t
ngx_rbcs_batch_read_account(ngx_rbcs_batch_t *b, ngx_str_t *row)
{
    ngx_int_t                   scale;
    ngx_rbcs_ledger_account_t  *a;

    a = ngx_rbcs_batch_account(b, &row[NGX_RBCS_ACC_NUMBER]);

    if (a == NULL || a->exists
        || row[NGX_RBCS_ACC_CURRENCY].data == NULL
        || row[NGX_RBCS_ACC_VERSION].data == NULL
        || ngx_rbcs_batch_value(&row[NGX_RBCS_ACC_BALANCE], &a->balance)
           != NGX_OK
        || ngx_rbcs_batch_value(&row[NGX_RBCS_ACC_INITIAL], &a->initial)
           != NGX_OK
        || ngx_rbcs_batch_value(&row[NGX_RBCS_ACC_LIMIT], &a->limit)
           != NGX_OK
        || ngx_rbcs_batch_value(&row[NGX_RBCS_ACC_OPENING_LIMIT],
                                &a->opening_limit)
           != NGX_OK
        || ngx_rbcs_batch_value(&row[NGX_RBCS_ACC_HELD], &a->held)
           != NGX_OK
        || row[NGX_RBCS_ACC_KIND].data == NULL)
    {
        return NGX_ERROR;
    }

    scale = ngx_atoi(row[NGX_RBCS_ACC_SCALE].data, row[NGX_RBCS_ACC_SCALE].len);
    if (scale == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* from here on the row is an account row like any other query's */

    ngx_str_set(&row[NGX_RBCS_ACC_RESULT], "found");

    a->exists = 1;
    a->external = ngx_rbcs_str_is(&row[NGX_RBCS_ACC_KIND], "EXTERNAL");
    a->currency = ngx_rbcs_batch_lstr(&row[NGX_RBCS_ACC_CURRENCY]);
    a->scale = (unsigned) scale;
    a->version = (uint64_t) ngx_atoof(row[NGX_RBCS_ACC_VERSION].data,
                                      row[NGX_RBCS_ACC_VERSION].len);
    a->data = row;

    return NGX_OK;
}


/* a recorded outcome of one of the batch's ids */

static ngx_int_t
ngx_rbcs_batch_read_record(ngx_rbcs_batch_t *b, ngx_str_t *row)
{
    u_char                    *p, *last;
    ngx_int_t                  ix;
    ngx_rbcs_ledger_record_t  *rec;

    ix = ngx_rbcs_batch_search(b->ids, b->nrecords, &row[NGX_RBCS_TX_ID]);
    if (ix == NGX_ERROR || row[NGX_RBCS_TX_FINGERPRINT].data == NULL) {
        return NGX_ERROR;
    }

    rec = &b->records[ix];

    /* the fingerprint is "source|destination|amount key" */

    p = row[NGX_RBCS_TX_FINGERPRINT].data;
    last = p + row[NGX_RBCS_TX_FINGERPRINT].len;

    p = ngx_strlchr(p, last, '|');
    p = p ? ngx_strlchr(p + 1, last, '|') : NULL;
    if (p == NULL || rec->found) {
        return NGX_ERROR;
    }

    rec->found = 1;
    rec->has_scale = (row[NGX_RBCS_TX_SCALE].data != NULL);
    rec->source = ngx_rbcs_batch_lstr(&row[NGX_RBCS_TX_SOURCE]);
    rec->destination = ngx_rbcs_batch_lstr(&row[NGX_RBCS_TX_DESTINATION]);
    rec->amount_key.data = p + 1;
    rec->amount_key.len = last - (p + 1);
    rec->currency = ngx_rbcs_batch_lstr(&row[NGX_RBCS_TX_CURRENCY]);
    rec->request_currency =
                       ngx_rbcs_batch_lstr(&row[NGX_RBCS_TX_REQ_CURRENCY]);
    rec->data = row;

    return ngx_rbcs_batch_read_hold(rec, row);
}


/* a recorded id as a hold: its state, amount, capture, expiry */

static ngx_int_t
ngx_rbcs_batch_read_hold(ngx_rbcs_ledger_record_t *rec, ngx_str_t *row)
{
    ngx_str_t  *st;

    rec->hold_state = NGX_RBCS_LEDGER_NOT_HOLD;

    if (row[NGX_RBCS_TX_HOLD].len != 1 || row[NGX_RBCS_TX_HOLD].data[0] != '1')
    {
        return NGX_OK;
    }

    st = &row[NGX_RBCS_TX_STATUS];

    if (st->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_rbcs_str_is(st, "PENDING")) {
        rec->hold_state = NGX_RBCS_LEDGER_PENDING;

    } else if (ngx_rbcs_str_is(st, "COMPLETED")) {
        rec->hold_state = NGX_RBCS_LEDGER_CAPTURED;

        if (ngx_rbcs_batch_value(&row[NGX_RBCS_TX_CAPTURED], &rec->captured)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_rbcs_str_is(st, "VOIDED")) {
        rec->hold_state = NGX_RBCS_LEDGER_VOIDED;

    } else if (ngx_rbcs_str_is(st, "EXPIRED")) {
        rec->hold_state = NGX_RBCS_LEDGER_EXPIRED;

    } else {
        /* a hold request that was refused */
        return NGX_OK;
    }

    rec->expires = ngx_rbcs_batch_lstr(&row[NGX_RBCS_TX_EXPIRES]);

    return ngx_rbcs_batch_value(&row[NGX_RBCS_TX_AMOUNT], &rec->hold_amount);
}



static ngx_int_t
ngx_rbcs_batch_judge(ngx_rbcs_batch_t *b)
{
    ngx_uint_t             i;
    ngx_rbcs_uint128_t     units;
    ngx_rbcs_batch_op_t   *op;
    ngx_rbcs_ledger_op_t  *j;

    for (i = 0; i < b->nops; i++) {
        op = b->ops[i];
        j = &b->judged[i];

        ngx_memzero(j, sizeof(ngx_rbcs_ledger_op_t));

        j->kind = op->kind;
        j->data = op;
        j->source = ngx_rbcs_batch_account(b, &op->source);
        j->currency = op->currency ? ngx_rbcs_batch_lstr(&op->currency->code)
                                   : (ngx_rbcs_ledger_str_t) { NULL, 0 };
        j->currency_scale = op->currency ? (unsigned) op->currency->scale
                                         : 0;

        if (op->kind == NGX_RBCS_LEDGER_OPEN) {

            /* checked at the currency's scale before it was queued */

            if (ngx_rbcs_amount_parse(op->initial.data, op->initial.len,
                                      j->currency_scale, 1, &units)
                != NGX_RBCS_AMOUNT_OK)
            {
                units = 0;
            }

            j->initial = ngx_rbcs_ledger_from_units(units, j->currency_scale);

            if (op->limit.len == 0
                || ngx_rbcs_amount_parse(op->limit.data, op->limit.len,
                                         j->currency_scale, 1, &units)
                   != NGX_RBCS_AMOUNT_OK)
            {
                units = 0;
            }

            j->limit = ngx_rbcs_ledger_from_units(units, j->currency_scale);
            j->external = op->external;
            continue;
        }

        if (op->kind == NGX_RBCS_LEDGER_LIMIT) {
            j->amount = ngx_rbcs_batch_lstr(&op->limit);
            continue;
        }

        j->record = &b->records[ngx_rbcs_batch_search(b->ids, b->nrecords,
                                                      &op->id)];
        j->now = ngx_rbcs_batch_lstr(&b->now);

        if (op->kind != NGX_RBCS_LEDGER_VOID
            && op->kind != NGX_RBCS_LEDGER_EXPIRE)
        {
            j->destination = ngx_rbcs_batch_account(b, &op->destination);
        }

        if (op->amount.len) {
            j->amount = ngx_rbcs_batch_lstr(&op->amount);
        }

        j->amount_key = ngx_rbcs_batch_lstr(&op->amount_key);

        if (op->hold) {
            j->hold = 1;
            j->expires = ngx_rbcs_batch_expiry(b, op->expires_in);

            if (op->expires_in && j->expires.data == NULL) {
                /* a hold must not lose its expiry: nothing is written */
                return NGX_ERROR;
            }
        }
    }

    (void) ngx_rbcs_ledger_judge(b->judged, b->nops);

    return NGX_OK;
}


/*
 * What the judge decided, in a constant number of statements: new
 * accounts as the batch leaves them, the recorded outcomes, the history
 * entries, the audit rows, one net update of the accounts that existed;
 * COMMIT.  On MariaDB all of it is one compound statement (BEGIN NOT
 * ATOMIC ... END, no stored procedure), which the server answers once
 * where it answers separate statements one packet each; MySQL has no
 * compound statements outside stored programs and gets them separately.
 */

static ngx_int_t
ngx_rbcs_batch_round2(ngx_rbcs_batch_t *b, ngx_str_t *sql, ngx_uint_t compound)
{
    u_char      *p;
    size_t       size;
    ngx_uint_t   i, resolved;

    size = 2048 + NGX_RBCS_GENERATION_SQL_LEN + b->naccounts * 768;

    for (i = 0; i < b->nops; i++) {
        size += 4096 + 4 * b->ops[i]->amount.len;
    }

    sql->data = ngx_pnalloc(b->pool, size);
    if (sql->data == NULL) {
        return NGX_ERROR;
    }

    p = sql->data;

    if (compound) {
        p = ngx_rbcs_batch_cpylit(p, "BEGIN NOT ATOMIC ");
    }

    p = ngx_rbcs_batch_sql_accounts(b, p);
    p = ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_TRANSFERS,
                            "INSERT INTO transactions (transaction_id,"
                            " source_account, destination_account, amount,"
                            " amount_text, fingerprint, currency,"
                            " request_currency, scale, status, http_status,"
                            " code, detail, client_ts, source_balance,"
                            " destination_balance, source_version,"
                            " destination_version, hold, expires_at,"
                            " source_available, created_at) VALUES ", ",",
                            ngx_rbcs_batch_row_transaction, ";");
    for (i = 0, resolved = 0; i < b->nops; i++) {
        resolved += ngx_rbcs_batch_resolved(&b->judged[i]);
    }

    p = ngx_rbcs_batch_sql_resolutions(b, p);
    p = ngx_rbcs_batch_sql_all_found(p, resolved, compound);
    p = ngx_rbcs_batch_sql_holds(b, p);
    p = ngx_rbcs_batch_sql_all_found(p, resolved, compound);
    p = ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_ENTRIES,
                            "INSERT INTO entries (account_number, version,"
                            " type, transaction_id, counterparty, amount,"
                            " balance_after, created_at) VALUES ", ",",
                            ngx_rbcs_batch_row_entry, ";");
    p = ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_RECORDED,
                            "INSERT INTO audit_log (at, actor, action,"
                            " subject, outcome, http_status, detail)"
                            " VALUES ", ",", ngx_rbcs_batch_row_audit, ";");
    p = ngx_rbcs_batch_sql_update(b, p);

    /*
     * Redis is away: the batch itself tells the other pods (the poll);
     * last, so that the worker's row is held only for the commit
     */

    p = ngx_rbcs_generation_sql(p, &b->gen_mark);
    p = compound ? ngx_rbcs_batch_cpylit(p, "COMMIT;END")
                 : ngx_rbcs_batch_cpylit(p, "COMMIT");

    sql->len = p - sql->data;

    if (sql->len > size) {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "rbcs: write batch statement overran its buffer");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* accounts opened by the batch, as it leaves them */

static u_char *
ngx_rbcs_batch_sql_accounts(ngx_rbcs_batch_t *b, u_char *p)
{
    ngx_uint_t                  i, n;
    ngx_rbcs_ledger_account_t  *a;

    n = 0;

    for (i = 0; i < b->naccounts; i++) {
        a = &b->accounts[i];

        if (!a->created) {
            continue;
        }

        if (n++) {
            *p++ = ',';

        } else {
            p = ngx_rbcs_batch_cpylit(p, "INSERT INTO accounts"
                       " (account_number, currency, scale, kind, balance,"
                       " initial_balance, overdraft_limit, opening_limit,"
                       " held_balance, version, created_at, updated_at)"
                       " VALUES ");
        }

        p = ngx_sprintf(p, "('%*s','%*s',%ui,'%s',", a->number.len,
                        a->number.data, a->currency.len, a->currency.data,
                        (ngx_uint_t) a->scale,
                        a->external ? "EXTERNAL" : "STANDARD");
        p = ngx_rbcs_batch_decimal(p, a->balance);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, a->initial);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, a->limit);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, a->opening_limit);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, a->held);
        p = ngx_sprintf(p, ",%uL,'%V','%V')", a->version, &b->now, &b->now);
    }

    if (n) {
        *p++ = ';';
    }

    return p;
}


/*
 * One multi-row statement: head, the rows of the judged operations it
 * writes with sep between them, and tail; nothing where it writes none.
 */

static u_char *
ngx_rbcs_batch_rows(ngx_rbcs_batch_t *b, u_char *p, ngx_uint_t which,
    const char *head, const char *sep, ngx_rbcs_batch_row_pt row,
    const char *tail)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < b->nops; i++) {
        if (!ngx_rbcs_batch_writes(&b->judged[i], which)) {
            continue;
        }

        p = n++ ? ngx_cpymem(p, sep, ngx_strlen(sep))
                : ngx_cpymem(p, head, ngx_strlen(head));
        p = row(b, b->ops[i], &b->judged[i], p);
    }

    if (n && tail) {
        p = ngx_cpymem(p, tail, ngx_strlen(tail));
    }

    return p;
}


static ngx_uint_t
ngx_rbcs_batch_writes(ngx_rbcs_ledger_op_t *j, ngx_uint_t which)
{
    switch (which) {

    case NGX_RBCS_BATCH_TRANSFERS:
        if (j->kind != NGX_RBCS_LEDGER_TRANSFER) {
            return 0;
        }

        /* fall through */

    case NGX_RBCS_BATCH_RECORDED:
        return j->outcome == NGX_RBCS_LEDGER_APPLIED
               || j->outcome == NGX_RBCS_LEDGER_REJECTED;

    case NGX_RBCS_BATCH_HOLDS:
        return j->hold && j->outcome == NGX_RBCS_LEDGER_APPLIED;

    case NGX_RBCS_BATCH_RESOLVED:
        return ngx_rbcs_batch_resolved(j);

    default: /* NGX_RBCS_BATCH_ENTRIES */
        return j->outcome == NGX_RBCS_LEDGER_APPLIED && !j->hold
               && j->kind != NGX_RBCS_LEDGER_LIMIT
               && j->kind != NGX_RBCS_LEDGER_VOID
               && j->kind != NGX_RBCS_LEDGER_EXPIRE;
    }
}


/* the recorded outcome of a transfer */

static u_char *
ngx_rbcs_batch_row_transaction(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    ngx_str_t  s;

    p = ngx_sprintf(p, "('%V','%V','%V',", &op->id, &op->source,
                    &op->destination);

    if (j->has_amount) {
        p = ngx_rbcs_batch_decimal(p, j->value);
    } else {
        p = ngx_cpymem(p, "NULL", 4);
    }

    p = ngx_sprintf(p, ",'%V','%V|%V|%V',", &op->amount, &op->source,
                    &op->destination, &op->amount_key);

    s = ngx_rbcs_batch_nstr(&j->record_currency);
    p = ngx_rbcs_batch_quoted(p, &s);
    *p++ = ',';

    if (op->currency) {
        p = ngx_rbcs_batch_quoted(p, &op->currency->code);
    } else {
        p = ngx_cpymem(p, "NULL", 4);
    }

    if (j->has_scale) {
        p = ngx_sprintf(p, ",%ui,", (ngx_uint_t) j->scale);
    } else {
        p = ngx_cpymem(p, ",NULL,", 6);
    }

    if (j->outcome == NGX_RBCS_LEDGER_APPLIED) {
        p = ngx_sprintf(p, "'%s',201,NULL,NULL,",
                        j->hold ? "PENDING" : "COMPLETED");
    } else {
        p = ngx_sprintf(p, "'REJECTED',%ui,'%s','%s',",
                        (ngx_uint_t) j->status, j->code, j->detail);
    }

    if (op->has_ts) {
        p = ngx_sprintf(p, "%L,", op->client_ts);
    } else {
        p = ngx_cpymem(p, "NULL,", 5);
    }

    if (j->outcome == NGX_RBCS_LEDGER_APPLIED && j->hold) {
        p = ngx_rbcs_batch_decimal(p, j->source_balance);
        p = ngx_sprintf(p, ",NULL,%uL,NULL,", j->source_version);

    } else if (j->outcome == NGX_RBCS_LEDGER_APPLIED) {
        p = ngx_rbcs_batch_decimal(p, j->source_balance);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, j->destination_balance);
        p = ngx_sprintf(p, ",%uL,%uL,", j->source_version,
                        j->destination_version);
    } else {
        p = ngx_cpymem(p, "NULL,NULL,NULL,NULL,", 20);
    }

    p = ngx_sprintf(p, "%d,", j->hold ? 1 : 0);

    if (j->outcome == NGX_RBCS_LEDGER_APPLIED && j->hold) {
        s = ngx_rbcs_batch_nstr(&j->expires);
        p = ngx_rbcs_batch_quoted(p, &s);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, j->source_available);
        *p++ = ',';

    } else {
        p = ngx_cpymem(p, "NULL,NULL,", 10);
    }

    return ngx_sprintf(p, "'%V')", &b->now);
}


/*
 * The holds the batch resolved, on their rows: one UPDATE joined with the
 * batch's resolutions as a derived table.
 */

static u_char *
ngx_rbcs_batch_sql_resolutions(ngx_rbcs_batch_t *b, u_char *p)
{
    u_char  *last;

    last = ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_RESOLVED,
                               "UPDATE transactions t JOIN (", " UNION ALL ",
                               ngx_rbcs_batch_row_resolution, NULL);

    if (last == p) {
        return p;
    }

    return ngx_sprintf(last, ") v ON t.transaction_id = v.id SET"
                       " t.status = v.st, t.captured_amount = v.cap,"
                       " t.destination_balance = v.db,"
                       " t.destination_version = v.dv,"
                       " t.resolved_source_balance = v.sb,"
                       " t.resolved_source_version = v.sv,"
                       " t.resolved_source_available = v.sa,"
                       " t.resolved_at = '%V'"
                       " WHERE t.status = 'PENDING';", &b->now);
}


/* a resolution, as a row of that derived table */

static u_char *
ngx_rbcs_batch_row_resolution(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    p = ngx_sprintf(p, "SELECT '%V' AS id,'%s' AS st,", &op->id,
                    j->kind == NGX_RBCS_LEDGER_CAPTURE ? "COMPLETED"
                    : j->kind == NGX_RBCS_LEDGER_VOID ? "VOIDED"
                    : "EXPIRED");

    if (j->kind == NGX_RBCS_LEDGER_CAPTURE) {
        p = ngx_rbcs_batch_decimal(p, j->value);
        p = ngx_cpymem(p, " AS cap,", 8);
        p = ngx_rbcs_batch_decimal(p, j->destination_balance);
        p = ngx_sprintf(p, " AS db,%uL AS dv,", j->destination_version);

    } else {
        p = ngx_rbcs_batch_cpylit(p, "NULL AS cap,NULL AS db,NULL AS dv,");
    }

    p = ngx_rbcs_batch_decimal(p, j->source_balance);
    p = ngx_sprintf(p, " AS sb,%uL AS sv,", j->source_version);
    p = ngx_rbcs_batch_decimal(p, j->source_available);

    return ngx_rbcs_batch_cpylit(p, " AS sa");
}


/*
 * After the UPDATE of the resolved holds' rows and after the DELETE of
 * their holds rows: each must have found every one of them pending, or
 * the batch is refused (and its operations run again alone).  The judge
 * read them locked; this is the schema's backstop against a hold
 * released twice.  Compound statements only (MariaDB).
 */

static u_char *
ngx_rbcs_batch_sql_all_found(u_char *p, ngx_uint_t n, ngx_uint_t compound)
{
    if (n == 0 || !compound) {
        return p;
    }

    return ngx_sprintf(p, "IF ROW_COUNT() <> %ui THEN SIGNAL SQLSTATE"
                       " '45000' SET MESSAGE_TEXT = 'a hold is not"
                       " pending'; END IF;", n);
}


/* the pending holds: new ones in, resolved ones out */

static u_char *
ngx_rbcs_batch_sql_holds(ngx_rbcs_batch_t *b, u_char *p)
{
    p = ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_HOLDS,
                            "INSERT INTO holds (transaction_id,"
                            " source_account, destination_account, amount,"
                            " scale, expires_at, created_at) VALUES ", ",",
                            ngx_rbcs_batch_row_hold, ";");

    return ngx_rbcs_batch_rows(b, p, NGX_RBCS_BATCH_RESOLVED,
                               "DELETE FROM holds WHERE transaction_id IN (",
                               ",", ngx_rbcs_batch_row_id, ");");
}


static u_char *
ngx_rbcs_batch_row_hold(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    ngx_str_t  s;

    p = ngx_sprintf(p, "('%V','%V','%V',", &op->id, &op->source,
                    &op->destination);
    p = ngx_rbcs_batch_decimal(p, j->value);
    p = ngx_sprintf(p, ",%ui,", (ngx_uint_t) j->scale);
    s = ngx_rbcs_batch_nstr(&j->expires);
    p = ngx_rbcs_batch_quoted(p, &s);

    return ngx_sprintf(p, ",'%V')", &b->now);
}


static u_char *
ngx_rbcs_batch_row_id(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    return ngx_sprintf(p, "'%V'", &op->id);
}


/* the history: an opening's entry, two per applied transfer or capture */

static u_char *
ngx_rbcs_batch_row_entry(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    if (j->kind == NGX_RBCS_LEDGER_OPEN) {
        p = ngx_sprintf(p, "('%V',1,'OPENING',NULL,NULL,", &op->source);
        p = ngx_rbcs_batch_decimal(p, j->initial);
        *p++ = ',';
        p = ngx_rbcs_batch_decimal(p, j->initial);
        return ngx_sprintf(p, ",'%V')", &b->now);
    }

    p = ngx_sprintf(p, "('%V',%uL,'TRANSFER','%V','%V',", &op->source,
                    j->source_version, &op->id, &op->destination);
    p = ngx_rbcs_batch_decimal(p, -j->value);
    *p++ = ',';
    p = ngx_rbcs_batch_decimal(p, j->source_balance);
    p = ngx_sprintf(p, ",'%V'),('%V',%uL,'TRANSFER','%V','%V',", &b->now,
                    &op->destination, j->destination_version, &op->id,
                    &op->source);
    p = ngx_rbcs_batch_decimal(p, j->value);
    *p++ = ',';
    p = ngx_rbcs_batch_decimal(p, j->destination_balance);

    return ngx_sprintf(p, ",'%V')", &b->now);
}


/* who changed what: every recorded state change */

static u_char *
ngx_rbcs_batch_row_audit(ngx_rbcs_batch_t *b, ngx_rbcs_batch_op_t *op,
    ngx_rbcs_ledger_op_t *j, u_char *p)
{
    ngx_str_t  s;

    p = ngx_sprintf(p, "('%V',", &b->now);

    if (op->actor.len) {
        p = ngx_sprintf(p, "'%V',", &op->actor);
    } else {
        p = ngx_cpymem(p, "NULL,", 5);
    }

    if (j->kind == NGX_RBCS_LEDGER_OPEN) {
        p = ngx_sprintf(p, "'account.open','%V','created',201,'%V "
                        "initial balance ", &op->source,
                        &op->currency->code);
        p = ngx_rbcs_batch_decimal(p, j->initial);
        return ngx_sprintf(p, "%s')", j->external ? " EXTERNAL" : "");
    }

    if (j->kind == NGX_RBCS_LEDGER_LIMIT) {
        p = ngx_sprintf(p, "'account.limit','%V','changed',200,"
                        "'overdraft limit ", &op->source);
        p = ngx_rbcs_batch_decimal(p, j->value);
        return ngx_cpymem(p, "')", 2);
    }

    if (j->kind >= NGX_RBCS_LEDGER_CAPTURE) {
        p = ngx_sprintf(p, "'%s','%V','%s',200,'",
                        j->kind == NGX_RBCS_LEDGER_CAPTURE
                        ? "hold.capture"
                        : j->kind == NGX_RBCS_LEDGER_VOID
                          ? "hold.void" : "hold.expire",
                        &op->id,
                        j->kind == NGX_RBCS_LEDGER_CAPTURE
                        ? "captured"
                        : j->kind == NGX_RBCS_LEDGER_VOID
                          ? "voided" : "expired");
        if (j->kind == NGX_RBCS_LEDGER_CAPTURE) {
            p = ngx_rbcs_batch_decimal(p, j->value);
            p = ngx_cpymem(p, " of ", 4);
        }
        p = ngx_rbcs_batch_decimal(p, j->released);
        p = ngx_cpymem(p, " held')", 7);

    } else if (j->outcome == NGX_RBCS_LEDGER_APPLIED) {
        s = ngx_rbcs_batch_nstr(&j->record_currency);
        p = ngx_sprintf(p, "'%s','%V','%s',201,'%V %V from "
                        "%V to %V')", j->hold ? "hold" : "transfer",
                        &op->id, j->hold ? "held" : "completed",
                        &op->amount, &s, &op->source, &op->destination);
    } else {
        p = ngx_sprintf(p, "'%s','%V','%s',%ui,'%s')",
                        j->hold ? "hold" : "transfer", &op->id,
                        j->code, (ngx_uint_t) j->status, j->detail);
    }

    return p;
}


/*
 * One net update of the accounts that existed.  The server does the
 * arithmetic on the locked rows, and the schema's CHECK refuses a STANDARD
 * account's available balance below minus its limit (and the excess a
 * lowered limit left) whatever the judge decided.  The assignments are
 * evaluated left to right: the excess is computed from the new balance and
 * limit; it is set where the limit changed and otherwise only shrinks.
 */

static u_char *
ngx_rbcs_batch_sql_update(ngx_rbcs_batch_t *b, u_char *p)
{
    ngx_uint_t                  i, n, limits, helds;
    ngx_rbcs_ledger_account_t  *a;

    n = 0;
    limits = 0;
    helds = 0;

    for (i = 0; i < b->naccounts; i++) {
        a = &b->accounts[i];

        if (ngx_rbcs_batch_updates(a, NGX_RBCS_BATCH_BALANCE)) {
            n++;
            limits += a->limit_set;
            helds += (a->held_delta != 0);
        }
    }

    if (n == 0) {
        return p;
    }

    p = ngx_rbcs_batch_cpylit(p, "UPDATE accounts SET balance = balance +"
                              " CASE account_number");
    p = ngx_rbcs_batch_sql_when(b, p, NGX_RBCS_BATCH_BALANCE);
    p = ngx_rbcs_batch_cpylit(p, " END");

    /* before the excess below, which is computed from it */

    if (helds) {
        p = ngx_rbcs_batch_cpylit(p, ", held_balance = held_balance + CASE"
                                  " account_number");
        p = ngx_rbcs_batch_sql_when(b, p, NGX_RBCS_BATCH_HELD);
        p = ngx_rbcs_batch_cpylit(p, " ELSE 0 END");
    }

    p = ngx_rbcs_batch_cpylit(p, ", version = version + CASE"
                              " account_number");
    p = ngx_rbcs_batch_sql_when(b, p, NGX_RBCS_BATCH_VERSION);
    p = ngx_rbcs_batch_cpylit(p, " END");

    p = ngx_rbcs_batch_sql_excess(b, p, limits);

    p = ngx_sprintf(p, ", updated_at = '%V' WHERE account_number IN (",
                    &b->now);
    p = ngx_rbcs_batch_sql_in(b, p, NGX_RBCS_BATCH_BALANCE);

    return ngx_cpymem(p, ");", 2);
}


/*
 * The update's overdraft_limit, where "limits" accounts set one, and
 * overdraft_excess: recomputed where the limit changed, else only shrunk.
 */

static u_char *
ngx_rbcs_batch_sql_excess(ngx_rbcs_batch_t *b, u_char *p, ngx_uint_t limits)
{
    if (limits == 0) {
        return ngx_rbcs_batch_cpylit(p, ", overdraft_excess = LEAST("
                                     "overdraft_excess, GREATEST(0,"
                                     " held_balance - balance -"
                                     " overdraft_limit))");
    }

    p = ngx_rbcs_batch_cpylit(p, ", overdraft_limit = CASE account_number");
    p = ngx_rbcs_batch_sql_when(b, p, NGX_RBCS_BATCH_LIMIT);
    p = ngx_rbcs_batch_cpylit(p, " ELSE overdraft_limit END,"
                              " overdraft_excess = IF(account_number IN (");
    p = ngx_rbcs_batch_sql_in(b, p, NGX_RBCS_BATCH_LIMIT);

    return ngx_rbcs_batch_cpylit(p, "), GREATEST(0, held_balance - balance"
                                 " - overdraft_limit), LEAST("
                                 "overdraft_excess, GREATEST(0, held_balance"
                                 " - balance - overdraft_limit)))");
}


/* whether the update changes the column "col" of an account that existed */

static ngx_uint_t
ngx_rbcs_batch_updates(ngx_rbcs_ledger_account_t *a, ngx_uint_t col)
{
    return !a->created
           && (col == NGX_RBCS_BATCH_HELD ? a->held_delta != 0
               : col == NGX_RBCS_BATCH_LIMIT ? a->limit_set
               : a->changes != 0);
}


/* the CASE account_number branches of the update's column "col" */

static u_char *
ngx_rbcs_batch_sql_when(ngx_rbcs_batch_t *b, u_char *p, ngx_uint_t col)
{
    ngx_uint_t                  i;
    ngx_rbcs_ledger_account_t  *a;

    for (i = 0; i < b->naccounts; i++) {
        a = &b->accounts[i];

        if (!ngx_rbcs_batch_updates(a, col)) {
            continue;
        }

        p = ngx_sprintf(p, " WHEN '%*s' THEN ", a->number.len,
                        a->number.data);

        p = (col == NGX_RBCS_BATCH_VERSION)
            ? ngx_sprintf(p, "%uL", a->changes)
            : ngx_rbcs_batch_decimal(p, col == NGX_RBCS_BATCH_BALANCE
                                        ? a->delta
                                        : col == NGX_RBCS_BATCH_HELD
                                          ? a->held_delta : a->limit);
    }

    return p;
}


/* the numbers of the accounts whose column "col" the update changes */

static u_char *
ngx_rbcs_batch_sql_in(ngx_rbcs_batch_t *b, u_char *p, ngx_uint_t col)
{
    ngx_uint_t                  i, n;
    ngx_rbcs_ledger_account_t  *a;

    n = 0;

    for (i = 0; i < b->naccounts; i++) {
        a = &b->accounts[i];

        if (ngx_rbcs_batch_updates(a, col)) {
            p = ngx_sprintf(p, "%s'%*s'", n++ ? "," : "", a->number.len,
                            a->number.data);
        }
    }

    return p;
}


static void
ngx_rbcs_batch_round2_done(ngx_rbcs_mysql_query_t *q)
{
    ngx_uint_t         i;
    ngx_rbcs_batch_t  *b;

    b = q->data;
    b->query = NULL;

    if (q->rc == NGX_RBCS_MYSQL_OK) {
        ngx_rbcs_batch_committed(b);
        return;
    }

    if (q->rc == NGX_RBCS_MYSQL_EUNKNOWN) {

        /*
         * Sent, then lost: the commit may have happened.  What the batch
         * recorded is looked up by running it again; until then those
         * operations' outcomes are unknown.
         */

        for (i = 0; i < b->nops; i++) {
            if (ngx_rbcs_batch_writes(&b->judged[i],
                                      NGX_RBCS_BATCH_RECORDED))
            {
                b->ops[i]->unknown = 1;
            }
        }

        /* a server that does not answer would not answer the look-up */

        if (q->err != CR_SERVER_LOST) {

            /* it may have committed, and nothing goes to Redis */

            if (b->gen_mark == 0) {
                ngx_rbcs_generation_unpublished();
            }

            ngx_rbcs_batch_fail(b);
            return;
        }

        ngx_rbcs_batch_later(b, q->err);
        return;
    }

    if (q->rc == NGX_RBCS_MYSQL_ESQL
        && q->err != ER_LOCK_DEADLOCK && q->err != ER_LOCK_WAIT_TIMEOUT
        && q->err != ER_DUP_ENTRY)
    {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "rbcs: the database refused a write batch of %ui "
                      "operations (error %ui)", b->nops, q->err);
        ngx_rbcs_batch_split(b);
        return;
    }

    ngx_rbcs_batch_later(b, q->err);
}


/* committed: the caches first (read-your-writes), then the answers */

static void
ngx_rbcs_batch_committed(ngx_rbcs_batch_t *b)
{
    ngx_uint_t  i;

    ngx_rbcs_generation_committed(b->gen_mark);

    for (i = 0; i < b->nops; i++) {
        if (ngx_rbcs_batch_answer(b, i) != NGX_OK) {
            b->ops[i]->rc = NGX_RBCS_MYSQL_ESQL;
        }
    }

    ngx_rbcs_batch_spread(b);

    for (i = 0; i < b->nops; i++) {
        ngx_rbcs_batch_deliver(b->ops[i]);
    }

    ngx_rbcs_batch_finish(b);
}


/* what the operation is answered with: a row, or a problem */

static ngx_int_t
ngx_rbcs_batch_answer(ngx_rbcs_batch_t *b, ngx_uint_t i)
{
    ngx_str_t              *row;
    ngx_rbcs_batch_op_t    *op;
    ngx_rbcs_ledger_op_t   *j;

    op = b->ops[i];
    j = &b->judged[i];

    op->rc = NGX_RBCS_MYSQL_OK;
    op->status = j->status;
    op->row = NULL;

    switch (j->outcome) {

    case NGX_RBCS_LEDGER_INVALID:
    case NGX_RBCS_LEDGER_CONFLICT:
        if (ngx_rbcs_batch_text(b->pool, &op->code, (u_char *) j->code,
                                ngx_strlen(j->code))
            != NGX_OK
            || ngx_rbcs_batch_text(b->pool, &op->detail, (u_char *) j->detail,
                                   ngx_strlen(j->detail))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_RBCS_LEDGER_REPLAY:
        row = j->record->op ? ((ngx_rbcs_batch_op_t *) j->record->op->data)
                                  ->row
                            : j->record->data;

        /* a hold's request again: the hold as it was recorded */

        if (row && op->kind == NGX_RBCS_LEDGER_TRANSFER
            && row[NGX_RBCS_TX_RES_VERSION].data)
        {
            row = ngx_rbcs_batch_pending_row(b, row);
        }

        op->row = row;

        /* a replay of what this very operation recorded, lost earlier */

        if (op->unknown && row && op->kind == NGX_RBCS_LEDGER_TRANSFER) {
            op->status = ngx_atoi(row[NGX_RBCS_TX_HTTP_STATUS].data,
                                  row[NGX_RBCS_TX_HTTP_STATUS].len);
        }

        return row ? NGX_OK : NGX_ERROR;

    case NGX_RBCS_LEDGER_EXISTS:
        op->row = ngx_rbcs_batch_account_row(b, i);

        if (op->unknown && op->kind == NGX_RBCS_LEDGER_OPEN) {
            op->status = NGX_HTTP_CREATED;
        }

        return op->row ? NGX_OK : NGX_ERROR;

    default:
        op->row = (op->kind == NGX_RBCS_LEDGER_TRANSFER)
                  ? ngx_rbcs_batch_tx_row(b, i)
                  : (op->kind >= NGX_RBCS_LEDGER_CAPTURE)
                    ? ngx_rbcs_batch_resolved_row(b, i)
                    : ngx_rbcs_batch_account_row(b, i);

        return op->row ? NGX_OK : NGX_ERROR;
    }
}


/* a transaction row for a transfer recorded by this batch */

static ngx_str_t *
ngx_rbcs_batch_tx_row(ngx_rbcs_batch_t *b, ngx_uint_t i)
{
    u_char                *p, *start;
    ngx_str_t             *row;
    ngx_rbcs_batch_op_t   *op;
    ngx_rbcs_ledger_op_t  *j;

    op = b->ops[i];
    j = &b->judged[i];

    row = ngx_pcalloc(b->pool, NGX_RBCS_TX_N * sizeof(ngx_str_t));
    start = ngx_pnalloc(b->pool, 8 * NGX_RBCS_DECIMAL_LEN + 64
                                 + NGX_RBCS_LEDGER_DETAIL_LEN);
    if (row == NULL || start == NULL) {
        return NULL;
    }

    p = start;

#define NGX_RBCS_CELL(col, expr)                                              \
    row[col].data = p; p = (expr); row[col].len = p - row[col].data

    ngx_str_set(&row[NGX_RBCS_TX_RESULT], "created");
    NGX_RBCS_CELL(NGX_RBCS_TX_HTTP_STATUS,
                  ngx_sprintf(p, "%ui", (ngx_uint_t) j->status));

    if (j->outcome == NGX_RBCS_LEDGER_REJECTED) {
        row[NGX_RBCS_TX_CODE].data = (u_char *) j->code;
        row[NGX_RBCS_TX_CODE].len = ngx_strlen(j->code);
        NGX_RBCS_CELL(NGX_RBCS_TX_DETAIL,
                      ngx_cpymem(p, j->detail, ngx_strlen(j->detail)));
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "REJECTED");

    } else if (j->hold) {
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "PENDING");
        NGX_RBCS_CELL(NGX_RBCS_TX_SRC_BALANCE,
                      ngx_rbcs_batch_decimal(p, j->source_balance));
        NGX_RBCS_CELL(NGX_RBCS_TX_SRC_VERSION,
                      ngx_sprintf(p, "%uL", j->source_version));
        NGX_RBCS_CELL(NGX_RBCS_TX_SRC_AVAILABLE,
                      ngx_rbcs_batch_decimal(p, j->source_available));
        row[NGX_RBCS_TX_EXPIRES] = ngx_rbcs_batch_nstr(&j->expires);

    } else {
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "COMPLETED");
        NGX_RBCS_CELL(NGX_RBCS_TX_SRC_BALANCE,
                      ngx_rbcs_batch_decimal(p, j->source_balance));
        NGX_RBCS_CELL(NGX_RBCS_TX_DST_BALANCE,
                      ngx_rbcs_batch_decimal(p, j->destination_balance));
        NGX_RBCS_CELL(NGX_RBCS_TX_SRC_VERSION,
                      ngx_sprintf(p, "%uL", j->source_version));
        NGX_RBCS_CELL(NGX_RBCS_TX_DST_VERSION,
                      ngx_sprintf(p, "%uL", j->destination_version));
    }

    /*
     * The operation's own texts are copied into the batch's pool: a replay
     * later in the batch is answered with this row after this operation's
     * pool is gone.
     */

    if (ngx_rbcs_batch_text(b->pool, &row[NGX_RBCS_TX_ID], op->id.data,
                            op->id.len)
        != NGX_OK
        || ngx_rbcs_batch_text(b->pool, &row[NGX_RBCS_TX_SOURCE],
                               op->source.data, op->source.len)
           != NGX_OK
        || ngx_rbcs_batch_text(b->pool, &row[NGX_RBCS_TX_DESTINATION],
                               op->destination.data, op->destination.len)
           != NGX_OK
        || ngx_rbcs_batch_text(b->pool, &row[NGX_RBCS_TX_AMOUNT_TEXT],
                               op->amount.data, op->amount.len)
           != NGX_OK)
    {
        return NULL;
    }

    if (j->has_amount) {
        NGX_RBCS_CELL(NGX_RBCS_TX_AMOUNT,
                      ngx_rbcs_batch_decimal(p, j->value));
    }

    row[NGX_RBCS_TX_CURRENCY] = ngx_rbcs_batch_nstr(&j->record_currency);

    if (j->has_scale) {
        NGX_RBCS_CELL(NGX_RBCS_TX_SCALE,
                      ngx_sprintf(p, "%ui", (ngx_uint_t) j->scale));
    }

    if (op->has_ts) {
        NGX_RBCS_CELL(NGX_RBCS_TX_CLIENT_TS,
                      ngx_sprintf(p, "%L", op->client_ts));
    }

    row[NGX_RBCS_TX_CREATED] = b->now;

    if (op->currency) {
        row[NGX_RBCS_TX_REQ_CURRENCY] = op->currency->code;
    }

    row[NGX_RBCS_TX_HOLD].data = (u_char *) (j->hold ? "1" : "0");
    row[NGX_RBCS_TX_HOLD].len = 1;

    return row;
}


/* a resolved hold's row as its hold recorded it */

static ngx_str_t *
ngx_rbcs_batch_pending_row(ngx_rbcs_batch_t *b, ngx_str_t *was)
{
    ngx_str_t  *row;

    row = ngx_palloc(b->pool, NGX_RBCS_TX_N * sizeof(ngx_str_t));
    if (row == NULL) {
        return NULL;
    }

    ngx_memcpy(row, was, NGX_RBCS_TX_N * sizeof(ngx_str_t));

    ngx_str_set(&row[NGX_RBCS_TX_STATUS], "PENDING");
    ngx_str_null(&row[NGX_RBCS_TX_CAPTURED]);
    ngx_str_null(&row[NGX_RBCS_TX_DST_BALANCE]);
    ngx_str_null(&row[NGX_RBCS_TX_DST_VERSION]);
    ngx_str_null(&row[NGX_RBCS_TX_RES_BALANCE]);
    ngx_str_null(&row[NGX_RBCS_TX_RES_VERSION]);
    ngx_str_null(&row[NGX_RBCS_TX_RES_AVAILABLE]);

    return row;
}


/* a hold's row as its resolution by this batch leaves it */

static ngx_str_t *
ngx_rbcs_batch_resolved_row(ngx_rbcs_batch_t *b, ngx_uint_t i)
{
    u_char                *p;
    ngx_str_t             *row, *was;
    ngx_rbcs_ledger_op_t  *j;

    j = &b->judged[i];
    was = j->record->data;

    if (was == NULL) {
        /* a hold recorded by this very batch: not resolvable in it */
        return NULL;
    }

    row = ngx_palloc(b->pool, NGX_RBCS_TX_N * sizeof(ngx_str_t));
    p = ngx_pnalloc(b->pool, 5 * NGX_RBCS_DECIMAL_LEN + 64);
    if (row == NULL || p == NULL) {
        return NULL;
    }

    ngx_memcpy(row, was, NGX_RBCS_TX_N * sizeof(ngx_str_t));

    if (j->kind == NGX_RBCS_LEDGER_CAPTURE) {
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "COMPLETED");
        NGX_RBCS_CELL(NGX_RBCS_TX_CAPTURED,
                      ngx_rbcs_batch_decimal(p, j->value));
        NGX_RBCS_CELL(NGX_RBCS_TX_DST_BALANCE,
                      ngx_rbcs_batch_decimal(p, j->destination_balance));
        NGX_RBCS_CELL(NGX_RBCS_TX_DST_VERSION,
                      ngx_sprintf(p, "%uL", j->destination_version));

    } else if (j->kind == NGX_RBCS_LEDGER_VOID) {
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "VOIDED");

    } else {
        ngx_str_set(&row[NGX_RBCS_TX_STATUS], "EXPIRED");
    }

    NGX_RBCS_CELL(NGX_RBCS_TX_RES_BALANCE,
                  ngx_rbcs_batch_decimal(p, j->source_balance));
    NGX_RBCS_CELL(NGX_RBCS_TX_RES_VERSION,
                  ngx_sprintf(p, "%uL", j->source_version));
    NGX_RBCS_CELL(NGX_RBCS_TX_RES_AVAILABLE,
                  ngx_rbcs_batch_decimal(p, j->source_available));

    return row;
}


/* an account row for an opening: the account as the batch has it then */

static ngx_str_t *
ngx_rbcs_batch_account_row(ngx_rbcs_batch_t *b, ngx_uint_t i)
{
    u_char                     *p;
    ngx_str_t                  *row, *was;
    ngx_rbcs_batch_op_t        *op;
    ngx_rbcs_ledger_op_t       *j;
    ngx_rbcs_ledger_account_t  *a;

    op = b->ops[i];
    j = &b->judged[i];
    a = j->source;
    was = a->data;       /* the row round trip 1 read, if any */

    row = ngx_pcalloc(b->pool, NGX_RBCS_ACC_N * sizeof(ngx_str_t));
    p = ngx_pnalloc(b->pool, 5 * NGX_RBCS_DECIMAL_LEN + 2 * NGX_INT64_LEN);
    if (row == NULL || p == NULL) {
        return NULL;
    }

    ngx_str_set(&row[NGX_RBCS_ACC_RESULT], "found");
    row[NGX_RBCS_ACC_NUMBER] = op->source;
    row[NGX_RBCS_ACC_CURRENCY] = ngx_rbcs_batch_nstr(&a->currency);

    NGX_RBCS_CELL(NGX_RBCS_ACC_SCALE,
                  ngx_sprintf(p, "%ui", (ngx_uint_t) a->scale));
    NGX_RBCS_CELL(NGX_RBCS_ACC_BALANCE,
                  ngx_rbcs_batch_decimal(p, j->source_balance));
    NGX_RBCS_CELL(NGX_RBCS_ACC_VERSION,
                  ngx_sprintf(p, "%uL", j->source_version));
    NGX_RBCS_CELL(NGX_RBCS_ACC_INITIAL, ngx_rbcs_batch_decimal(p, a->initial));
    NGX_RBCS_CELL(NGX_RBCS_ACC_LIMIT,
                  ngx_rbcs_batch_decimal(p, j->source_limit));
    NGX_RBCS_CELL(NGX_RBCS_ACC_OPENING_LIMIT,
                  ngx_rbcs_batch_decimal(p, a->opening_limit));
    NGX_RBCS_CELL(NGX_RBCS_ACC_HELD,
                  ngx_rbcs_batch_decimal(p, j->source_held));

    if (a->external) {
        ngx_str_set(&row[NGX_RBCS_ACC_KIND], "EXTERNAL");

    } else {
        ngx_str_set(&row[NGX_RBCS_ACC_KIND], "STANDARD");
    }

    if (was && !a->created) {
        row[NGX_RBCS_ACC_CREATED] = was[NGX_RBCS_ACC_CREATED];

        /* changed earlier in the batch: updated now */
        row[NGX_RBCS_ACC_UPDATED] =
            ((uint64_t) ngx_atoof(was[NGX_RBCS_ACC_VERSION].data,
                                  was[NGX_RBCS_ACC_VERSION].len)
             == j->source_version)
            ? was[NGX_RBCS_ACC_UPDATED] : b->now;
    } else {
        row[NGX_RBCS_ACC_CREATED] = b->now;
        row[NGX_RBCS_ACC_UPDATED] = b->now;
    }

#undef NGX_RBCS_CELL

    return row;
}


/*
 * Each touched account's final state to the zone and Redis, once; a
 * replay's balances (of the past) only as floors for this pod's reads.
 */

static void
ngx_rbcs_batch_spread(ngx_rbcs_batch_t *b)
{
    int                         neg;
    ngx_str_t                  *row;
    ngx_uint_t                  i, n;
    ngx_rbcs_uint128_t          units;
    ngx_rbcs_ledger_op_t       *j;
    ngx_rbcs_cache_entry_t     *e;
    ngx_rbcs_publish_change_t  *c;
    ngx_rbcs_ledger_account_t  *a;

    c = ngx_pmemalign(b->pool,
                      b->naccounts * sizeof(ngx_rbcs_publish_change_t),
                      _Alignof(ngx_rbcs_publish_change_t));
    if (c == NULL) {
        if (b->gen_mark == 0) {
            ngx_rbcs_generation_unpublished();
        }

        return;
    }

    n = 0;

    for (i = 0; i < b->naccounts; i++) {
        a = &b->accounts[i];

        if (!a->exists || a->currency.len > NGX_RBCS_CURRENCY_MAX_LEN) {
            continue;
        }

        c[n].account = ngx_rbcs_batch_nstr(&a->number);
        e = &c[n].entry;

        e->version = a->version;
        units = ngx_rbcs_ledger_to_units(a->balance, a->scale, &neg);
        e->balance = neg ? -(ngx_rbcs_int128_t) units
                         : (ngx_rbcs_int128_t) units;
        e->held = ngx_rbcs_ledger_to_units(a->held, a->scale, &neg);
        e->limit = ngx_rbcs_ledger_to_units(a->limit, a->scale, &neg);
        e->scale = a->scale;
        e->external = a->external;
        e->floor = 0;
        e->currency_len = a->currency.len;
        ngx_memcpy(e->currency, a->currency.data, a->currency.len);

        n++;
    }

    if (ngx_rbcs_publish_commit(b->log, c, n, b->pool) != NGX_OK
        && b->gen_mark == 0)
    {
        ngx_rbcs_generation_unpublished();
    }

    for (i = 0; i < b->nops; i++) {
        j = &b->judged[i];
        row = b->ops[i]->row;

        if (j->outcome != NGX_RBCS_LEDGER_REPLAY || j->record->op != NULL
            || row == NULL || row[NGX_RBCS_TX_SRC_VERSION].data == NULL)
        {
            continue;
        }

        ngx_rbcs_publish_floor(b->log, &row[NGX_RBCS_TX_SOURCE],
                               row[NGX_RBCS_TX_RES_VERSION].data
                               ? &row[NGX_RBCS_TX_RES_VERSION]
                               : &row[NGX_RBCS_TX_SRC_VERSION]);
        ngx_rbcs_publish_floor(b->log, &row[NGX_RBCS_TX_DESTINATION],
                               &row[NGX_RBCS_TX_DST_VERSION]);
    }
}


/* nothing was committed: the whole batch again, after a short wait */

static void
ngx_rbcs_batch_later(ngx_rbcs_batch_t *b, ngx_uint_t err)
{
    ngx_msec_t  delay;

    b->attempts++;

    if (b->attempts > b->writer->conf->retries) {
        ngx_rbcs_batch_fail(b);
        return;
    }

    if (err) {
        ngx_log_error(NGX_LOG_INFO, b->log, 0,
                      "rbcs: mysql error %ui, retrying", err);
    }

    ngx_rbcs_metrics_inc(NGX_RBCS_M_MYSQL_RETRIES);

    delay = 5 << ngx_min(b->attempts, 6);
    delay = delay / 2 + (ngx_msec_t) ngx_random() % delay;

    ngx_add_timer(&b->retry, delay);
}


static void
ngx_rbcs_batch_retry_handler(ngx_event_t *ev)
{
    ngx_rbcs_batch_try(ev->data);
}


/* the database cannot be used: 503 for every operation of the batch */

static void
ngx_rbcs_batch_fail(ngx_rbcs_batch_t *b)
{
    ngx_uint_t  i;

    for (i = 0; i < b->nops; i++) {
        b->ops[i]->rc = b->ops[i]->unknown ? NGX_RBCS_MYSQL_EUNKNOWN
                                           : NGX_RBCS_MYSQL_EUNAVAIL;
        ngx_rbcs_batch_deliver(b->ops[i]);
    }

    ngx_rbcs_batch_finish(b);
}


/* each operation of a refused batch goes again, alone, first in line */

static void
ngx_rbcs_batch_split(ngx_rbcs_batch_t *b)
{
    ngx_uint_t            i;
    ngx_rbcs_batch_op_t  *op;

    if (b->nops == 1) {
        ngx_rbcs_batch_fail(b);
        return;
    }

    for (i = b->nops; i > 0; i--) {
        op = b->ops[i - 1];
        op->solo = 1;
        op->state = NGX_RBCS_OP_QUEUED;
        ngx_queue_insert_head(&b->writer->queue, &op->queue);
        b->writer->nqueued++;
    }

    b->nops = 0;
    ngx_rbcs_metrics_write_queue(b->writer->nqueued);
    ngx_rbcs_batch_finish(b);
}


static void
ngx_rbcs_batch_finish(ngx_rbcs_batch_t *b)
{
    b->nops = 0;
    b->busy = 0;

    if (b->pool) {
        ngx_destroy_pool(b->pool);
        b->pool = NULL;
    }

    ngx_rbcs_batch_start(b->writer);
}


/* the operation's answer to its handler; then it is freed */

static void
ngx_rbcs_batch_deliver(ngx_rbcs_batch_op_t *op)
{
    op->state = NGX_RBCS_OP_DONE;

    if (op->handler) {
        op->handler(op);
    }

    /*
     * The pool was made with the request's connection's log, which the
     * handler may just have freed with the connection (or the client went
     * before): a debug build logs while destroying a pool.
     */

    op->pool->log = ngx_cycle->log;

    ngx_destroy_pool(op->pool);
}


/* ---------------------------------------------------------- helpers -- */

/* the batch's time plus seconds, in the database's DATETIME(3) form */

static ngx_rbcs_ledger_str_t
ngx_rbcs_batch_expiry(ngx_rbcs_batch_t *b, ngx_uint_t seconds)
{
    u_char                 buf[NGX_RBCS_TIME_LEN], *p;
    int64_t                ms;
    ngx_rbcs_ledger_str_t  s;

    s.data = NULL;
    s.len = 0;

    if (seconds == 0
        || ngx_rbcs_time_from_datetime(buf, b->now.data, b->now.len) == 0
        || ngx_rbcs_time_parse_rfc3339(buf, NGX_RBCS_TIME_LEN, &ms) != 0
        || ngx_rbcs_time_format(buf, ms + (int64_t) seconds * 1000) == 0)
    {
        return s;
    }

    /* "YYYY-MM-DDTHH:MM:SS.fffZ" to "YYYY-MM-DD HH:MM:SS.fff" */

    p = ngx_pnalloc(b->pool, NGX_RBCS_TIME_LEN - 1);
    if (p == NULL) {
        return s;
    }

    ngx_memcpy(p, buf, NGX_RBCS_TIME_LEN - 1);
    p[10] = ' ';

    s.data = p;
    s.len = NGX_RBCS_TIME_LEN - 1;

    return s;
}


static int ngx_libc_cdecl
ngx_rbcs_batch_cmp(const void *one, const void *two)
{
    ngx_int_t         rc;
    const ngx_str_t  *a, *b;

    a = one;
    b = two;

    rc = ngx_memcmp(a->data, b->data, ngx_min(a->len, b->len));

    if (rc != 0) {
        return rc;
    }

    return (a->len > b->len) - (a->len < b->len);
}


static ngx_rbcs_ledger_account_t *
ngx_rbcs_batch_account(ngx_rbcs_batch_t *b, ngx_str_t *number)
{
    ngx_int_t  ix;

    ix = ngx_rbcs_batch_search(b->numbers, b->naccounts, number);

    return (ix == NGX_ERROR) ? NULL : &b->accounts[ix];
}


/* where key is in the n sorted keys, or NGX_ERROR */

static ngx_int_t
ngx_rbcs_batch_search(ngx_str_t *keys, ngx_uint_t n, ngx_str_t *key)
{
    ngx_int_t   rc;
    ngx_uint_t  lo, hi, mid;

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        rc = ngx_rbcs_batch_cmp(&keys[mid], key);

        if (rc == 0) {
            return mid;
        }

        if (rc < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return NGX_ERROR;
}


static ngx_rbcs_ledger_str_t
ngx_rbcs_batch_lstr(ngx_str_t *s)
{
    ngx_rbcs_ledger_str_t  l;

    l.data = s->data;
    l.len = s->data ? s->len : 0;

    return l;
}


static ngx_str_t
ngx_rbcs_batch_nstr(ngx_rbcs_ledger_str_t *s)
{
    ngx_str_t  n;

    n.data = (u_char *) s->data;
    n.len = s->data ? s->len : 0;

    return n;
}


/* a DECIMAL(36,18) text from the database, in ledger units */

static ngx_int_t
ngx_rbcs_batch_value(ngx_str_t *decimal, ngx_rbcs_int128_t *value)
{
    int                 negative;
    ngx_rbcs_uint128_t  units;

    if (decimal->data == NULL
        || ngx_rbcs_amount_from_decimal(decimal->data, decimal->len,
                                        NGX_RBCS_AMOUNT_MAX_SCALE, &units,
                                        &negative)
           != NGX_RBCS_AMOUNT_OK)
    {
        return NGX_ERROR;
    }

    *value = negative ? -(ngx_rbcs_int128_t) units : (ngx_rbcs_int128_t) units;

    return NGX_OK;
}


/* ledger units as a DECIMAL(36,18) text, for SQL and rows alike */

static u_char *
ngx_rbcs_batch_decimal(u_char *p, ngx_rbcs_int128_t v)
{
    int                 negative;
    ngx_rbcs_uint128_t  units;

    units = ngx_rbcs_ledger_to_units(v, NGX_RBCS_AMOUNT_MAX_SCALE, &negative);

    return p + ngx_rbcs_amount_format(p, units, NGX_RBCS_AMOUNT_MAX_SCALE,
                                      negative);
}


static ngx_int_t
ngx_rbcs_batch_text(ngx_pool_t *pool, ngx_str_t *s, u_char *p, size_t len)
{
    s->data = ngx_pnalloc(pool, len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    s->len = len;
    ngx_memcpy(s->data, p, len);

    return NGX_OK;
}


/* 'text', or NULL for none */

static u_char *
ngx_rbcs_batch_quoted(u_char *p, ngx_str_t *s)
{
    if (s->data == NULL) {
        return ngx_cpymem(p, "NULL", 4);
    }

    *p++ = '\'';
    p = ngx_cpymem(p, s->data, s->len);
    *p++ = '\'';

    return p;
}
