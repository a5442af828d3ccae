
/*
 * RBCS: counters and histograms in shared memory, rendered as Prometheus
 * text by GET /metrics, summed across the pod's workers.
 */


#ifndef _NGX_RBCS_METRICS_H_INCLUDED_
#define _NGX_RBCS_METRICS_H_INCLUDED_


#include "ngx_rbcs.h"


/* routes, as labels */
#define NGX_RBCS_MR_NONE          0
#define NGX_RBCS_MR_HEALTHZ       1
#define NGX_RBCS_MR_READYZ        2
#define NGX_RBCS_MR_METRICS       3
#define NGX_RBCS_MR_OPEN          4
#define NGX_RBCS_MR_ACCOUNT       5
#define NGX_RBCS_MR_BALANCE       6
#define NGX_RBCS_MR_HISTORY       7
#define NGX_RBCS_MR_TRANSFER      8
#define NGX_RBCS_MR_TRANSACTION   9
#define NGX_RBCS_MR_CAPTURE       10
#define NGX_RBCS_MR_VOID          11
#define NGX_RBCS_MR_HOLDS         12
#define NGX_RBCS_MR_PROBLEM       13
#define NGX_RBCS_MR_N             14

/* plain counters */
#define NGX_RBCS_M_ZONE_HIT       0
#define NGX_RBCS_M_REDIS_HIT      1
#define NGX_RBCS_M_ZONE_MISS      2
#define NGX_RBCS_M_REDIS_MISS     3
#define NGX_RBCS_M_DB_READ        4
#define NGX_RBCS_M_MYSQL_ERRORS   5
#define NGX_RBCS_M_MYSQL_RETRIES  6
#define NGX_RBCS_M_MYSQL_DEADLOCKS 7
#define NGX_RBCS_M_MYSQL_LOCKWAITS 8
#define NGX_RBCS_M_MYSQL_RECONNECTS 9
#define NGX_RBCS_M_MYSQL_TIMEOUTS 10
#define NGX_RBCS_M_MYSQL_LOST     11
#define NGX_RBCS_M_QUEUE_FULL     12
#define NGX_RBCS_M_GENERATION_MOVES 13
#define NGX_RBCS_M_GENERATION_SEEN  14
#define NGX_RBCS_M_READ_DEADLINE    15
#define NGX_RBCS_M_GENERATION_READS 16
#define NGX_RBCS_M_PUBLISHES        17
#define NGX_RBCS_M_CACHE_EVICTIONS  18
#define NGX_RBCS_M_N              19


ngx_int_t ngx_rbcs_metrics_zone(ngx_conf_t *cf);
ngx_int_t ngx_rbcs_metrics_init_process(ngx_cycle_t *cycle);

void ngx_rbcs_metrics_inc(ngx_uint_t counter);
void ngx_rbcs_metrics_batch(ngx_uint_t n);
void ngx_rbcs_metrics_pool(ngx_uint_t busy, ngx_uint_t idle,
    ngx_uint_t waiting, ngx_uint_t connecting);
void ngx_rbcs_metrics_write_queue(ngx_uint_t n);
void ngx_rbcs_metrics_write_queue_limit(ngx_uint_t n);
void ngx_rbcs_metrics_holds_overdue(ngx_uint_t found, uint64_t ms);
void ngx_rbcs_metrics_redis(ngx_uint_t connected);
ngx_int_t ngx_rbcs_metrics_log(ngx_http_request_t *r);
ngx_int_t ngx_rbcs_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_RBCS_METRICS_H_INCLUDED_ */
