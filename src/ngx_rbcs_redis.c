
/*
 * RBCS: per-worker Redis client.
 *
 * hiredis's async API driven by nginx events.  The library's socket gets
 * an nginx connection (ngx_get_connection) that is given back, without
 * closing the socket, from the library's cleanup hook: hiredis closes its
 * own socket right after calling it.  Events are registered level
 * triggered, because hiredis reads at most 16k per call and would not be
 * called again for the rest under edge triggering.  While the socket has
 * room, a write is posted rather than registered: the commands queued in
 * one loop iteration go out in one write() with no epoll_ctl().
 *
 * hiredis 0.14 has no timer hook: the connect timeout, a watchdog on
 * replies (a connection with replies outstanding and none arriving within
 * command_timeout is hung) and each read's timeout are nginx timers.  A
 * failed or hung connection is freed and reconnected after a growing,
 * jittered delay; until it is back, put and get decline at no cost.
 *
 * Redis is not trusted with balances.  Both connections authenticate
 * (AUTH, a Redis 6+ ACL user) before anything else.  Every stored value
 * and every line of a message carries a tag, an HMAC-SHA256 keyed with
 * the pods' shared key over the account, version, scale, currency, state
 * and cache generation; each message's first line carries its own tag
 * over the publisher, number, generation and time.  What fails its tag,
 * or comes from a publisher's past, is never used: whoever can write to
 * Redis can delete or repeat, but not make a balance.
 */


#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_rbcs_redis.h"
#include "ngx_rbcs_metrics.h"
#include "ngx_rbcs_http.h"


#define NGX_RBCS_RS_CLOSED           0
#define NGX_RBCS_RS_BACKOFF          1
#define NGX_RBCS_RS_CONNECTING       2
#define NGX_RBCS_RS_HANDSHAKE        3   /* INFO or SUBSCRIBE sent */
#define NGX_RBCS_RS_READY            4


#define NGX_RBCS_REDIS_RUN_ID_LEN    40
#define NGX_RBCS_REDIS_TEXT_MAX      128  /* a currency or balance text */

#define NGX_RBCS_REDIS_TAG_LEN       32   /* hex of 16 bytes of HMAC */
#define NGX_RBCS_REDIS_LINE_LEN      512  /* a line of a message, at most */
#define NGX_RBCS_REDIS_MSG_WINDOW    60000  /* ms a message stays news */


typedef struct ngx_rbcs_redis_s  ngx_rbcs_redis_t;


typedef struct {
    ngx_rbcs_redis_t          *redis;
    redisAsyncContext         *ac;        /* NULL: none, or being freed */
    ngx_connection_t          *c;
    const char                *name;
    ngx_uint_t                 state;
    ngx_uint_t                 failures;
    ngx_uint_t                 pending;   /* replies outstanding */
    ngx_msec_t                 progress;  /* last reply, or first send */
    ngx_event_t                timer;     /* backoff, connect, watchdog,
                                             heartbeat */
    unsigned                   subscriber:1;
    unsigned                   up:1;      /* SUB_UP was reported */
    unsigned                   down:1;    /* the loss was logged */
    unsigned                   writing:1; /* in redisAsyncHandleWrite() */
    unsigned                   broken:1;  /* drop it at the next timer */
} ngx_rbcs_redis_conn_t;


/* the last message seen from each publisher, to see one go missing */

#define NGX_RBCS_REDIS_PUBLISHERS      256
#define NGX_RBCS_REDIS_PUBLISHER_LEN   128

typedef struct {
    size_t                     len;       /* 0: free */
    u_char                     id[NGX_RBCS_REDIS_PUBLISHER_LEN];
    uint64_t                   seq;
    ngx_msec_t                 seen;
} ngx_rbcs_redis_publisher_t;


struct ngx_rbcs_redis_s {
    ngx_rbcs_redis_conf_t     *conf;
    ngx_log_t                 *log;
    char                      *host;
    ngx_str_t                  addr;      /* for the log */

    ngx_rbcs_redis_conn_t      cmd;
    ngx_rbcs_redis_conn_t      sub;

    ngx_rbcs_redis_message_pt  on_message;
    ngx_rbcs_redis_sub_pt      on_sub;

    ngx_str_t                  channel;   /* <prefix>balances */
    ngx_str_t                  key;       /* <prefix>bal: */
    u_char                     ttl[NGX_INT64_LEN];
    size_t                     ttl_len;

    u_char                     run_id[NGX_RBCS_REDIS_RUN_ID_LEN];
    size_t                     run_id_len;   /* 0: never seen */
    ngx_msec_t                 alive;        /* ALIVE last reported */

    /* "#<host>/<worker>/<pid> <seq>": the first line of each message */
    u_char                     publisher[NGX_RBCS_REDIS_PUBLISHER_LEN];
    size_t                     publisher_len;
    uint64_t                   seq;
    ngx_rbcs_redis_publisher_t *publishers;  /* the subscriber's */

    EVP_MAC_CTX               *mac;          /* keyed: HMAC-SHA256 */

    unsigned                   exiting:1;
    unsigned                   failing:1;    /* a command error logged */
    unsigned                   garbled:1;    /* a bad message logged */
    ngx_msec_t                 forged;       /* a forgery last logged */
};


struct ngx_rbcs_redis_get_s {
    ngx_rbcs_redis_get_pt      handler;   /* NULL: answered or cancelled */
    void                      *data;
    ngx_event_t                timer;
    size_t                     account_len;
    u_char                     account[NGX_RBCS_ID_MAX_LEN];
};


static void ngx_rbcs_redis_conn_init(ngx_rbcs_redis_t *redis,
    ngx_rbcs_redis_conn_t *conn, const char *name, ngx_uint_t subscriber);
static void ngx_rbcs_redis_connect(ngx_rbcs_redis_conn_t *conn);
static ngx_int_t ngx_rbcs_redis_attach(ngx_rbcs_redis_conn_t *conn,
    redisAsyncContext *ac);
static void ngx_rbcs_redis_add_read(void *data);
static void ngx_rbcs_redis_del_read(void *data);
static void ngx_rbcs_redis_del_event(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t flags);
static void ngx_rbcs_redis_add_write(void *data);
static void ngx_rbcs_redis_del_write(void *data);
static void ngx_rbcs_redis_cleanup(void *data);
static void ngx_rbcs_redis_timer(ngx_rbcs_redis_conn_t *conn,
    ngx_msec_t ms);
static void ngx_rbcs_redis_drop_later(ngx_rbcs_redis_conn_t *conn);
static void ngx_rbcs_redis_read_handler(ngx_event_t *ev);
static void ngx_rbcs_redis_write_handler(ngx_event_t *ev);
static void ngx_rbcs_redis_connect_cb(const redisAsyncContext *ac,
    int status);
static void ngx_rbcs_redis_disconnect_cb(const redisAsyncContext *ac,
    int status);
static void ngx_rbcs_redis_timer_handler(ngx_event_t *ev);
static void ngx_rbcs_redis_ready(ngx_rbcs_redis_conn_t *conn,
    ngx_uint_t restarted);
static void ngx_rbcs_redis_lost(ngx_rbcs_redis_conn_t *conn,
    const char *reason);
static void ngx_rbcs_redis_drop(ngx_rbcs_redis_conn_t *conn,
    const char *reason);
static void ngx_rbcs_redis_backoff(ngx_rbcs_redis_conn_t *conn);
static ngx_uint_t ngx_rbcs_redis_exiting(ngx_rbcs_redis_t *redis);
static const char *ngx_rbcs_redis_errstr(const redisAsyncContext *ac);
static ngx_int_t ngx_rbcs_redis_command(ngx_rbcs_redis_conn_t *conn,
    redisCallbackFn *fn, void *data, const char *fmt, ...);
static void ngx_rbcs_redis_sent(ngx_rbcs_redis_conn_t *conn);
static void ngx_rbcs_redis_replied(ngx_rbcs_redis_conn_t *conn);
static ngx_int_t ngx_rbcs_redis_reply(ngx_rbcs_redis_conn_t *conn,
    redisAsyncContext *ac, void *reply);
static ngx_int_t ngx_rbcs_redis_subscribe(ngx_rbcs_redis_conn_t *conn);
static ngx_int_t ngx_rbcs_redis_auth(ngx_rbcs_redis_conn_t *conn);
static void ngx_rbcs_redis_auth_cb(redisAsyncContext *ac, void *r,
    void *data);
static ngx_int_t ngx_rbcs_redis_mac_init(ngx_rbcs_redis_t *redis);
static ngx_int_t ngx_rbcs_redis_tag(ngx_rbcs_redis_t *redis, u_char *text,
    size_t len, u_char *hex);
static ngx_int_t ngx_rbcs_redis_balance_tag(ngx_rbcs_redis_t *redis,
    ngx_rbcs_redis_balance_t *b, uint64_t generation, u_char *hex);
static ngx_int_t ngx_rbcs_redis_tag_valid(ngx_rbcs_redis_t *redis,
    ngx_rbcs_redis_balance_t *b, uint64_t generation, u_char *tag,
    size_t len);
static void ngx_rbcs_redis_forged(ngx_rbcs_redis_t *redis, const char *what,
    ngx_str_t *name);
static void ngx_rbcs_redis_unlink(ngx_rbcs_redis_t *redis,
    ngx_str_t *account);
static void ngx_rbcs_redis_info_cb(redisAsyncContext *ac, void *r,
    void *data);
static ngx_int_t ngx_rbcs_redis_run_id(ngx_rbcs_redis_t *redis,
    redisReply *reply, ngx_uint_t *restarted);
static u_char *ngx_rbcs_redis_put_args(ngx_rbcs_redis_t *redis, u_char *p,
    ngx_rbcs_redis_balance_t *b, ngx_uint_t n, uint64_t generation);
static u_char *ngx_rbcs_redis_bulk(u_char *p, const void *s, size_t len);
static u_char *ngx_rbcs_redis_number(u_char *p, uint64_t n);
static uint64_t ngx_rbcs_redis_now(void);
static void ngx_rbcs_redis_put_cb(redisAsyncContext *ac, void *r,
    void *data);
static void ngx_rbcs_redis_get_cb(redisAsyncContext *ac, void *r,
    void *data);
static void ngx_rbcs_redis_get_timer(ngx_event_t *ev);
static ngx_int_t ngx_rbcs_redis_get_reply(ngx_rbcs_redis_t *redis,
    redisReply *reply, ngx_rbcs_redis_get_t *g, ngx_rbcs_redis_balance_t *b);
static void ngx_rbcs_redis_sub_cb(redisAsyncContext *ac, void *r,
    void *data);
static void ngx_rbcs_redis_message(ngx_rbcs_redis_t *redis,
    redisReply *msg);
static ngx_int_t ngx_rbcs_redis_parse_message(u_char *p, size_t len,
    ngx_rbcs_redis_balance_t *b, ngx_str_t *tag);
static ngx_int_t ngx_rbcs_redis_split(u_char *p, u_char *last, ngx_str_t *f,
    ngx_uint_t n);
static ngx_int_t ngx_rbcs_redis_fields(ngx_rbcs_redis_balance_t *b,
    ngx_str_t *version, ngx_str_t *scale, ngx_str_t *currency,
    ngx_str_t *balance);
static void ngx_rbcs_redis_alive(ngx_rbcs_redis_t *redis, ngx_uint_t force);
static void ngx_rbcs_redis_command_done(ngx_rbcs_redis_t *redis,
    redisReply *reply);
static ngx_int_t ngx_rbcs_redis_text_valid(u_char *p, size_t len,
    ngx_uint_t decimal);
static ngx_int_t ngx_rbcs_redis_parse_uint64(u_char *p, size_t len,
    uint64_t *value);


/*
 * The versioned write of several balances (a write batch's), in one
 * command.  A stored value is kept when it comes from the same Redis
 * process (same run_id) and is at least as new; a value from another
 * process, restored from a snapshot, always loses.  Versions are compared
 * as decimal texts (no leading zeros): Lua numbers are doubles.  Every
 * value is published, written or not, as one message of one line each: a
 * stored value that is newer may be a forgery (one with a huge version,
 * say), and subscribers keep the newest authentic value anyway.
 *
 * The message always goes, its first line the writer's id and the
 * number of this put among its puts, so that a subscriber sees when one
 * went missing.
 *
 * KEYS: the keys; ARGV: ttl, run_id, channel, the cache generation the
 * writer last read, the first line, then for each key version, balance,
 * currency, scale, tag, message line.
 */

static const char  ngx_rbcs_redis_script[] =
    "local out, n = {ARGV[5]}, 0\n"
    "for i = 1, #KEYS do\n"
    "  local a = 6 + (i - 1) * 6\n"
    "  local v = ARGV[a]\n"
    "  local o = redis.call('HMGET', KEYS[i], 'v', 'r')\n"
    "  if not (o[2] == ARGV[2] and o[1]\n"
    "          and (#o[1] > #v or (#o[1] == #v and o[1] >= v))) then\n"
    "    redis.call('HSET', KEYS[i], 'v', v, 'b', ARGV[a + 1],\n"
    "               'c', ARGV[a + 2], 's', ARGV[a + 3], 'r', ARGV[2],\n"
    "               'g', ARGV[4], 't', ARGV[a + 4])\n"
    "    redis.call('PEXPIRE', KEYS[i], ARGV[1])\n"
    "    n = n + 1\n"
    "  end\n"
    "  out[#out + 1] = ARGV[a + 5]\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[3], table.concat(out, '\\n'))\n"
    "return n\n";


static void ngx_rbcs_redis_publisher_id(ngx_rbcs_redis_t *redis,
    ngx_cycle_t *cycle);
static ngx_int_t ngx_rbcs_redis_header(ngx_rbcs_redis_t *redis, u_char *p,
    size_t len, uint64_t *generation);
static ngx_int_t ngx_rbcs_redis_heard(ngx_rbcs_redis_t *redis, u_char *p,
    size_t id_len, uint64_t seq);


static ngx_rbcs_redis_t        *ngx_rbcs_redis;
static ngx_rbcs_redis_lost_pt   ngx_rbcs_redis_lost_handler;


ngx_int_t
ngx_rbcs_redis_init_process(ngx_cycle_t *cycle, ngx_rbcs_redis_conf_t *conf,
    ngx_uint_t subscriber, ngx_rbcs_redis_message_pt on_message,
    ngx_rbcs_redis_sub_pt on_sub)
{
    size_t             len;
    ngx_rbcs_redis_t  *redis;

    if (conf->host.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "rbcs: no redis address");
        return NGX_ERROR;
    }

    redis = ngx_pcalloc(cycle->pool, sizeof(ngx_rbcs_redis_t));
    if (redis == NULL) {
        return NGX_ERROR;
    }

    redis->conf = conf;
    redis->log = cycle->log;
    redis->on_message = on_message;
    redis->on_sub = on_sub;

    redis->host = ngx_pnalloc(cycle->pool, conf->host.len + 1);
    if (redis->host == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) redis->host, conf->host.data,
                       conf->host.len + 1);

    len = conf->host.len + sizeof("[]:65535") - 1;

    redis->addr.data = ngx_pnalloc(cycle->pool, len);
    if (redis->addr.data == NULL) {
        return NGX_ERROR;
    }

    redis->addr.len = ngx_snprintf(redis->addr.data, len,
                                   ngx_strlchr(conf->host.data,
                                               conf->host.data
                                               + conf->host.len, ':')
                                   ? "[%V]:%d" : "%V:%d",
                                   &conf->host, (int) conf->port)
                      - redis->addr.data;

    redis->channel.len = conf->prefix.len + sizeof("balances") - 1;
    redis->channel.data = ngx_pnalloc(cycle->pool, redis->channel.len);
    if (redis->channel.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(redis->channel.data, "%Vbalances", &conf->prefix);

    ngx_rbcs_redis_publisher_id(redis, cycle);

    if (ngx_rbcs_redis_mac_init(redis) != NGX_OK) {
        return NGX_ERROR;
    }

    if (subscriber) {
        redis->publishers = ngx_pcalloc(cycle->pool,
                                        NGX_RBCS_REDIS_PUBLISHERS
                                        * sizeof(ngx_rbcs_redis_publisher_t));
        if (redis->publishers == NULL) {
            return NGX_ERROR;
        }
    }

    redis->key.len = conf->prefix.len + sizeof("bal:") - 1;
    redis->key.data = ngx_pnalloc(cycle->pool, redis->key.len);
    if (redis->key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(redis->key.data, "%Vbal:", &conf->prefix);

    redis->ttl_len = ngx_sprintf(redis->ttl, "%M", conf->key_ttl)
                     - redis->ttl;

    ngx_rbcs_redis_conn_init(redis, &redis->cmd, "command", 0);
    ngx_rbcs_redis_conn_init(redis, &redis->sub, "subscription", 1);

    ngx_rbcs_redis = redis;

    ngx_rbcs_redis_connect(&redis->cmd);

    if (subscriber) {
        ngx_rbcs_redis_connect(&redis->sub);
    }

    return NGX_OK;
}


/*
 * Free both contexts: their pending callbacks run with a NULL reply and,
 * the process being on its way out, call no reader's handler.  The
 * subscription is not reported DOWN: after a reload, the new worker may
 * already have reported it UP.
 */

void
ngx_rbcs_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    redisAsyncContext      *ac;
    ngx_rbcs_redis_t       *redis;
    ngx_rbcs_redis_conn_t  *conns[2], *conn;

    redis = ngx_rbcs_redis;
    if (redis == NULL) {
        return;
    }

    redis->exiting = 1;

    conns[0] = &redis->sub;
    conns[1] = &redis->cmd;

    for (i = 0; i < 2; i++) {
        conn = conns[i];

        ngx_rbcs_redis_timer(conn, 0);

        ac = conn->ac;
        conn->ac = NULL;
        conn->state = NGX_RBCS_RS_CLOSED;
        conn->up = 0;

        if (ac) {
            redisAsyncFree(ac);
        }
    }

    if (redis->mac) {
        EVP_MAC_CTX_free(redis->mac);
        redis->mac = NULL;
    }

    ngx_rbcs_redis = NULL;
}


static void
ngx_rbcs_redis_conn_init(ngx_rbcs_redis_t *redis, ngx_rbcs_redis_conn_t *conn,
    const char *name, ngx_uint_t subscriber)
{
    conn->redis = redis;
    conn->name = name;
    conn->state = NGX_RBCS_RS_CLOSED;
    conn->subscriber = subscriber;

    conn->timer.handler = ngx_rbcs_redis_timer_handler;
    conn->timer.data = conn;
    conn->timer.log = redis->log;

    /* none of these timers should hold back a worker that shuts down */
    conn->timer.cancelable = 1;
}


static void
ngx_rbcs_redis_connect(ngx_rbcs_redis_conn_t *conn)
{
    redisAsyncContext  *ac;
    ngx_rbcs_redis_t   *redis;

    redis = conn->redis;

    if (ngx_rbcs_redis_exiting(redis)) {
        conn->state = NGX_RBCS_RS_CLOSED;
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, redis->log, 0,
                   "rbcs: redis %s connection to %V: connecting",
                   conn->name, &redis->addr);

    /* the host is a numeric address: no name resolution here */

    ac = redisAsyncConnect(redis->host, redis->conf->port);

    if (ac == NULL) {
        ngx_rbcs_redis_lost(conn, "out of memory");
        return;
    }

    if (ac->err) {
        ngx_rbcs_redis_lost(conn, ngx_rbcs_redis_errstr(ac));
        redisAsyncFree(ac);
        return;
    }

    if (ngx_rbcs_redis_attach(conn, ac) != NGX_OK) {
        ngx_rbcs_redis_lost(conn, "no free nginx connection");
        redisAsyncFree(ac);
        return;
    }

    conn->ac = ac;
    conn->state = NGX_RBCS_RS_CONNECTING;
    conn->pending = 0;
    conn->broken = 0;

    ngx_add_timer(&conn->timer, redis->conf->connect_timeout);

    (void) redisAsyncSetDisconnectCallback(ac, ngx_rbcs_redis_disconnect_cb);

    /* this asks for the write event that tells the connect's outcome */

    (void) redisAsyncSetConnectCallback(ac, ngx_rbcs_redis_connect_cb);
}


/* give the library's socket an nginx connection and map the hooks */

static ngx_int_t
ngx_rbcs_redis_attach(ngx_rbcs_redis_conn_t *conn, redisAsyncContext *ac)
{
    ngx_log_t         *log;
    ngx_connection_t  *c;

    log = conn->redis->log;

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = conn;
    c->log = log;
    c->read->log = log;
    c->write->log = log;
    c->read->handler = ngx_rbcs_redis_read_handler;
    c->write->handler = ngx_rbcs_redis_write_handler;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    conn->c = c;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_rbcs_redis_add_read;
    ac->ev.delRead = ngx_rbcs_redis_del_read;
    ac->ev.addWrite = ngx_rbcs_redis_add_write;
    ac->ev.delWrite = ngx_rbcs_redis_del_write;
    ac->ev.cleanup = ngx_rbcs_redis_cleanup;

    return NGX_OK;
}


static void
ngx_rbcs_redis_add_read(void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    ngx_connection_t  *c;

    c = conn->c;

    if (c == NULL || c->read->active) {
        return;
    }

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_rbcs_redis_drop_later(conn);
    }
}


static void
ngx_rbcs_redis_del_read(void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    if (conn->c) {
        ngx_rbcs_redis_del_event(conn->c->read, NGX_READ_EVENT, 0);
    }
}


/* hiredis no longer waits for this event: neither reported nor pending */

static void
ngx_rbcs_redis_del_event(ngx_event_t *ev, ngx_int_t event, ngx_uint_t flags)
{
    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (ev->active) {
        (void) ngx_del_event(ev, event, flags);
    }
}


/*
 * hiredis has output.  When the socket was writable at last report and we
 * are not inside a write that left output behind, post the write event:
 * it runs later in this loop iteration, after every command queued until
 * then.  Otherwise wait for the socket to become writable.
 */

static void
ngx_rbcs_redis_add_write(void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    ngx_event_t       *wev;
    ngx_connection_t  *c;

    c = conn->c;

    if (c == NULL) {
        return;
    }

    wev = c->write;

    if (wev->active || wev->posted) {
        return;
    }

    if (wev->ready && !conn->writing) {
        ngx_post_event(wev, &ngx_posted_events);
        return;
    }

    wev->ready = 0;

    if (ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_rbcs_redis_drop_later(conn);
    }
}


static void
ngx_rbcs_redis_del_write(void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    if (conn->c) {
        ngx_rbcs_redis_del_event(conn->c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis is about to close the socket itself: forget the events (the
 * close removes the socket from epoll) and give the nginx connection back
 * without closing anything.
 */

static void
ngx_rbcs_redis_cleanup(void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    ngx_connection_t  *c;

    c = conn->c;

    if (c == NULL) {
        return;
    }

    conn->c = NULL;

    ngx_rbcs_redis_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    ngx_rbcs_redis_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/*
 * The connection's one timer, set anew to ms from now (0: stopped): not
 * left at an earlier setting, as ngx_add_timer() may leave one close by.
 */

static void
ngx_rbcs_redis_timer(ngx_rbcs_redis_conn_t *conn, ngx_msec_t ms)
{
    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (ms) {
        ngx_add_timer(&conn->timer, ms);
    }
}


/*
 * Where the context cannot be freed (an event hook, the connect callback),
 * have the timer drop it as soon as the event loop gets there.
 */

static void
ngx_rbcs_redis_drop_later(ngx_rbcs_redis_conn_t *conn)
{
    conn->broken = 1;

    ngx_rbcs_redis_timer(conn, 1);
}


static void
ngx_rbcs_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_rbcs_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (conn->ac == NULL || conn->c != c) {
        return;
    }

    /* may free the context and give c back: touch neither afterwards */

    redisAsyncHandleRead(conn->ac);
}


static void
ngx_rbcs_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_rbcs_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (conn->ac == NULL || conn->c != c) {
        return;
    }

    conn->writing = 1;
    redisAsyncHandleWrite(conn->ac);
    conn->writing = 0;
}


/*
 * hiredis 0.14 calls this outside its callback guard: the context must
 * not be freed from here.  On failure hiredis frees it after we return.
 */

static void
ngx_rbcs_redis_connect_cb(const redisAsyncContext *ac, int status)
{
    ngx_int_t               rc;
    ngx_rbcs_redis_conn_t  *conn;

    conn = ac->data;

    if (conn == NULL || conn->ac != ac) {
        return;
    }

    if (status != REDIS_OK) {
        ngx_rbcs_redis_lost(conn, ngx_rbcs_redis_errstr(ac));
        return;
    }

    ngx_rbcs_redis_timer(conn, 0);

    conn->state = NGX_RBCS_RS_HANDSHAKE;

    /* AUTH goes first; what follows it fails with NOAUTH if it fails */

    if (conn->redis->conf->password.len
        && ngx_rbcs_redis_auth(conn) != NGX_OK)
    {
        rc = NGX_ERROR;

    } else if (conn->subscriber) {
        rc = ngx_rbcs_redis_subscribe(conn);

    } else {
        rc = ngx_rbcs_redis_command(conn, ngx_rbcs_redis_info_cb, conn,
                                    "INFO server");
    }

    if (rc != NGX_OK) {
        ngx_rbcs_redis_drop_later(conn);
    }
}


static void
ngx_rbcs_redis_disconnect_cb(const redisAsyncContext *ac, int status)
{
    ngx_rbcs_redis_conn_t  *conn;

    conn = ac->data;

    /* a context we dropped ourselves is already accounted for */

    if (conn == NULL || conn->ac != ac) {
        return;
    }

    ngx_rbcs_redis_lost(conn, status == REDIS_OK
                              ? "closed" : ngx_rbcs_redis_errstr(ac));
}


static void
ngx_rbcs_redis_timer_handler(ngx_event_t *ev)
{
    u_char                  reason[64];
    ngx_msec_t              elapsed, timeout;
    ngx_rbcs_redis_conn_t  *conn;

    conn = ev->data;

    switch (conn->state) {

    case NGX_RBCS_RS_BACKOFF:
        ngx_rbcs_redis_connect(conn);
        return;

    case NGX_RBCS_RS_CONNECTING:
        ngx_rbcs_redis_drop(conn, conn->broken ? "event registration failed"
                                               : "connect timed out");
        return;

    case NGX_RBCS_RS_HANDSHAKE:
    case NGX_RBCS_RS_READY:
        break;

    default:
        return;
    }

    if (conn->broken) {
        ngx_rbcs_redis_drop(conn, "event registration or command failed");
        return;
    }

    timeout = conn->redis->conf->command_timeout;

    if (conn->pending == 0) {

        /* the subscription's heartbeat is due */

        if (conn->subscriber && conn->state == NGX_RBCS_RS_READY
            && ngx_rbcs_redis_subscribe(conn) != NGX_OK)
        {
            ngx_rbcs_redis_drop(conn, "heartbeat not sent");
        }

        return;
    }

    /* replies are outstanding: hung only if none came for the timeout */

    elapsed = ngx_current_msec - conn->progress;

    if (elapsed < timeout) {
        ngx_add_timer(&conn->timer, timeout - elapsed);
        return;
    }

    ngx_snprintf(reason, sizeof(reason), "no reply within %M ms%Z", timeout);

    ngx_rbcs_redis_drop(conn, (char *) reason);
}


static void
ngx_rbcs_redis_ready(ngx_rbcs_redis_conn_t *conn, ngx_uint_t restarted)
{
    ngx_uint_t         level;
    ngx_rbcs_redis_t  *redis;

    redis = conn->redis;

    ngx_rbcs_redis_timer(conn, 0);

    conn->state = NGX_RBCS_RS_READY;
    conn->failures = 0;
    conn->broken = 0;

    /* coming back is the state change worth a warning; the start is not */

    level = conn->down ? NGX_LOG_WARN : NGX_LOG_INFO;

    /* the command connection's also says which redis process it is */

    ngx_log_error(level, redis->log, 0,
                  "rbcs: redis %s connection to %V is %s%s%*s%s",
                  conn->name, &redis->addr, conn->down ? "back" : "up",
                  conn->subscriber ? "" : ", run_id ",
                  conn->subscriber ? 0 : redis->run_id_len, redis->run_id,
                  restarted ? " (a new redis process: values stored "
                              "by the old one are not trusted)" : "");

    conn->down = 0;

    if (!conn->subscriber) {
        ngx_rbcs_metrics_redis(1);
    }
}


/*
 * The context is gone, or going (hiredis frees it once we return): log
 * the state change once, retry later, tell the cache.
 */

static void
ngx_rbcs_redis_lost(ngx_rbcs_redis_conn_t *conn, const char *reason)
{
    ngx_uint_t         up;
    ngx_rbcs_redis_t  *redis;

    redis = conn->redis;

    ngx_rbcs_redis_timer(conn, 0);

    if (!conn->down && !ngx_rbcs_redis_exiting(redis)) {
        ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                      "rbcs: redis %s connection to %V %s: %s",
                      conn->name, &redis->addr,
                      conn->state == NGX_RBCS_RS_READY ? "lost" : "failed",
                      reason);
        conn->down = 1;

    } else {
        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, redis->log, 0,
                       "rbcs: redis %s connection to %V failed: %s",
                       conn->name, &redis->addr, reason);
    }

    up = conn->up;

    if (!conn->subscriber) {
        ngx_rbcs_metrics_redis(0);
    }

    conn->ac = NULL;
    conn->up = 0;
    conn->pending = 0;
    conn->broken = 0;
    conn->state = NGX_RBCS_RS_CLOSED;

    ngx_rbcs_redis_backoff(conn);

    /* the next subscription starts every publisher's count anew */

    if (conn->subscriber && redis->publishers) {
        ngx_memzero(redis->publishers, NGX_RBCS_REDIS_PUBLISHERS
                                       * sizeof(ngx_rbcs_redis_publisher_t));
    }

    if (up && redis->on_sub && !ngx_rbcs_redis_exiting(redis)) {
        redis->on_sub(NGX_RBCS_REDIS_SUB_DOWN);
    }
}


/*
 * Give up a context on our own initiative.  Its pending callbacks run
 * with a NULL reply (from within redisAsyncFree(), or right after the
 * current callback when called from one) and find it already forgotten.
 */

static void
ngx_rbcs_redis_drop(ngx_rbcs_redis_conn_t *conn, const char *reason)
{
    redisAsyncContext  *ac;

    ac = conn->ac;

    ngx_rbcs_redis_lost(conn, reason);

    if (ac) {
        redisAsyncFree(ac);
    }
}


static void
ngx_rbcs_redis_backoff(ngx_rbcs_redis_conn_t *conn)
{
    ngx_msec_t  delay;

    if (ngx_rbcs_redis_exiting(conn->redis)) {
        conn->state = NGX_RBCS_RS_CLOSED;
        return;
    }

    delay = ngx_rbcs_backoff(conn->failures);

    conn->failures++;
    conn->state = NGX_RBCS_RS_BACKOFF;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, conn->redis->log, 0,
                   "rbcs: redis %s connection: retry in %M ms (#%ui)",
                   conn->name, delay, conn->failures);

    ngx_add_timer(&conn->timer, delay);
}


static ngx_uint_t
ngx_rbcs_redis_exiting(ngx_rbcs_redis_t *redis)
{
    return redis->exiting || ngx_exiting || ngx_quit || ngx_terminate;
}


static const char *
ngx_rbcs_redis_errstr(const redisAsyncContext *ac)
{
    /* ac->errstr is only copied at disconnect: read the context's own */

    return ac->c.errstr[0] ? ac->c.errstr : "connection closed";
}


/* a command, formatted as redisAsyncCommand() does: sent, and watched */

static ngx_int_t
ngx_rbcs_redis_command(ngx_rbcs_redis_conn_t *conn, redisCallbackFn *fn,
    void *data, const char *fmt, ...)
{
    int      rc;
    va_list  args;

    va_start(args, fmt);
    rc = redisvAsyncCommand(conn->ac, fn, data, fmt, args);
    va_end(args);

    if (rc != REDIS_OK) {
        return NGX_ERROR;
    }

    ngx_rbcs_redis_sent(conn);

    return NGX_OK;
}


/* a command went out: watch for its reply */

static void
ngx_rbcs_redis_sent(ngx_rbcs_redis_conn_t *conn)
{
    if (conn->pending++ == 0) {
        conn->progress = ngx_current_msec;
    }

    /*
     * Armed once, not per command; when it fires early, it is armed
     * again for what is left (ngx_rbcs_redis_timer_handler()).
     */

    if (!conn->timer.timer_set) {
        ngx_add_timer(&conn->timer, conn->redis->conf->command_timeout);
    }
}


static void
ngx_rbcs_redis_replied(ngx_rbcs_redis_conn_t *conn)
{
    if (conn->pending) {
        conn->pending--;
    }

    conn->progress = ngx_current_msec;
}


/*
 * A command's callback: NGX_OK with a reply, which is counted; NGX_ERROR
 * without one, the context being gone (reported lost if still ours).
 */

static ngx_int_t
ngx_rbcs_redis_reply(ngx_rbcs_redis_conn_t *conn, redisAsyncContext *ac,
    void *reply)
{
    if (reply == NULL) {
        if (conn->ac == ac) {
            ngx_rbcs_redis_lost(conn, ngx_rbcs_redis_errstr(ac));
        }

        return NGX_ERROR;
    }

    ngx_rbcs_redis_replied(conn);

    return NGX_OK;
}


/*
 * SUBSCRIBE is also the heartbeat: with hiredis 0.14 a PING on a
 * subscribed context never reaches its callback, and its callback record
 * stays queued until the context is freed (one leak per heartbeat).
 * Subscribing again to the same channel is a no-op for Redis, and its
 * confirmation comes back in order through the channel's callback.
 */

static ngx_int_t
ngx_rbcs_redis_subscribe(ngx_rbcs_redis_conn_t *conn)
{
    ngx_str_t  *channel;

    channel = &conn->redis->channel;

    return ngx_rbcs_redis_command(conn, ngx_rbcs_redis_sub_cb, conn,
                                  "SUBSCRIBE %b", channel->data,
                                  channel->len);
}


/* AUTH [user] password: the secret goes to hiredis's buffer only */

static ngx_int_t
ngx_rbcs_redis_auth(ngx_rbcs_redis_conn_t *conn)
{
    ngx_rbcs_redis_conf_t  *conf;

    conf = conn->redis->conf;

    if (conf->user.len) {
        return ngx_rbcs_redis_command(conn, ngx_rbcs_redis_auth_cb, conn,
                                      "AUTH %b %b", conf->user.data,
                                      conf->user.len, conf->password.data,
                                      conf->password.len);
    }

    return ngx_rbcs_redis_command(conn, ngx_rbcs_redis_auth_cb, conn,
                                  "AUTH %b", conf->password.data,
                                  conf->password.len);
}


static void
ngx_rbcs_redis_auth_cb(redisAsyncContext *ac, void *r, void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    u_char       reason[160];
    redisReply  *reply;

    reply = r;

    if (ngx_rbcs_redis_reply(conn, ac, r) != NGX_OK || conn->ac != ac
        || reply->type != REDIS_REPLY_ERROR)
    {
        return;
    }

    /* "WRONGPASS invalid username-password pair ...": no secret in it */

    ngx_snprintf(reason, sizeof(reason), "AUTH refused: %*s%Z",
                 ngx_min(reply->len, 120), reply->str);

    ngx_rbcs_redis_drop(conn, (char *) reason);
}


/* the command connection's handshake: learn the server's run_id */

static void
ngx_rbcs_redis_info_cb(redisAsyncContext *ac, void *r, void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    ngx_uint_t   restarted;
    redisReply  *reply;

    reply = r;

    if (ngx_rbcs_redis_reply(conn, ac, r) != NGX_OK || conn->ac != ac
        || conn->state != NGX_RBCS_RS_HANDSHAKE)
    {
        return;
    }

    if (ngx_rbcs_redis_run_id(conn->redis, reply, &restarted) != NGX_OK) {
        ngx_rbcs_redis_drop(conn, reply->type == REDIS_REPLY_ERROR
                                ? reply->str : "no run_id in INFO reply");
        return;
    }

    ngx_rbcs_redis_ready(conn, restarted);
}


static ngx_int_t
ngx_rbcs_redis_run_id(ngx_rbcs_redis_t *redis, redisReply *reply,
    ngx_uint_t *restarted)
{
    u_char  *p, *start, *last;

    if (reply->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    start = (u_char *) reply->str;
    last = start + reply->len;

    for (p = start; /* void */ ; p += sizeof("run_id:") - 1) {
        p = ngx_strnstr(p, "run_id:", last - p);

        if (p == NULL) {
            return NGX_ERROR;
        }

        if (p == start || p[-1] == '\n') {
            break;
        }
    }

    p += sizeof("run_id:") - 1;

    for (start = p; p < last && *p != '\r' && *p != '\n'; p++) {
        /* void */
    }

    if (p == start || p - start > NGX_RBCS_REDIS_RUN_ID_LEN) {
        return NGX_ERROR;
    }

    *restarted = redis->run_id_len != 0
                 && ((size_t) (p - start) != redis->run_id_len
                     || ngx_memcmp(start, redis->run_id, redis->run_id_len)
                        != 0);

    redis->run_id_len = p - start;
    ngx_memcpy(redis->run_id, start, redis->run_id_len);

    return NGX_OK;
}


ngx_int_t
ngx_rbcs_redis_put(ngx_rbcs_redis_balance_t *b, ngx_uint_t n,
    uint64_t generation, ngx_uint_t commit)
{
    u_char            *cmd, *p;
    size_t             size;
    ngx_rbcs_redis_t  *redis;

    redis = ngx_rbcs_redis;

    if (redis == NULL || redis->cmd.state != NGX_RBCS_RS_READY || n == 0) {
        return NGX_DECLINED;
    }

    /*
     * EVAL script numkeys key... ttl run_id channel generation first-line
     * and six arguments a balance, in the protocol's form (as hiredis
     * would make it of an argument vector): "$<len>\r\n<text>\r\n" each
     */

    size = sizeof("*\r\n") + NGX_INT_T_LEN
           + (8 + 7 * n) * (sizeof("$\r\n\r\n") + NGX_SIZE_T_LEN)
           + sizeof("EVAL") + sizeof(ngx_rbcs_redis_script) + NGX_INT_T_LEN
           + redis->ttl_len + redis->run_id_len + redis->channel.len
           + NGX_INT64_LEN + NGX_RBCS_REDIS_LINE_LEN
           + n * (redis->key.len + NGX_RBCS_ID_MAX_LEN + NGX_INT64_LEN
                  + 2 * NGX_RBCS_REDIS_TEXT_MAX + NGX_INT_T_LEN
                  + NGX_RBCS_REDIS_TAG_LEN + NGX_RBCS_REDIS_LINE_LEN);

    cmd = ngx_alloc(size, redis->log);
    if (cmd == NULL) {
        return NGX_DECLINED;
    }

    p = ngx_rbcs_redis_put_args(redis, cmd, b, n, generation);

    /* hiredis copies the command into its output buffer */

    if (p == NULL
        || redisAsyncFormattedCommand(redis->cmd.ac, ngx_rbcs_redis_put_cb,
                                      commit ? (void *) redis : NULL,
                                      (char *) cmd, p - cmd)
           != REDIS_OK)
    {
        ngx_free(cmd);
        return NGX_DECLINED;
    }

    ngx_free(cmd);

    redis->seq++;

    ngx_rbcs_redis_sent(&redis->cmd);

    return NGX_OK;
}


/*
 * The put's command, at p.  NULL: a balance is not fit to store (logged),
 * or could not be tagged.
 */

static u_char *
ngx_rbcs_redis_put_args(ngx_rbcs_redis_t *redis, u_char *p,
    ngx_rbcs_redis_balance_t *b, ngx_uint_t n, uint64_t generation)
{
    u_char      *q, line[NGX_RBCS_REDIS_LINE_LEN];
    ngx_uint_t   i;

    p = ngx_sprintf(p, "*%ui\r\n", 8 + 7 * n);
    p = ngx_rbcs_redis_bulk(p, "EVAL", sizeof("EVAL") - 1);
    p = ngx_rbcs_redis_bulk(p, ngx_rbcs_redis_script,
                            sizeof(ngx_rbcs_redis_script) - 1);
    p = ngx_rbcs_redis_number(p, n);

    for (i = 0; i < n; i++) {
        if (!ngx_rbcs_valid_id(b[i].account.data, b[i].account.len)
            || ngx_rbcs_redis_text_valid(b[i].currency.data,
                                         b[i].currency.len, 0)
               != NGX_OK
            || ngx_rbcs_redis_text_valid(b[i].balance.data,
                                         b[i].balance.len, 1)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, redis->log, 0,
                          "rbcs: malformed balance of \"%V\" not sent to "
                          "redis", &b[i].account);
            return NULL;
        }

        p = ngx_sprintf(p, "$%uz\r\n%V%V\r\n",
                        redis->key.len + b[i].account.len, &redis->key,
                        &b[i].account);
    }

    p = ngx_rbcs_redis_bulk(p, redis->ttl, redis->ttl_len);
    p = ngx_rbcs_redis_bulk(p, redis->run_id, redis->run_id_len);
    p = ngx_rbcs_redis_bulk(p, redis->channel.data, redis->channel.len);
    p = ngx_rbcs_redis_number(p, generation);

    /* the message's first line, "#<publisher> <seq> <generation> <ms> <tag>" */

    q = ngx_sprintf(line, "#%*s %uL %uL %uL", redis->publisher_len,
                    redis->publisher, redis->seq + 1, generation,
                    ngx_rbcs_redis_now());
    *q++ = ' ';

    if (ngx_rbcs_redis_tag(redis, line, q - 1 - line, q) != NGX_OK) {
        return NULL;
    }

    p = ngx_rbcs_redis_bulk(p, line, q + NGX_RBCS_REDIS_TAG_LEN - line);

    /*
     * each balance's version, balance, currency, scale, tag and message
     * line, "<account> <version> <scale> <currency> <balance> <tag>"
     */

    for (i = 0; i < n; i++) {
        q = ngx_sprintf(line, "%V %uL %ui %V %V ", &b[i].account,
                        b[i].version, b[i].scale, &b[i].currency,
                        &b[i].balance);

        if (ngx_rbcs_redis_balance_tag(redis, &b[i], generation, q)
            != NGX_OK)
        {
            return NULL;
        }

        p = ngx_rbcs_redis_number(p, b[i].version);
        p = ngx_rbcs_redis_bulk(p, b[i].balance.data, b[i].balance.len);
        p = ngx_rbcs_redis_bulk(p, b[i].currency.data, b[i].currency.len);
        p = ngx_rbcs_redis_number(p, b[i].scale);
        p = ngx_rbcs_redis_bulk(p, q, NGX_RBCS_REDIS_TAG_LEN);
        p = ngx_rbcs_redis_bulk(p, line, q + NGX_RBCS_REDIS_TAG_LEN - line);
    }

    return p;
}


/* an argument of a command in the protocol's form */

static u_char *
ngx_rbcs_redis_bulk(u_char *p, const void *s, size_t len)
{
    return ngx_sprintf(p, "$%uz\r\n%*s\r\n", len, len, s);
}


static u_char *
ngx_rbcs_redis_number(u_char *p, uint64_t n)
{
    u_char  text[NGX_INT64_LEN];

    return ngx_rbcs_redis_bulk(p, text, ngx_sprintf(text, "%uL", n) - text);
}


/* the wall clock in milliseconds, as messages carry it */

static uint64_t
ngx_rbcs_redis_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* whether a put now would be sent at once */

ngx_uint_t
ngx_rbcs_redis_writable(void)
{
    return ngx_rbcs_redis != NULL
           && ngx_rbcs_redis->cmd.state == NGX_RBCS_RS_READY;
}


void
ngx_rbcs_redis_on_lost(ngx_rbcs_redis_lost_pt handler)
{
    ngx_rbcs_redis_lost_handler = handler;
}


static void
ngx_rbcs_redis_put_cb(redisAsyncContext *ac, void *r, void *data)
{
    ngx_rbcs_redis_conn_t  *conn;

    conn = ac->data;

    /* not written, or not known to be: the other pods must be told */

    if (data != NULL
        && (r == NULL || ((redisReply *) r)->type == REDIS_REPLY_ERROR))
    {
        if (ngx_rbcs_redis_lost_handler) {
            ngx_rbcs_redis_lost_handler();
        }
    }

    if (ngx_rbcs_redis_reply(conn, ac, r) != NGX_OK) {
        return;
    }

    if (data != NULL && ((redisReply *) r)->type != REDIS_REPLY_ERROR) {
        ngx_rbcs_metrics_inc(NGX_RBCS_M_PUBLISHES);
    }

    ngx_rbcs_redis_command_done(conn->redis, r);
}


ngx_rbcs_redis_get_t *
ngx_rbcs_redis_get(ngx_str_t *account, ngx_msec_t timeout,
    ngx_rbcs_redis_get_pt handler, void *data, ngx_log_t *log)
{
    ngx_rbcs_redis_t      *redis;
    ngx_rbcs_redis_get_t  *g;

    redis = ngx_rbcs_redis;

    if (redis == NULL || redis->cmd.state != NGX_RBCS_RS_READY
        || !ngx_rbcs_valid_id(account->data, account->len))
    {
        return NULL;
    }

    g = ngx_alloc(sizeof(ngx_rbcs_redis_get_t), log);
    if (g == NULL) {
        return NULL;
    }

    ngx_memzero(&g->timer, sizeof(ngx_event_t));

    g->handler = handler;
    g->data = data;
    g->timer.handler = ngx_rbcs_redis_get_timer;
    g->timer.data = g;
    g->timer.log = log;
    g->account_len = account->len;
    ngx_memcpy(g->account, account->data, account->len);

    /* g now belongs to hiredis until its callback, reply or not */

    if (ngx_rbcs_redis_command(&redis->cmd, ngx_rbcs_redis_get_cb, g,
                               "HMGET %b%b v b c s r g t", redis->key.data,
                               redis->key.len, account->data, account->len)
        != NGX_OK)
    {
        ngx_free(g);
        return NULL;
    }

    ngx_add_timer(&g->timer, timeout);

    return g;
}


void
ngx_rbcs_redis_get_cancel(ngx_rbcs_redis_get_t *g)
{
    if (g == NULL) {
        return;
    }

    if (g->timer.timer_set) {
        ngx_del_timer(&g->timer);
    }

    /* the block itself is freed when hiredis is done with it */

    g->handler = NULL;
}


static void
ngx_rbcs_redis_get_cb(redisAsyncContext *ac, void *r, void *data)
{
    ngx_rbcs_redis_get_t *g = data;

    ngx_int_t                 rc;
    ngx_rbcs_redis_t         *redis;
    ngx_rbcs_redis_conn_t    *conn;
    ngx_rbcs_redis_balance_t  b;

    conn = ac->data;
    redis = conn->redis;

    if (g->timer.timer_set) {
        ngx_del_timer(&g->timer);
    }

    /* a connection gone is reported before any handler can call in */

    rc = ngx_rbcs_redis_reply(conn, ac, r) == NGX_OK
         ? ngx_rbcs_redis_get_reply(redis, r, g, &b) : NGX_ERROR;

    if (g->handler && !redis->exiting) {
        g->handler(g->data, rc, rc == NGX_OK ? &b : NULL);
    }

    ngx_free(g);
}


static void
ngx_rbcs_redis_get_timer(ngx_event_t *ev)
{
    ngx_rbcs_redis_get_t *g = ev->data;

    ngx_rbcs_redis_get_pt  handler;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                   "rbcs: redis read timed out");

    /* a late reply will find no handler */

    handler = g->handler;
    g->handler = NULL;

    if (handler) {
        handler(g->data, NGX_ERROR, NULL);
    }
}


/*
 * HMGET v b c s r g t: trusted only when stored by the Redis we talk to
 * now, and with the tag of a pod
 */

static ngx_int_t
ngx_rbcs_redis_get_reply(ngx_rbcs_redis_t *redis, redisReply *reply,
    ngx_rbcs_redis_get_t *g, ngx_rbcs_redis_balance_t *b)
{
    ngx_str_t    f[7];
    ngx_uint_t   i;

    ngx_rbcs_redis_command_done(redis, reply);

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 7) {
        return NGX_ERROR;
    }

    for (i = 0; i < 7; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            return NGX_DECLINED;
        }

        f[i].data = (u_char *) reply->element[i]->str;
        f[i].len = reply->element[i]->len;
    }

    b->account.data = g->account;
    b->account.len = g->account_len;

    if (f[4].len != redis->run_id_len
        || ngx_memcmp(f[4].data, redis->run_id, redis->run_id_len) != 0
        || ngx_rbcs_redis_fields(b, &f[0], &f[3], &f[2], &f[1]) != NGX_OK
        || ngx_rbcs_redis_parse_uint64(f[5].data, f[5].len, &b->generation)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (ngx_rbcs_redis_tag_valid(redis, b, b->generation, f[6].data,
                                 f[6].len)
        != NGX_OK)
    {
        ngx_rbcs_redis_forged(redis, "value of", &b->account);
        ngx_rbcs_redis_unlink(redis, &b->account);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the channel's callback: subscribe confirmations and messages */

static void
ngx_rbcs_redis_sub_cb(redisAsyncContext *ac, void *r, void *data)
{
    ngx_rbcs_redis_conn_t *conn = data;

    redisReply        *reply, *kind;
    ngx_rbcs_redis_t  *redis;

    reply = r;
    redis = conn->redis;

    if (reply == NULL) {
        if (conn->ac == ac) {
            ngx_rbcs_redis_lost(conn, ngx_rbcs_redis_errstr(ac));
        }

        return;
    }

    if (conn->ac != ac || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = reply->element[0];

    if (kind->len == sizeof("message") - 1
        && ngx_strncmp(kind->str, "message", kind->len) == 0)
    {
        conn->progress = ngx_current_msec;

        if (reply->element[2]->type == REDIS_REPLY_STRING) {
            ngx_rbcs_redis_message(redis, reply->element[2]);
        }

        ngx_rbcs_redis_alive(redis, 0);
        return;
    }

    if (kind->len != sizeof("subscribe") - 1
        || ngx_strncmp(kind->str, "subscribe", kind->len) != 0)
    {
        return;
    }

    ngx_rbcs_redis_replied(conn);

    if (conn->state == NGX_RBCS_RS_HANDSHAKE) {
        ngx_rbcs_redis_ready(conn, 0);
        ngx_add_timer(&conn->timer, redis->conf->heartbeat);

        conn->up = 1;
        redis->alive = ngx_current_msec;

        if (redis->on_sub) {
            redis->on_sub(NGX_RBCS_REDIS_SUB_UP);
        }

        return;
    }

    /* a heartbeat came back */

    if (conn->pending == 0) {
        ngx_rbcs_redis_timer(conn, redis->conf->heartbeat);
    }

    ngx_rbcs_redis_alive(redis, 1);
}


static void
ngx_rbcs_redis_message(ngx_rbcs_redis_t *redis, redisReply *msg)
{
    u_char                    *p, *last, *nl;
    uint64_t                   generation;
    ngx_int_t                  rc;
    ngx_str_t                  tag;
    ngx_rbcs_redis_balance_t   b;

    /* its writer, number, generation, time and tag, then a line each */

    p = (u_char *) msg->str;
    last = p + msg->len;

    nl = ngx_strlchr(p, last, '\n');

    rc = ngx_rbcs_redis_header(redis, p, (nl ? nl : last) - p, &generation);

    if (rc == NGX_ERROR) {
        goto garbled;
    }

    if (rc == NGX_DECLINED || nl == NULL) {
        return;
    }

    for ( ;; ) {
        p = nl + 1;
        nl = ngx_strlchr(p, last, '\n');

        if (ngx_rbcs_redis_parse_message(p, (nl ? nl : last) - p, &b, &tag)
            != NGX_OK)
        {
            goto garbled;
        }

        if (ngx_rbcs_redis_tag_valid(redis, &b, generation, tag.data,
                                     tag.len)
            != NGX_OK)
        {
            ngx_rbcs_redis_forged(redis, "message on channel",
                                  &redis->channel);
            goto gap;
        }

        redis->garbled = 0;
        b.generation = generation;

        if (redis->on_message) {
            redis->on_message(&b);
        }

        if (nl == NULL) {
            return;
        }
    }

garbled:

    if (!redis->garbled) {
        ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                      "rbcs: unexpected message on redis channel "
                      "\"%V\": \"%*s\"", &redis->channel,
                      ngx_min(msg->len, 128), msg->str);
        redis->garbled = 1;
    }

gap:

    /* what it carried is lost: as good as a missing message */

    if (redis->on_sub) {
        redis->on_sub(NGX_RBCS_REDIS_SUB_GAP);
    }
}


/*
 * A forged value goes, so that the next put stores the real one: its
 * version may be a huge one that no real value would replace.
 */

static void
ngx_rbcs_redis_unlink(ngx_rbcs_redis_t *redis, ngx_str_t *account)
{
    if (redis->cmd.state == NGX_RBCS_RS_READY) {
        (void) ngx_rbcs_redis_command(&redis->cmd, ngx_rbcs_redis_put_cb, NULL,
                                      "UNLINK %b%b", redis->key.data,
                                      redis->key.len, account->data,
                                      account->len);
    }
}


/*
 * Whoever can reach Redis may try to pass a value for a pod's: say so in
 * the log, at most every 10 seconds per worker.
 */

static void
ngx_rbcs_redis_forged(ngx_rbcs_redis_t *redis, const char *what,
    ngx_str_t *name)
{
    if (redis->forged && ngx_current_msec - redis->forged < 10000) {
        return;
    }

    redis->forged = ngx_current_msec ? ngx_current_msec : 1;

    ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                  "rbcs: redis %s \"%V\" fails its authentication tag: "
                  "not used", what, name);
}


static ngx_int_t
ngx_rbcs_redis_mac_init(ngx_rbcs_redis_t *redis)
{
    EVP_MAC     *mac;
    OSSL_PARAM   params[2];

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        ngx_log_error(NGX_LOG_EMERG, redis->log, 0,
                      "rbcs: EVP_MAC_fetch(\"HMAC\") failed");
        return NGX_ERROR;
    }

    redis->mac = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    if (redis->mac == NULL) {
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(redis->mac, redis->conf->hmac_key.data,
                     redis->conf->hmac_key.len, params)
        != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, redis->log, 0,
                      "rbcs: EVP_MAC_init() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * hex of the first 16 bytes of HMAC-SHA256(key, "<prefix>\n<text>"); hex
 * may overlap text, which is all read before hex is written
 */

static ngx_int_t
ngx_rbcs_redis_tag(ngx_rbcs_redis_t *redis, u_char *text, size_t len,
    u_char *hex)
{
    u_char      mac[EVP_MAX_MD_SIZE];
    size_t      n;
    ngx_str_t  *prefix;

    prefix = &redis->conf->prefix;

    /* a NULL key starts again with the key already set */

    if (redis->mac == NULL
        || EVP_MAC_init(redis->mac, NULL, 0, NULL) != 1
        || EVP_MAC_update(redis->mac, prefix->data, prefix->len) != 1
        || EVP_MAC_update(redis->mac, (u_char *) "\n", 1) != 1
        || EVP_MAC_update(redis->mac, text, len) != 1
        || EVP_MAC_final(redis->mac, mac, &n, sizeof(mac)) != 1
        || n < NGX_RBCS_REDIS_TAG_LEN / 2)
    {
        ngx_log_error(NGX_LOG_ALERT, redis->log, 0,
                      "rbcs: HMAC of a redis value failed");
        return NGX_ERROR;
    }

    (void) ngx_hex_dump(hex, mac, NGX_RBCS_REDIS_TAG_LEN / 2);

    return NGX_OK;
}


/* a balance's tag: "<account> <version> <scale> <currency> <state> <gen>" */

static ngx_int_t
ngx_rbcs_redis_balance_tag(ngx_rbcs_redis_t *redis,
    ngx_rbcs_redis_balance_t *b, uint64_t generation, u_char *hex)
{
    u_char  *p;
    u_char   text[NGX_RBCS_ID_MAX_LEN + 2 * NGX_RBCS_REDIS_TEXT_MAX
                  + 2 * NGX_INT64_LEN + NGX_INT_T_LEN + 8];

    if (b->account.len > NGX_RBCS_ID_MAX_LEN
        || b->balance.len > NGX_RBCS_REDIS_TEXT_MAX
        || b->currency.len > NGX_RBCS_REDIS_TEXT_MAX)
    {
        return NGX_ERROR;
    }

    p = ngx_sprintf(text, "%V %uL %ui %V %V %uL", &b->account, b->version,
                    b->scale, &b->currency, &b->balance, generation);

    return ngx_rbcs_redis_tag(redis, text, p - text, hex);
}


static ngx_int_t
ngx_rbcs_redis_tag_valid(ngx_rbcs_redis_t *redis,
    ngx_rbcs_redis_balance_t *b, uint64_t generation, u_char *tag,
    size_t len)
{
    u_char  hex[NGX_RBCS_REDIS_TAG_LEN];

    if (len != NGX_RBCS_REDIS_TAG_LEN
        || ngx_rbcs_redis_balance_tag(redis, b, generation, hex) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return CRYPTO_memcmp(hex, tag, NGX_RBCS_REDIS_TAG_LEN) == 0
           ? NGX_OK : NGX_ERROR;
}


/* this worker's name on the channel: "<host>/<worker>/<pid>" */

static void
ngx_rbcs_redis_publisher_id(ngx_rbcs_redis_t *redis, ngx_cycle_t *cycle)
{
    u_char  *p;

    p = ngx_rbcs_redis_host_key(cycle, redis->publisher,
                                NGX_RBCS_REDIS_PUBLISHER_LEN - 48);
    p = ngx_sprintf(p, "/%ui/%P", ngx_worker, ngx_pid);
    redis->publisher_len = p - redis->publisher;
}


/* the host name as a key, at most max bytes: letters, digits, '.', '-', '_' */

u_char *
ngx_rbcs_redis_host_key(ngx_cycle_t *cycle, u_char *p, size_t max)
{
    u_char  ch;
    size_t  i, len;

    len = ngx_min(cycle->hostname.len, max);

    for (i = 0; i < len; i++) {
        ch = cycle->hostname.data[i];
        *p++ = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-')
               ? ch : '_';
    }

    return p;
}


/*
 * "#<publisher> <seq> <generation> <ms> <tag>": the generation its writer
 * had read, its wall clock time, the tag over all before it.  A number
 * other than the next one from a publisher already heard means a message
 * of it went missing (a first message from a publisher only starts its
 * count: what it sent before, the subscription did not carry).
 *
 * NGX_ERROR: garbled or forged; NGX_DECLINED: authentic but not news (a
 * number already heard, or a time more than a minute away from ours), its
 * lines are not used; NGX_OK.
 */

static ngx_int_t
ngx_rbcs_redis_header(ngx_rbcs_redis_t *redis, u_char *p, size_t len,
    uint64_t *generation)
{
    u_char      *last, hex[NGX_RBCS_REDIS_TAG_LEN];
    uint64_t     seq, ms, now;
    ngx_str_t    f[5];

    last = p + len;

    /* "#" left out of the first field */

    if (len < 2 || *p != '#'
        || ngx_rbcs_redis_split(p + 1, last, f, 5) != NGX_OK
        || ngx_strlchr(f[4].data, last, ' ') != NULL
        || f[0].len == 0 || f[0].len > NGX_RBCS_REDIS_PUBLISHER_LEN
        || f[4].len != NGX_RBCS_REDIS_TAG_LEN
        || ngx_rbcs_redis_parse_uint64(f[1].data, f[1].len, &seq) != NGX_OK
        || ngx_rbcs_redis_parse_uint64(f[2].data, f[2].len, generation)
           != NGX_OK
        || ngx_rbcs_redis_parse_uint64(f[3].data, f[3].len, &ms) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_rbcs_redis_tag(redis, p, f[4].data - 1 - p, hex) != NGX_OK
        || CRYPTO_memcmp(hex, f[4].data, NGX_RBCS_REDIS_TAG_LEN) != 0)
    {
        ngx_rbcs_redis_forged(redis, "message on channel", &redis->channel);
        return NGX_ERROR;
    }

    now = ngx_rbcs_redis_now();

    if (ms + NGX_RBCS_REDIS_MSG_WINDOW < now
        || ms > now + NGX_RBCS_REDIS_MSG_WINDOW)
    {
        ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                      "rbcs: message %uL of \"%V\" on redis channel "
                      "\"%V\" is %s by more than %d ms: not used", seq,
                      &f[0], &redis->channel, ms < now ? "late" : "early",
                      NGX_RBCS_REDIS_MSG_WINDOW);
        return NGX_DECLINED;
    }

    if (redis->publishers == NULL) {
        return NGX_OK;
    }

    return ngx_rbcs_redis_heard(redis, f[0].data, f[0].len, seq);
}


/*
 * counts message seq of the publisher p as heard, and reports a gap before
 * it; NGX_DECLINED: that number was heard already; NGX_OK: it is news
 */

static ngx_int_t
ngx_rbcs_redis_heard(ngx_rbcs_redis_t *redis, u_char *p, size_t id_len,
    uint64_t seq)
{
    ngx_uint_t                   i;
    ngx_rbcs_redis_publisher_t  *pub, *free, *oldest;

    free = NULL;
    oldest = NULL;

    for (i = 0; i < NGX_RBCS_REDIS_PUBLISHERS; i++) {
        pub = &redis->publishers[i];

        if (pub->len == 0) {
            if (free == NULL) {
                free = pub;
            }

            continue;
        }

        if (pub->len == id_len && ngx_memcmp(pub->id, p, id_len) == 0) {

            if (seq <= pub->seq) {
                ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                              "rbcs: message %uL of \"%*s\" on redis "
                              "channel \"%V\" came again after %uL: not "
                              "used", seq, id_len, p, &redis->channel,
                              pub->seq);
                return NGX_DECLINED;
            }

            if (seq != pub->seq + 1) {
                ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                              "rbcs: message %uL of \"%*s\" on redis "
                              "channel \"%V\" came after %uL: changes may "
                              "have been missed", seq, id_len, p,
                              &redis->channel, pub->seq);

                if (redis->on_sub) {
                    redis->on_sub(NGX_RBCS_REDIS_SUB_GAP);
                }
            }

            pub->seq = seq;
            pub->seen = ngx_current_msec;

            return NGX_OK;
        }

        if (oldest == NULL
            || (ngx_msec_int_t) (pub->seen - oldest->seen) < 0)
        {
            oldest = pub;
        }
    }

    pub = free ? free : oldest;

    pub->len = id_len;
    ngx_memcpy(pub->id, p, id_len);
    pub->seq = seq;
    pub->seen = ngx_current_msec;

    return NGX_OK;
}


/* "<account> <version> <scale> <currency> <balance> <tag>" */

static ngx_int_t
ngx_rbcs_redis_parse_message(u_char *p, size_t len,
    ngx_rbcs_redis_balance_t *b, ngx_str_t *tag)
{
    ngx_str_t  f[6];

    if (ngx_rbcs_redis_split(p, p + len, f, 6) != NGX_OK
        || !ngx_rbcs_valid_id(f[0].data, f[0].len)
        || ngx_rbcs_redis_fields(b, &f[1], &f[2], &f[3], &f[4]) != NGX_OK)
    {
        return NGX_ERROR;
    }

    b->account = f[0];
    *tag = f[5];

    return NGX_OK;
}


/* n fields, split at the first n - 1 spaces: the last one is the rest */

static ngx_int_t
ngx_rbcs_redis_split(u_char *p, u_char *last, ngx_str_t *f, ngx_uint_t n)
{
    u_char      *q;
    ngx_uint_t   i;

    for (i = 0; i < n - 1; i++) {
        q = ngx_strlchr(p, last, ' ');
        if (q == NULL) {
            return NGX_ERROR;
        }

        f[i].data = p;
        f[i].len = q - p;
        p = q + 1;
    }

    f[i].data = p;
    f[i].len = last - p;

    return NGX_OK;
}


/* a balance's fields, stored or in a message, as their texts allow */

static ngx_int_t
ngx_rbcs_redis_fields(ngx_rbcs_redis_balance_t *b, ngx_str_t *version,
    ngx_str_t *scale, ngx_str_t *currency, ngx_str_t *balance)
{
    ngx_int_t  n;

    n = ngx_atoi(scale->data, scale->len);

    if (n == NGX_ERROR
        || ngx_rbcs_redis_parse_uint64(version->data, version->len,
                                       &b->version)
           != NGX_OK
        || ngx_rbcs_redis_text_valid(currency->data, currency->len, 0)
           != NGX_OK
        || ngx_rbcs_redis_text_valid(balance->data, balance->len, 1)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    b->scale = n;
    b->currency = *currency;
    b->balance = *balance;

    return NGX_OK;
}


/*
 * Messages report ALIVE at most once per millisecond of nginx time: the
 * cache takes a lock for it, and a burst of messages says no more than
 * its first one.
 */

static void
ngx_rbcs_redis_alive(ngx_rbcs_redis_t *redis, ngx_uint_t force)
{
    if (!force && redis->alive == ngx_current_msec) {
        return;
    }

    redis->alive = ngx_current_msec;

    if (redis->on_sub) {
        redis->on_sub(NGX_RBCS_REDIS_SUB_ALIVE);
    }
}


/* log command errors once per change, not once per command */

static void
ngx_rbcs_redis_command_done(ngx_rbcs_redis_t *redis, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!redis->failing) {
            ngx_log_error(NGX_LOG_WARN, redis->log, 0,
                          "rbcs: redis command failed: %*s",
                          reply->len, reply->str);
            redis->failing = 1;
        }

        return;
    }

    if (redis->failing) {
        ngx_log_error(NGX_LOG_NOTICE, redis->log, 0,
                      "rbcs: redis commands succeed again");
        redis->failing = 0;
    }
}


/* a decimal text, or any printable text without spaces */

static ngx_int_t
ngx_rbcs_redis_text_valid(u_char *p, size_t len, ngx_uint_t decimal)
{
    u_char  ch, *last;

    if (len == 0 || len > NGX_RBCS_REDIS_TEXT_MAX) {
        return NGX_ERROR;
    }

    for (last = p + len; p < last; p++) {
        ch = *p;

        if (decimal) {
            /* an account state: "<balance>:<held>:<limit>:<S|E>" */
            if ((ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
                || ch == ':' || ch == 'S' || ch == 'E')
            {
                continue;
            }

        } else if (ch > ' ' && ch < 0x7f) {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_redis_parse_uint64(u_char *p, size_t len, uint64_t *value)
{
    u_char    *last;
    uint64_t   v, d;

    if (len == 0 || len > NGX_INT64_LEN) {
        return NGX_ERROR;
    }

    v = 0;

    for (last = p + len; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        d = *p - '0';

        if (v > (UINT64_MAX - d) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + d;
    }

    *value = v;

    return NGX_OK;
}
