
/*
 * RBCS: per-worker Redis client (hiredis async API on nginx events).
 *
 * One command connection per worker carries versioned balance writes
 * (EVAL, fire and forget) and reads (HMGET); one worker per pod also keeps
 * a subscription to <prefix>balances, on which every committed balance
 * change is published.  Values carry the run_id of the Redis process that
 * stored them: a value from another Redis process (one restored from a
 * snapshot, say) is never trusted.  While Redis is away every call costs
 * nothing and says so; the layer reconnects by itself.
 */


#ifndef _NGX_RBCS_REDIS_H_INCLUDED_
#define _NGX_RBCS_REDIS_H_INCLUDED_


#include "ngx_rbcs.h"


/* subscription events, for ngx_rbcs_redis_sub_pt */
#define NGX_RBCS_REDIS_SUB_UP     1   /* subscribed (again): messages flow */
#define NGX_RBCS_REDIS_SUB_ALIVE  2   /* a heartbeat reply or a message */
#define NGX_RBCS_REDIS_SUB_DOWN   3   /* the subscription is lost */
#define NGX_RBCS_REDIS_SUB_GAP    4   /* a publisher's message went missing */


typedef struct {
    ngx_str_t                  account;     /* [A-Za-z0-9_.:-], <= 64 */
    uint64_t                   version;
    ngx_str_t                  balance;     /* decimal text at the scale */
    ngx_str_t                  currency;
    ngx_uint_t                 scale;
    uint64_t                   generation;  /* the writer's, when written */
} ngx_rbcs_redis_balance_t;


typedef struct ngx_rbcs_redis_get_s  ngx_rbcs_redis_get_t;

typedef void (*ngx_rbcs_redis_message_pt)(ngx_rbcs_redis_balance_t *b);
typedef void (*ngx_rbcs_redis_sub_pt)(ngx_uint_t event);
typedef void (*ngx_rbcs_redis_lost_pt)(void);
typedef void (*ngx_rbcs_redis_get_pt)(void *data, ngx_int_t rc,
    ngx_rbcs_redis_balance_t *b);


/*
 * From init_process: opens the command connection and, with subscriber
 * set, the subscription.  on_message gets each published change (its
 * strings live until it returns); on_sub gets the subscription's events.
 */
ngx_int_t ngx_rbcs_redis_init_process(ngx_cycle_t *cycle,
    ngx_rbcs_redis_conf_t *conf, ngx_uint_t subscriber,
    ngx_rbcs_redis_message_pt on_message, ngx_rbcs_redis_sub_pt on_sub);
void ngx_rbcs_redis_exit_process(ngx_cycle_t *cycle);

/*
 * Versioned writes of n balances and one publish of those written, in one
 * command, fire and forget; everything is copied; each stored with the
 * cache generation its writer last read.  NGX_OK: sent; NGX_DECLINED:
 * Redis is not ready (or a balance is malformed).  With commit set (the
 * balances were just committed), a put sent and then lost or refused is
 * reported to the handler of ngx_rbcs_redis_on_lost().
 */
ngx_int_t ngx_rbcs_redis_put(ngx_rbcs_redis_balance_t *b, ngx_uint_t n,
    uint64_t generation, ngx_uint_t commit);
ngx_uint_t ngx_rbcs_redis_writable(void);
void ngx_rbcs_redis_on_lost(ngx_rbcs_redis_lost_pt handler);
u_char *ngx_rbcs_redis_host_key(ngx_cycle_t *cycle, u_char *p, size_t max);

/*
 * Read a balance.  NULL: Redis is not ready, the handler will not be
 * called.  Otherwise the handler is called exactly once, from an event
 * handler: NGX_OK with b (its strings live until the handler returns),
 * NGX_DECLINED (no trusted value), NGX_ERROR (timeout, lost connection).
 * The returned operation is valid until its handler is called or it is
 * cancelled, whichever comes first; it must not be used after that.
 */
ngx_rbcs_redis_get_t *ngx_rbcs_redis_get(ngx_str_t *account,
    ngx_msec_t timeout, ngx_rbcs_redis_get_pt handler, void *data,
    ngx_log_t *log);
void ngx_rbcs_redis_get_cancel(ngx_rbcs_redis_get_t *g);


#endif /* _NGX_RBCS_REDIS_H_INCLUDED_ */
