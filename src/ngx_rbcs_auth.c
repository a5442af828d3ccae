
/*
 * RBCS: API keys and HMAC-SHA256 request signing.
 *
 * A request carries three headers: X-RBCS-Key-Id, X-RBCS-Timestamp (Unix
 * seconds) and X-RBCS-Signature, the lower-case hex HMAC-SHA256, keyed
 * with the key's secret, of
 *
 *     METHOD "\n" PATH "\n" QUERY "\n" TIMESTAMP "\n" hex(SHA-256(BODY))
 *
 * PATH and QUERY as sent on the wire (not decoded), QUERY empty when there
 * is none.  The keys are read from a file when the configuration is read,
 * so a reload picks up a changed file and a worker never touches it.
 */


#include "ngx_rbcs_auth.h"
#include "ngx_rbcs_http.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>


#define NGX_RBCS_AUTH_FILE_MAX     (1024 * 1024)
#define NGX_RBCS_AUTH_HEX_LEN      (2 * SHA256_DIGEST_LENGTH)


static u_char *ngx_rbcs_auth_read(ngx_conf_t *cf, ngx_str_t *name,
    size_t *size);
static char *ngx_rbcs_auth_line(ngx_conf_t *cf, ngx_str_t *name,
    ngx_uint_t line, ngx_str_t *field, ngx_rbcs_auth_key_t *key);
static ngx_uint_t ngx_rbcs_auth_fields(u_char *p, u_char *last,
    ngx_str_t *field);
static ngx_int_t ngx_rbcs_auth_cmp(const void *one, const void *two);
static ngx_rbcs_auth_key_t *ngx_rbcs_auth_find(ngx_array_t *keys,
    ngx_str_t *id);
static ngx_int_t ngx_rbcs_auth_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_rbcs_auth_limit_take(ngx_http_request_t *r,
    ngx_rbcs_main_conf_t *rmcf, ngx_str_t *id);
static ngx_int_t ngx_rbcs_auth_headers(ngx_http_request_t *r,
    ngx_str_t *value);
static ngx_int_t ngx_rbcs_auth_mac(ngx_http_request_t *r, ngx_str_t *secret,
    ngx_str_t *ts, u_char *body_hash, u_char *hex);
static ngx_int_t ngx_rbcs_auth_verify(ngx_http_request_t *r,
    ngx_uint_t scope, u_char *body_hash);


static ngx_str_t  ngx_rbcs_auth_header_names[] = {
    ngx_string("x-rbcs-key-id"),
    ngx_string("x-rbcs-timestamp"),
    ngx_string("x-rbcs-signature")
};


static struct {
    ngx_str_t                  name;
    ngx_uint_t                 scope;
} ngx_rbcs_auth_scopes[] = {
    { ngx_string("read"), NGX_RBCS_AUTH_READ },
    { ngx_string("transfer"), NGX_RBCS_AUTH_TRANSFER },
    { ngx_string("admin"), NGX_RBCS_AUTH_ADMIN },
    { ngx_null_string, 0 }
};


/* SHA-256 of the empty string: the body hash of a request without body */

static u_char  ngx_rbcs_auth_empty_sha256[SHA256_DIGEST_LENGTH] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
    0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
    0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
};


/*
 * An unknown key is checked against this one, so that it costs the same
 * time as a wrong signature.
 */

static ngx_rbcs_auth_key_t  ngx_rbcs_auth_nokey = {
    ngx_string("-"),
    ngx_string("rbcs-no-such-key-rbcs-no-such-key"),
    0,
    0
};


/*
 * rbcs_auth_keys FILE;
 *
 * One key per line, "KEY_ID SECRET SCOPES", separated by spaces or tabs;
 * SCOPES is a comma list of read, transfer and admin.  Blank lines and
 * lines starting with "#" are skipped.  Errors name the file and line,
 * never a secret.
 */

char *
ngx_rbcs_auth_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    u_char               *buf, *p, *eol, *last;
    size_t                size;
    ngx_str_t            *value, name, field[3];
    ngx_uint_t            line, i;
    ngx_array_t          *keys;
    ngx_rbcs_auth_key_t  *key;

    if (rmcf->auth_keys) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    buf = ngx_rbcs_auth_read(cf, &name, &size);
    if (buf == NULL) {
        return NGX_CONF_ERROR;
    }

    keys = ngx_array_create(cf->pool, 8, sizeof(ngx_rbcs_auth_key_t));
    if (keys == NULL) {
        return NGX_CONF_ERROR;
    }

    last = buf + size;

    /* buf has a byte past its end, so eol + 1 may reach one past that */

    for (p = buf, line = 1; p < last; p = eol + 1, line++) {

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        switch (ngx_rbcs_auth_fields(p, eol, field)) {

        case 0:
            continue;

        case 3:
            break;

        default:
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: a key is \"KEY_ID SECRET SCOPES\"",
                               &name, line);
            return NGX_CONF_ERROR;
        }

        key = ngx_array_push(keys);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_rbcs_auth_line(cf, &name, line, field, key) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (keys->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V has no keys", &name);
        return NGX_CONF_ERROR;
    }

    ngx_sort(keys->elts, keys->nelts, sizeof(ngx_rbcs_auth_key_t),
             ngx_rbcs_auth_cmp);

    key = keys->elts;

    for (i = 1; i < keys->nelts; i++) {
        if (ngx_rbcs_auth_cmp(&key[i - 1], &key[i]) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: key id \"%V\" is also on line %ui",
                               &name, ngx_max(key[i - 1].line, key[i].line),
                               &key[i].id,
                               ngx_min(key[i - 1].line, key[i].line));
            return NGX_CONF_ERROR;
        }
    }

    rmcf->auth_keys = keys;

    return NGX_CONF_OK;
}


/*
 * The fields of a line, separated by spaces or tabs: 0 for a blank line
 * or a comment, 4 for more than three.
 */

static ngx_uint_t
ngx_rbcs_auth_fields(u_char *p, u_char *last, ngx_str_t *field)
{
    ngx_uint_t  n;

    for (n = 0; /* void */ ; n++) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r')) {
            p++;
        }

        if (p == last || (n == 0 && *p == '#')) {
            return n;
        }

        if (n == 3) {
            return 4;
        }

        field[n].data = p;

        while (p < last && *p != ' ' && *p != '\t' && *p != '\r') {
            p++;
        }

        field[n].len = p - field[n].data;
    }
}


/*
 * The per-key rate limit, taken after the signature is verified: a request
 * that names a key it cannot sign for costs that key nothing, and one
 * naming no known key never reaches it (the per-address limit of the
 * configuration is what bounds those).  One slot per key id in a shared
 * table (open addressing), the leaky bucket of limit_req: excess in
 * thousandths of a request, drained at the rate.
 */

#define NGX_RBCS_AUTH_LIMIT_SIZE   (1024 * 1024)
#define NGX_RBCS_AUTH_LIMIT_IDLE   60000   /* ms: a slot free for reuse */

typedef struct {
    u_char                     id_len;    /* 0: never used */
    u_char                     id[NGX_RBCS_ID_MAX_LEN];
    ngx_msec_t                 last;
    ngx_uint_t                 excess;
} ngx_rbcs_auth_slot_t;


typedef struct {
    ngx_uint_t                 nslots;
    ngx_rbcs_auth_slot_t       slots[1];
} ngx_rbcs_auth_table_t;


/* rbcs_auth_limit rate=N(r/s|r/m) [burst=N]; */

char *
ngx_rbcs_auth_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_rbcs_main_conf_t *rmcf = conf;

    size_t           len;
    u_char          *p;
    ngx_int_t        rate, scale, burst;
    ngx_str_t       *value, name = ngx_string("rbcs_auth_limit");
    ngx_uint_t       i;

    if (rmcf->auth_limit) {
        return "is duplicate";
    }

    value = cf->args->elts;
    rate = 0;
    scale = 1;
    burst = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            len = value[i].len;
            p = value[i].data + len - 3;

            if (len > 8 && ngx_strncmp(p, "r/s", 3) == 0) {
                scale = 1;
                len -= 3;

            } else if (len > 8 && ngx_strncmp(p, "r/m", 3) == 0) {
                scale = 60;
                len -= 3;

            } else {
                goto invalid;
            }

            rate = ngx_atoi(value[i].data + 5, len - 5);
            if (rate <= 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (burst < 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_auth_limit\" needs a rate, e.g. "
                           "rate=500r/s");
        return NGX_CONF_ERROR;
    }

    rmcf->auth_rate = rate * 1000 / scale;
    rmcf->auth_burst = burst * 1000;

    rmcf->auth_limit = ngx_shared_memory_add(cf, &name,
                                             NGX_RBCS_AUTH_LIMIT_SIZE,
                                             &ngx_rbcs_module);
    if (rmcf->auth_limit == NULL) {
        return NGX_CONF_ERROR;
    }

    rmcf->auth_limit->init = ngx_rbcs_auth_limit_init_zone;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" (rbcs_auth_limit "
                       "rate=N(r/s|r/m) [burst=N])", &value[i]);
    return NGX_CONF_ERROR;
}


/* every key of the file must find a slot, with room for rotations */

ngx_int_t
ngx_rbcs_auth_limit_check_keys(ngx_conf_t *cf, ngx_rbcs_main_conf_t *rmcf)
{
    size_t  slots;

    if (rmcf->auth_limit == NULL || rmcf->auth_keys == NULL) {
        return NGX_OK;
    }

    slots = (NGX_RBCS_AUTH_LIMIT_SIZE - 8 * ngx_pagesize)
            / sizeof(ngx_rbcs_auth_slot_t);

    if (rmcf->auth_keys->nelts > slots / 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rbcs_auth_limit\" tracks at most %uz keys, "
                           "the keys file has %ui", slots / 4,
                           rmcf->auth_keys->nelts);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_auth_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                  size;
    ngx_slab_pool_t        *shpool;
    ngx_rbcs_auth_table_t  *t;

    /* a reload keeps the buckets: a key does not start afresh */

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    size = (shm_zone->shm.size - 8 * ngx_pagesize)
           / sizeof(ngx_rbcs_auth_slot_t) * sizeof(ngx_rbcs_auth_slot_t);

    t = ngx_slab_calloc(shpool, size);
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->nslots = (size - offsetof(ngx_rbcs_auth_table_t, slots))
                / sizeof(ngx_rbcs_auth_slot_t);

    shpool->data = t;
    shm_zone->data = t;

    return NGX_OK;
}


/*
 * The key's slot, locked by the caller; NULL when the key starts afresh
 * (a free or idle slot is claimed for it, its first request is free) or
 * when every slot is busy, not a state the key count allows.
 */

static ngx_rbcs_auth_slot_t *
ngx_rbcs_auth_limit_slot(ngx_rbcs_auth_table_t *t, ngx_str_t *id,
    ngx_msec_t now)
{
    ngx_uint_t             i, n, h;
    ngx_rbcs_auth_slot_t  *slot, *spare;

    n = t->nslots;
    h = ngx_crc32_short(id->data, id->len) % n;
    spare = NULL;

    for (i = 0; i < n; i++) {
        slot = &t->slots[(h + i) % n];

        if (slot->id_len == id->len
            && ngx_memcmp(slot->id, id->data, id->len) == 0)
        {
            return slot;
        }

        if (slot->id_len == 0) {
            spare = spare ? spare : slot;
            break;
        }

        /* a key gone from the file, or idle long enough to start afresh */

        if (spare == NULL
            && (ngx_msec_int_t) (now - slot->last) > NGX_RBCS_AUTH_LIMIT_IDLE)
        {
            spare = slot;
        }
    }

    if (spare) {
        spare->id_len = (u_char) id->len;
        ngx_memcpy(spare->id, id->data, id->len);
        spare->excess = 0;
        spare->last = now;
    }

    return NULL;
}


/* NGX_OK, or NGX_HTTP_TOO_MANY_REQUESTS with Retry-After set */

static ngx_int_t
ngx_rbcs_auth_limit_take(ngx_http_request_t *r, ngx_rbcs_main_conf_t *rmcf,
    ngx_str_t *id)
{
    u_char                 *p;
    ngx_int_t               excess;
    ngx_msec_t              now, wait;
    ngx_msec_int_t          ms;
    ngx_slab_pool_t        *shpool;
    ngx_rbcs_auth_slot_t   *slot;

    if (rmcf->auth_limit == NULL) {
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) rmcf->auth_limit->shm.addr;
    now = ngx_current_msec;

    ngx_shmtx_lock(&shpool->mutex);

    slot = ngx_rbcs_auth_limit_slot(rmcf->auth_limit->data, id, now);

    if (slot == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_OK;
    }

    ms = (ngx_msec_int_t) (now - slot->last);

    if (ms < -60000) {
        ms = 1;

    } else if (ms < 0) {
        ms = 0;
    }

    excess = (ngx_int_t) slot->excess
             - (ngx_int_t) (rmcf->auth_rate * ms / 1000) + 1000;

    if (excess < 0) {
        excess = 0;
    }

    if ((ngx_uint_t) excess <= rmcf->auth_burst) {
        slot->excess = excess;
        slot->last = now;

        ngx_shmtx_unlock(&shpool->mutex);

        return NGX_OK;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "rbcs: key \"%V\" over its rate limit", id);

    /* when a request fits again, in whole seconds */

    wait = (ngx_msec_t) ((excess - rmcf->auth_burst) * 1000 / rmcf->auth_rate);

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);

    if (p != NULL) {
        (void) ngx_rbcs_http_header(r, "Retry-After", p,
                                    ngx_sprintf(p, "%M", wait / 1000 + 1) - p);
    }

    return NGX_HTTP_TOO_MANY_REQUESTS;
}


/*
 * A secret from a file (a mounted Secret, say): the whole file less its
 * trailing white space, one line, not empty.  Errors never show it.
 */

char *
ngx_rbcs_conf_set_secret_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char     *buf, *p, *last;
    size_t      size;
    ngx_str_t  *field, *value, name;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    buf = ngx_rbcs_auth_read(cf, &name, &size);
    if (buf == NULL) {
        return NGX_CONF_ERROR;
    }

    last = buf + size;

    while (last > buf
           && (last[-1] == '\n' || last[-1] == '\r' || last[-1] == ' '
               || last[-1] == '\t'))
    {
        last--;
    }

    if (last == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" is empty", &name);
        return NGX_CONF_ERROR;
    }

    for (p = buf; p < last; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" holds more than one line", &name);
            return NGX_CONF_ERROR;
        }
    }

    field->data = buf;
    field->len = last - buf;

    return NGX_CONF_OK;
}


/*
 * The whole file, at configuration time only; *name, the directive's
 * argument, becomes the full path (for the caller's messages).
 */

static u_char *
ngx_rbcs_auth_read(ngx_conf_t *cf, ngx_str_t *name, size_t *size)
{
    u_char           *buf;
    off_t             len;
    ssize_t           n;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NULL;
    }

    buf = NULL;

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NULL;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", name);
        goto done;
    }

    len = ngx_file_size(&fi);

    if (len > NGX_RBCS_AUTH_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is larger than %d bytes", name,
                           NGX_RBCS_AUTH_FILE_MAX);
        goto done;
    }

    buf = ngx_pnalloc(cf->pool, len + 1);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, buf, len, 0);

    if (n == NGX_ERROR) {
        buf = NULL;
        goto done;
    }

    if (n != len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           ngx_read_file_n " \"%V\" returned only "
                           "%z bytes instead of %O", name, n, len);
        buf = NULL;
        goto done;
    }

    *size = len;

done:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", name);
    }

    return buf;
}


static char *
ngx_rbcs_auth_line(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t line,
    ngx_str_t *field, ngx_rbcs_auth_key_t *key)
{
    u_char     *p, *s, *last;
    ngx_uint_t  i;

    if (!ngx_rbcs_valid_id(field[0].data, field[0].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V:%ui: a key id matches "
                           "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", name, line);
        return NGX_CONF_ERROR;
    }

    if (field[1].len < NGX_RBCS_AUTH_SECRET_MIN
        || field[1].len > NGX_RBCS_AUTH_SECRET_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V:%ui: the secret of key \"%V\" is not %d to "
                           "%d characters", name, line, &field[0],
                           NGX_RBCS_AUTH_SECRET_MIN,
                           NGX_RBCS_AUTH_SECRET_MAX);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < field[1].len; i++) {
        if (field[1].data[i] < 0x21 || field[1].data[i] == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: the secret of key \"%V\" has a "
                               "control character", name, line, &field[0]);
            return NGX_CONF_ERROR;
        }
    }

    key->id = field[0];
    key->secret = field[1];
    key->scopes = 0;
    key->line = line;

    p = field[2].data;
    last = p + field[2].len;

    for ( ;; ) {
        s = p;

        while (p < last && *p != ',') {
            p++;
        }

        for (i = 0; ngx_rbcs_auth_scopes[i].name.len; i++) {
            if ((size_t) (p - s) == ngx_rbcs_auth_scopes[i].name.len
                && ngx_strncmp(s, ngx_rbcs_auth_scopes[i].name.data, p - s)
                   == 0)
            {
                break;
            }
        }

        if (ngx_rbcs_auth_scopes[i].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: the scopes of key \"%V\" are not a "
                               "comma list of read, transfer and admin",
                               name, line, &field[0]);
            return NGX_CONF_ERROR;
        }

        key->scopes |= ngx_rbcs_auth_scopes[i].scope;

        if (p == last) {
            break;
        }

        p++;                                         /* the ',' */
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_rbcs_auth_cmp(const void *one, const void *two)
{
    const ngx_rbcs_auth_key_t  *a = one;
    const ngx_rbcs_auth_key_t  *b = two;

    return ngx_memn2cmp(a->id.data, b->id.data, a->id.len, b->id.len);
}


/* the keys are sorted by id when the configuration is read */

static ngx_rbcs_auth_key_t *
ngx_rbcs_auth_find(ngx_array_t *keys, ngx_str_t *id)
{
    ngx_int_t             rc;
    ngx_uint_t            lo, hi, mid;
    ngx_rbcs_auth_key_t  *key;

    key = keys->elts;
    lo = 0;
    hi = keys->nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        rc = ngx_memn2cmp(id->data, key[mid].id.data, id->len,
                          key[mid].id.len);

        if (rc == 0) {
            return &key[mid];
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


/*
 * A request without a body (GET routes): body is NULL and len 0.  Returns
 * NGX_OK, NGX_HTTP_UNAUTHORIZED, NGX_HTTP_FORBIDDEN,
 * NGX_HTTP_TOO_MANY_REQUESTS (the key's rbcs_auth_limit) or
 * NGX_HTTP_INTERNAL_SERVER_ERROR; ngx_rbcs_auth_problem() answers them.
 */

ngx_int_t
ngx_rbcs_auth_check(ngx_http_request_t *r, ngx_uint_t scope, u_char *body,
    size_t len)
{
    u_char                 hash[SHA256_DIGEST_LENGTH];
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (!rmcf->auth) {
        return NGX_OK;
    }

    if (len == 0) {
        return ngx_rbcs_auth_verify(r, scope, ngx_rbcs_auth_empty_sha256);
    }

    if (EVP_Digest(body, len, hash, NULL, EVP_sha256(), NULL) != 1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "rbcs: EVP_Digest() failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_rbcs_auth_verify(r, scope, hash);
}


/*
 * A request whose body has been read (POST routes): the body is hashed as
 * received, before anything looks at its media type or its JSON.
 */

ngx_int_t
ngx_rbcs_auth_check_body(ngx_http_request_t *r, ngx_uint_t scope)
{
    u_char                 hash[SHA256_DIGEST_LENGTH];
    ngx_int_t              rc;
    ngx_buf_t             *b;
    EVP_MD_CTX            *md;
    ngx_chain_t           *cl;
    ngx_rbcs_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    if (!rmcf->auth) {
        return NGX_OK;
    }

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return ngx_rbcs_auth_verify(r, scope, ngx_rbcs_auth_empty_sha256);
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = NGX_OK;

    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (cl = r->request_body->bufs; cl && rc == NGX_OK; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* reading it would block; ngx_rbcs_http_body() says why */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "rbcs: request body buffered to a file cannot be "
                          "authenticated");
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            break;
        }

        if (EVP_DigestUpdate(md, b->pos, b->last - b->pos) != 1) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc == NGX_OK && EVP_DigestFinal_ex(md, hash, NULL) != 1) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    EVP_MD_CTX_free(md);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_rbcs_auth_verify(r, scope, hash);
}


/* X-RBCS-Key-Id, X-RBCS-Timestamp, X-RBCS-Signature; each exactly once */

static ngx_int_t
ngx_rbcs_auth_headers(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_uint_t        i, j;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (j = 0; j < 3; j++) {
        ngx_str_null(&value[j]);
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (j = 0; j < 3; j++) {
            if (h[i].key.len == ngx_rbcs_auth_header_names[j].len
                && ngx_strncmp(h[i].lowcase_key,
                               ngx_rbcs_auth_header_names[j].data,
                               h[i].key.len)
                   == 0)
            {
                if (value[j].data) {
                    return NGX_DECLINED;
                }

                value[j] = h[i].value;
            }
        }
    }

    for (j = 0; j < 3; j++) {
        if (value[j].data == NULL) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * The lower-case hex HMAC-SHA256 of the string to sign:
 * METHOD "\n" PATH "\n" QUERY "\n" TIMESTAMP "\n" hex(SHA-256(BODY)).
 */

static ngx_int_t
ngx_rbcs_auth_mac(ngx_http_request_t *r, ngx_str_t *secret, ngx_str_t *ts,
    u_char *body_hash, u_char *hex)
{
    u_char        *s, *p, *last;
    ngx_str_t      path;
    unsigned int   maclen;
    u_char         mac[EVP_MAX_MD_SIZE];

    /* the path and the query as sent, before any decoding */

    path = r->unparsed_uri;
    last = ngx_strlchr(path.data, path.data + path.len, '?');

    if (last) {
        path.len = last - path.data;
    }

    s = ngx_pnalloc(r->pool, r->method_name.len + path.len + r->args.len
                             + ts->len + NGX_RBCS_AUTH_HEX_LEN + 4);
    if (s == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(s, r->method_name.data, r->method_name.len);
    *p++ = '\n';
    p = ngx_cpymem(p, path.data, path.len);
    *p++ = '\n';

    /* no query: r->args is { 0, NULL }, and memcpy() wants no NULL */

    if (r->args.len) {
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    *p++ = '\n';
    p = ngx_cpymem(p, ts->data, ts->len);
    *p++ = '\n';
    p = ngx_hex_dump(p, body_hash, SHA256_DIGEST_LENGTH);

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, s, p - s, mac,
             &maclen)
        == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "rbcs: HMAC() failed");
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, mac, SHA256_DIGEST_LENGTH);

    return NGX_OK;
}


static ngx_int_t
ngx_rbcs_auth_verify(ngx_http_request_t *r, ngx_uint_t scope,
    u_char *body_hash)
{
    time_t                  ts, now, window;
    ngx_str_t               h[3];
    const char             *fail;
    ngx_rbcs_ctx_t         *ctx;
    ngx_rbcs_auth_key_t    *key;
    ngx_rbcs_main_conf_t   *rmcf;
    u_char                  hex[NGX_RBCS_AUTH_HEX_LEN];

    rmcf = ngx_http_get_module_main_conf(r, ngx_rbcs_module);

    ts = NGX_ERROR;

    if (ngx_rbcs_auth_headers(r, h) == NGX_OK
        && ngx_rbcs_valid_id(h[0].data, h[0].len)
        && h[1].len <= NGX_TIME_T_LEN
        && h[2].len == NGX_RBCS_AUTH_HEX_LEN)
    {
        ts = ngx_atotm(h[1].data, h[1].len);
    }

    if (ts == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "rbcs: not authenticated: signature headers missing, "
                      "repeated or malformed");
        return NGX_HTTP_UNAUTHORIZED;
    }

    key = ngx_rbcs_auth_find(rmcf->auth_keys, &h[0]);

    if (ngx_rbcs_auth_mac(r, key ? &key->secret : &ngx_rbcs_auth_nokey.secret,
                          &h[1], body_hash, hex)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_time();
    window = (time_t) (rmcf->auth_window / 1000);

    if (key == NULL) {
        fail = "unknown key";

    } else if (CRYPTO_memcmp(hex, h[2].data, NGX_RBCS_AUTH_HEX_LEN) != 0) {
        fail = "wrong signature";

    } else if (ts < now - window || ts > now + window) {
        fail = "timestamp outside the window";

    } else {
        fail = NULL;
    }

    if (fail) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "rbcs: not authenticated: %s, key id \"%V\"",
                      fail, &h[0]);
        return NGX_HTTP_UNAUTHORIZED;
    }

    ctx = ngx_rbcs_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->key_id = key->id;

    /* the key's own budget: only what it signed spends it */

    if (ngx_rbcs_auth_limit_take(r, rmcf, &key->id) != NGX_OK) {
        return NGX_HTTP_TOO_MANY_REQUESTS;
    }

    if (!(key->scopes & scope)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "rbcs: forbidden: key \"%V\" lacks the scope of "
                      "this route", &key->id);
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * The answer to a failed check.  Every 401 is the same document whatever
 * failed: a client learns nothing from it.
 */

ngx_int_t
ngx_rbcs_auth_problem(ngx_http_request_t *r, ngx_int_t rc)
{
    static ngx_str_t  ngx_rbcs_auth_challenge =
                          ngx_string("RBCS-HMAC-SHA256 realm=\"rbcs\"");

    switch (rc) {

    case NGX_HTTP_UNAUTHORIZED:
        if (ngx_rbcs_http_header(r, "WWW-Authenticate",
                                 ngx_rbcs_auth_challenge.data,
                                 ngx_rbcs_auth_challenge.len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_rbcs_http_problem(r, NGX_HTTP_UNAUTHORIZED,
                                     "unauthorized",
                                     "the request is not authenticated");

    case NGX_HTTP_FORBIDDEN:
        return ngx_rbcs_http_problem(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                     "the key may not use this route");

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return ngx_rbcs_http_problem(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                     "rate_limited",
                                     "the key is over its rate limit");

    default:
        return ngx_rbcs_http_problem(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal_error",
                                     "the request could not be "
                                     "authenticated");
    }
}
