
/*
 * RBCS: per-worker pool of non-blocking MariaDB connections.
 *
 * A query is a whole SQL text (possibly several statements, sent in one
 * round trip) handed to the pool by its owner (a request, the writer).  The pool runs it on a free
 * connection through Connector/C's _start/_cont API driven by nginx events
 * and timers, copies every result set into the query's pool, and calls the
 * query's handler from an event handler, never from ngx_rbcs_mysql_run().
 */


#ifndef _NGX_RBCS_MYSQL_H_INCLUDED_
#define _NGX_RBCS_MYSQL_H_INCLUDED_


#include "ngx_rbcs.h"


/* outcome of a query, in q->rc */
#define NGX_RBCS_MYSQL_OK          0
#define NGX_RBCS_MYSQL_EUNAVAIL    1  /* nothing sent: no connection */
#define NGX_RBCS_MYSQL_EUNKNOWN    2  /* sent, then timed out or lost */
#define NGX_RBCS_MYSQL_ESQL        3  /* the server refused; rolled back */

/* the most operations one write batch may carry */
#define NGX_RBCS_MYSQL_BATCH_MAX   256


typedef struct ngx_rbcs_mysql_query_s  ngx_rbcs_mysql_query_t;
typedef struct ngx_rbcs_mysql_conn_s   ngx_rbcs_mysql_conn_t;

typedef void (*ngx_rbcs_mysql_handler_pt)(ngx_rbcs_mysql_query_t *q);


typedef struct {
    ngx_uint_t                 ncols;
    ngx_uint_t                 nrows;
    ngx_str_t                 *names;    /* of the columns, as answered */
    ngx_str_t                 *cells;    /* row-major; data NULL for NULL */
} ngx_rbcs_mysql_result_t;


struct ngx_rbcs_mysql_query_s {
    ngx_str_t                  sql;
    ngx_pool_t                *pool;
    ngx_log_t                 *log;
    ngx_rbcs_mysql_handler_pt  handler;
    void                      *data;

    /* a transaction: ROLLBACK after any error */
    unsigned                   transaction:1;
    /* safe to run again after a lost connection (idempotent) */
    unsigned                   idempotent:1;
    /* an earlier attempt was sent and its outcome is unknown */
    unsigned                   unknown:1;
    /* keep the connection for the next query (ngx_rbcs_mysql_continue) */
    unsigned                   hold:1;

    ngx_uint_t                 state;
    ngx_uint_t                 attempts;
    ngx_rbcs_mysql_conn_t     *conn;
    ngx_rbcs_mysql_conn_t     *held;      /* kept for the next query */
    ngx_queue_t                queue;
    ngx_event_t                timer;

    ngx_uint_t                 rc;
    ngx_uint_t                 err;       /* server or client errno */
    ngx_array_t                results;   /* ngx_rbcs_mysql_result_t */
    ngx_msec_t                 start;
    ngx_msec_t                 elapsed;   /* from create to handler */
};


ngx_int_t ngx_rbcs_mysql_init_conf(ngx_conf_t *cf,
    ngx_rbcs_mysql_conf_t *conf);
ngx_int_t ngx_rbcs_mysql_init_process(ngx_cycle_t *cycle,
    ngx_rbcs_mysql_conf_t *conf);
void ngx_rbcs_mysql_exit_process(ngx_cycle_t *cycle);

ngx_rbcs_mysql_query_t *ngx_rbcs_mysql_create(ngx_pool_t *pool,
    ngx_log_t *log);
ngx_int_t ngx_rbcs_mysql_run(ngx_rbcs_mysql_query_t *q);
ngx_int_t ngx_rbcs_mysql_continue(ngx_rbcs_mysql_query_t *q,
    ngx_rbcs_mysql_query_t *prev);
void ngx_rbcs_mysql_cancel(ngx_rbcs_mysql_query_t *q);

ngx_str_t *ngx_rbcs_mysql_cell(ngx_rbcs_mysql_query_t *q, ngx_uint_t set,
    ngx_uint_t row, ngx_uint_t col);
ngx_int_t ngx_rbcs_mysql_columns(ngx_rbcs_mysql_query_t *q, ngx_uint_t set,
    ngx_str_t *names, ngx_uint_t *index);
ngx_uint_t ngx_rbcs_mysql_rows(ngx_rbcs_mysql_query_t *q, ngx_uint_t set);
ngx_int_t ngx_rbcs_mysql_shape(ngx_rbcs_mysql_query_t *q, ngx_uint_t nsets,
    ...);
ngx_uint_t ngx_rbcs_mysql_compound(ngx_rbcs_mysql_query_t *q);

ngx_uint_t ngx_rbcs_mysql_ready(void);
ngx_uint_t ngx_rbcs_mysql_answered_within(ngx_msec_t ms);
ngx_uint_t ngx_rbcs_mysql_connected(void);


#endif /* _NGX_RBCS_MYSQL_H_INCLUDED_ */
