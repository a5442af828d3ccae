
/*
 * RBCS: the cache generation, what keeps cached balances trusted only
 * while every committed change reaches every pod.
 *
 * A worker that committed balances and could not publish them (Redis not
 * ready when round trip 2 was built, a put refused, lost or unanswered)
 * moves its own row of the cache_generation table on: in the same
 * transaction when it knew beforehand, else with a query of its own right
 * after, retried until it is done.  The pod's poller (worker 0) reads the
 * table's COUNT and SUM every rbcs_cache_zone poll; when they moved, the
 * zone stops trusting what was known current before that read started
 * (ngx_rbcs_cache_generation()).  docs/architecture.md, "Cache trust",
 * has the argument and the bound.
 */


#ifndef _NGX_RBCS_GENERATION_H_INCLUDED_
#define _NGX_RBCS_GENERATION_H_INCLUDED_


#include "ngx_rbcs.h"


/* room for ngx_rbcs_generation_sql()'s statement */
#define NGX_RBCS_GENERATION_SQL_LEN  256


ngx_int_t ngx_rbcs_generation_init_process(ngx_cycle_t *cycle,
    ngx_uint_t poller);
void ngx_rbcs_generation_exit_process(ngx_cycle_t *cycle);

/*
 * Round trip 2's statement that moves this worker's row on, when its
 * changes may not reach Redis: appended at p, with *mark set for
 * ngx_rbcs_generation_committed(); p unchanged and *mark 0 otherwise.
 */
u_char *ngx_rbcs_generation_sql(u_char *p, ngx_uint_t *mark);

/* a transaction with ngx_rbcs_generation_sql()'s statement committed */
void ngx_rbcs_generation_committed(ngx_uint_t mark);

/* committed balances did not reach Redis, or may not have */
void ngx_rbcs_generation_unpublished(void);

/* the generation Redis values are written with: the pod's last read */
uint64_t ngx_rbcs_generation_stamp(void);


#endif /* _NGX_RBCS_GENERATION_H_INCLUDED_ */
