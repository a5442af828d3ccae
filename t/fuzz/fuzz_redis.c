
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of what Redis hands the module (src/ngx_rbcs_redis.c,
 * #included: its static functions): a stored balance as the HMGET reply
 * ngx_rbcs_redis_get_reply() reads, and a channel message as
 * ngx_rbcs_redis_message() reads it (header, lines, tags, the publishers'
 * numbering); every balance either one accepts then goes through
 * ngx_rbcs_publish_state_entry() (src/ngx_rbcs_publish.c), as the cache
 * and the balance route do.
 *
 * The first byte picks: even, a HMGET reply; odd, a message.
 *
 * A reply: the rest is '\n'-separated, the account asked for then the
 * reply's elements ("!" alone: a nil; bit 1 of the first byte: an error
 * reply with the rest as its text).  An element 4 of "RUNID" is the run id
 * of the Redis the harness talks to, an element 6 of "TAG" the right tag.
 *
 * A message: the rest, with a header's time "NOW" made the current one
 * and a "TAG" (the header's or a line's last field) the right tag, with
 * the harness's key: so that parsing past the tags is reached.
 */


#include "fuzz_ngx.h"

#include "ngx_rbcs_redis.c"
#include "ngx_rbcs_cache.h"
#include "ngx_rbcs_publish.h"


#define FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

#define FUZZ_RUN_ID  "0123456789abcdef0123456789abcdef01234567"


static ngx_rbcs_redis_t        fuzz_redis;
static ngx_rbcs_redis_conf_t   fuzz_redis_conf;
static ngx_uint_t              fuzz_accepted;


static void
fuzz_balance(ngx_rbcs_redis_balance_t *b)
{
    ngx_rbcs_cache_entry_t  e;

    FUZZ_CHECK(ngx_rbcs_valid_id(b->account.data, b->account.len));
    FUZZ_CHECK(ngx_rbcs_redis_text_valid(b->balance.data, b->balance.len, 1)
               == NGX_OK);
    FUZZ_CHECK(ngx_rbcs_redis_text_valid(b->currency.data, b->currency.len,
                                         0)
               == NGX_OK);

    fuzz_accepted++;

    if (ngx_rbcs_publish_state_entry(&e, b->version, &b->balance, b->scale,
                                     &b->currency)
        == NGX_OK)
    {
        FUZZ_CHECK(e.version == b->version && e.scale == b->scale
                   && e.currency_len == b->currency.len);
        FUZZ_CHECK(e.balance <= (ngx_rbcs_int128_t) 1e36
                   && e.balance >= -(ngx_rbcs_int128_t) 1e36);
    }
}


static void
fuzz_on_sub(ngx_uint_t event)
{
    FUZZ_CHECK(event == NGX_RBCS_REDIS_SUB_GAP
               || event == NGX_RBCS_REDIS_SUB_ALIVE);
}


/* a reply element, in memory of its own as hiredis makes it */

static redisReply *
fuzz_element(ngx_pool_t *pool, int type, u_char *p, size_t len)
{
    redisReply  *e;

    e = ngx_pcalloc(pool, sizeof(redisReply));
    FUZZ_CHECK(e != NULL);

    e->type = type;

    if (type != REDIS_REPLY_NIL) {
        e->str = ngx_pnalloc(pool, len + 1);
        FUZZ_CHECK(e->str != NULL);
        ngx_memcpy(e->str, p, len);
        e->str[len] = '\0';
        e->len = len;
    }

    return e;
}


static void
fuzz_reply(ngx_pool_t *pool, u_char flags, u_char *p, u_char *last)
{
    u_char                    *eol, hex[NGX_RBCS_REDIS_TAG_LEN];
    ngx_int_t                  rc, scale;
    ngx_uint_t                 n, i;
    redisReply                 reply, **e;
    ngx_rbcs_redis_get_t       g;
    ngx_rbcs_redis_balance_t   b;

    ngx_memzero(&reply, sizeof(redisReply));
    ngx_memzero(&g, sizeof(ngx_rbcs_redis_get_t));

    if (flags & 2) {
        reply.type = REDIS_REPLY_ERROR;
        reply.str = (char *) p;
        reply.len = last - p;
        FUZZ_CHECK(ngx_rbcs_redis_get_reply(&fuzz_redis, &reply, &g, &b)
                   == NGX_ERROR);
        return;
    }

    eol = ngx_strlchr(p, last, '\n');
    if (eol == NULL) {
        eol = last;
    }

    /* the balance route asks only for a valid account number */

    if (!ngx_rbcs_valid_id(p, eol - p)) {
        return;
    }

    g.account_len = eol - p;
    ngx_memcpy(g.account, p, g.account_len);

    e = ngx_pcalloc(pool, 16 * sizeof(redisReply *));
    FUZZ_CHECK(e != NULL);

    n = 0;
    p = eol < last ? eol + 1 : NULL;

    while (p && n < 16) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        if (eol - p == 1 && *p == '!') {
            e[n] = fuzz_element(pool, REDIS_REPLY_NIL, NULL, 0);

        } else if (n == 4 && eol - p == 5 && ngx_strncmp(p, "RUNID", 5) == 0) {
            e[n] = fuzz_element(pool, REDIS_REPLY_STRING,
                                (u_char *) FUZZ_RUN_ID,
                                sizeof(FUZZ_RUN_ID) - 1);

        } else {
            e[n] = fuzz_element(pool, REDIS_REPLY_STRING, p, eol - p);
        }

        n++;
        p = eol < last ? eol + 1 : NULL;
    }

    reply.type = REDIS_REPLY_ARRAY;
    reply.elements = n;
    reply.element = e;

    /* "TAG": the tag a pod would have written for these fields */

    if (n == 7 && e[6]->type == REDIS_REPLY_STRING && e[6]->len == 3
        && ngx_strncmp(e[6]->str, "TAG", 3) == 0)
    {
        for (i = 0; i < 6; i++) {
            if (e[i]->type != REDIS_REPLY_STRING) {
                break;
            }
        }

        b.account.data = g.account;
        b.account.len = g.account_len;
        b.balance.data = (u_char *) e[1]->str;
        b.balance.len = e[1]->len;
        b.currency.data = (u_char *) e[2]->str;
        b.currency.len = e[2]->len;

        if (i == 6
            && ngx_rbcs_redis_parse_uint64((u_char *) e[0]->str, e[0]->len,
                                           &b.version)
               == NGX_OK
            && (scale = ngx_atoi((u_char *) e[3]->str, e[3]->len))
               != NGX_ERROR
            && ngx_rbcs_redis_parse_uint64((u_char *) e[5]->str, e[5]->len,
                                           &b.generation)
               == NGX_OK)
        {
            b.scale = scale;

            if (ngx_rbcs_redis_balance_tag(&fuzz_redis, &b, b.generation,
                                           hex)
                == NGX_OK)
            {
                e[6] = fuzz_element(pool, REDIS_REPLY_STRING, hex,
                                    NGX_RBCS_REDIS_TAG_LEN);
            }
        }
    }

    ngx_memzero(&b, sizeof(ngx_rbcs_redis_balance_t));

    rc = ngx_rbcs_redis_get_reply(&fuzz_redis, &reply, &g, &b);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED || rc == NGX_ERROR);

    if (rc == NGX_OK) {
        FUZZ_CHECK(b.account.data == g.account
                   && b.account.len == g.account_len);
        fuzz_balance(&b);
    }
}


/* the message with its "NOW" and "TAG" made right */

static void
fuzz_message(ngx_pool_t *pool, u_char *p, u_char *last)
{
    u_char                    *buf, *o, *eol, *q, *f[5], *line;
    u_char                     hex[NGX_RBCS_REDIS_TAG_LEN];
    size_t                     nlines;
    uint64_t                   generation, ms;
    ngx_str_t                  tag;
    ngx_uint_t                 n, header;
    ngx_time_t                *tp;
    redisReply                 msg;
    ngx_rbcs_redis_balance_t   b;

    nlines = 1;
    for (q = p; q < last; q++) {
        nlines += (*q == '\n');
    }

    buf = ngx_pnalloc(pool, (last - p) + nlines * 64);
    FUZZ_CHECK(buf != NULL);

    o = buf;
    header = 1;
    generation = 0;

    for ( ;; ) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        line = o;

        /* the line's fields, split at spaces */

        f[0] = p;
        n = 1;

        for (q = p; q < eol && n < 5; q++) {
            if (*q == ' ') {
                f[n++] = q + 1;
            }
        }

        if (header && n == 5 && f[3] + 4 == f[4]
            && ngx_strncmp(f[3], "NOW ", 4) == 0)
        {
            o = ngx_cpymem(o, p, f[3] - p);
            tp = ngx_timeofday();
            ms = (uint64_t) tp->sec * 1000 + tp->msec;
            o = ngx_sprintf(o, "%uL ", ms);
            p = f[4];

        }

        o = ngx_cpymem(o, p, eol - p);

        /* a last field "TAG" */

        if (o - line >= 4 && ngx_strncmp(o - 4, " TAG", 4) == 0) {

            if (header) {
                if (ngx_rbcs_redis_tag(&fuzz_redis, line, o - 4 - line, hex)
                    == NGX_OK)
                {
                    o = ngx_cpymem(o - 3, hex, NGX_RBCS_REDIS_TAG_LEN);
                }

            } else if (ngx_rbcs_redis_parse_message(line, o - line, &b, &tag)
                       == NGX_OK
                       && ngx_rbcs_redis_balance_tag(&fuzz_redis, &b,
                                                     generation, hex)
                          == NGX_OK)
            {
                o = ngx_cpymem(o - 3, hex, NGX_RBCS_REDIS_TAG_LEN);
            }
        }

        if (header) {
            /* the generation the lines are tagged with */
            f[0] = line;
            n = 0;
            for (q = line; q < o && n < 4; q++) {
                if (*q == ' ') {
                    f[++n] = q + 1;
                }
            }
            if (n >= 3) {
                q = ngx_strlchr(f[2], o, ' ');
                if (q) {
                    (void) ngx_rbcs_redis_parse_uint64(f[2], q - f[2],
                                                       &generation);
                }
            }
        }

        header = 0;

        if (eol == last) {
            break;
        }

        *o++ = '\n';
        p = eol + 1;
    }

    /* as hiredis hands it: its own memory, NUL-terminated */

    ngx_memzero(&msg, sizeof(redisReply));
    msg.type = REDIS_REPLY_STRING;
    msg.len = o - buf;
    msg.str = ngx_pnalloc(pool, msg.len + 1);
    FUZZ_CHECK(msg.str != NULL);
    ngx_memcpy(msg.str, buf, msg.len);
    msg.str[msg.len] = '\0';

    ngx_rbcs_redis_message(&fuzz_redis, &msg);
}


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const u_char *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();

    ngx_str_set(&fuzz_redis_conf.prefix, "fz:");
    ngx_str_set(&fuzz_redis_conf.hmac_key, "0123456789abcdef0123456789abcdef");

    fuzz_redis.conf = &fuzz_redis_conf;
    fuzz_redis.log = &fuzz_log;
    ngx_str_set(&fuzz_redis.channel, "fz:balances");
    ngx_memcpy(fuzz_redis.run_id, FUZZ_RUN_ID, sizeof(FUZZ_RUN_ID) - 1);
    fuzz_redis.run_id_len = sizeof(FUZZ_RUN_ID) - 1;
    fuzz_redis.on_message = fuzz_balance;
    fuzz_redis.on_sub = fuzz_on_sub;

    fuzz_redis.publishers = ngx_pcalloc(fuzz_cycle.pool,
                                        NGX_RBCS_REDIS_PUBLISHERS
                                        * sizeof(ngx_rbcs_redis_publisher_t));
    FUZZ_CHECK(fuzz_redis.publishers != NULL);

    FUZZ_CHECK(ngx_rbcs_redis_mac_init(&fuzz_redis) == NGX_OK);

    return 0;
}


int
LLVMFuzzerTestOneInput(const u_char *data, size_t size)
{
    u_char      *copy;
    ngx_pool_t  *pool;

    if (size < 1) {
        return 0;
    }

    /* each input from the same state: no publisher heard yet */

    ngx_memzero(fuzz_redis.publishers, NGX_RBCS_REDIS_PUBLISHERS
                                       * sizeof(ngx_rbcs_redis_publisher_t));
    fuzz_redis.garbled = 0;
    fuzz_redis.failing = 0;
    fuzz_redis.forged = 0;

    pool = ngx_create_pool(1024, &fuzz_log);
    FUZZ_CHECK(pool != NULL);

    copy = ngx_pnalloc(pool, size - 1);
    FUZZ_CHECK(copy != NULL || size == 1);
    ngx_memcpy(copy, data + 1, size - 1);

    fuzz_accepted = 0;

    if (data[0] & 1) {
        fuzz_message(pool, copy, copy + size - 1);

    } else {
        fuzz_reply(pool, data[0], copy, copy + size - 1);
    }

    ngx_destroy_pool(pool);

    return 0;
}
