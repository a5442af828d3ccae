
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of src/ngx_rbcs_auth.c (#included: its static
 * functions): the keys file as rbcs_auth_keys reads it at configuration
 * time, and the signature headers of a request checked against the keys.
 *
 * The input is "KEYS\0REQUEST".  KEYS is a keys file (empty: the fixed
 * keys below); when it is refused, the fixed keys serve the request.
 * REQUEST is "METHOD URI\n", header lines "Name: value\n", an empty line
 * and the body.  So that the checks past the signature are reached, a
 * X-RBCS-Signature of "SIGN" is replaced with the right signature when the
 * key id names a key, and a X-RBCS-Timestamp of "NOW" with the time.  The
 * method's first letter picks the scope (G: read, P: transfer, else
 * admin); a body of a POST is hashed from up to three buffers, as
 * ngx_rbcs_auth_check_body() gets it.
 */


#include "fuzz_ngx.h"

#include "ngx_rbcs_auth.c"


#define FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)


static const char  fuzz_default_keys[] =
    "# fixed keys of the harness\n"
    "k1 0123456789abcdef0123456789abcdef read,transfer\n"
    "adm  ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678 admin\n"
    "ro\tsecret-secret-secret-secret-secret-1 read\n";

static ngx_array_t  *fuzz_default;
static char          fuzz_keys_path[64];


static ngx_array_t *
fuzz_keys(ngx_pool_t *pool, const u_char *text, size_t len)
{
    int                    fd;
    char                  *rv;
    ngx_str_t             *value;
    ngx_conf_t             cf;
    ngx_rbcs_main_conf_t   kc;

    fd = open(fuzz_keys_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd != -1);
    FUZZ_CHECK(len == 0 || write(fd, text, len) == (ssize_t) len);
    close(fd);

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    ngx_memzero(&kc, sizeof(ngx_rbcs_main_conf_t));

    cf.pool = pool;
    cf.temp_pool = pool;
    cf.cycle = &fuzz_cycle;
    cf.log = &fuzz_log;
    cf.args = ngx_array_create(pool, 2, sizeof(ngx_str_t));
    FUZZ_CHECK(cf.args != NULL);

    value = ngx_array_push_n(cf.args, 2);
    FUZZ_CHECK(value != NULL);
    ngx_str_set(&value[0], "rbcs_auth_keys");
    value[1].data = (u_char *) fuzz_keys_path;
    value[1].len = ngx_strlen(fuzz_keys_path);

    rv = ngx_rbcs_auth_keys(&cf, NULL, &kc);

    if (rv != NGX_CONF_OK) {
        FUZZ_CHECK(kc.auth_keys == NULL);
        return NULL;
    }

    FUZZ_CHECK(kc.auth_keys != NULL && kc.auth_keys->nelts > 0);

    return kc.auth_keys;
}


static void
fuzz_check_keys(ngx_array_t *keys)
{
    ngx_uint_t            i;
    ngx_rbcs_auth_key_t  *key;

    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        FUZZ_CHECK(ngx_rbcs_valid_id(key[i].id.data, key[i].id.len));
        FUZZ_CHECK(key[i].secret.len >= NGX_RBCS_AUTH_SECRET_MIN
                   && key[i].secret.len <= NGX_RBCS_AUTH_SECRET_MAX);
        FUZZ_CHECK(key[i].scopes != 0);
        FUZZ_CHECK(i == 0 || ngx_rbcs_auth_cmp(&key[i - 1], &key[i]) < 0);
        FUZZ_CHECK(ngx_rbcs_auth_find(keys, &key[i].id) == &key[i]);
    }
}


/* the signature a client makes, as API.md describes it */

static void
fuzz_sign(ngx_http_request_t *r, ngx_array_t *keys, ngx_str_t *id,
    ngx_str_t *ts, const u_char *body, size_t len, ngx_table_elt_t *sig)
{
    u_char               *s, *p, *last, *hex;
    u_char                hash[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
    ngx_str_t             path;
    unsigned int          maclen;
    ngx_rbcs_auth_key_t  *key;

    key = ngx_rbcs_auth_find(keys, id);
    if (key == NULL) {
        return;
    }

    FUZZ_CHECK(EVP_Digest(body, len, hash, NULL, EVP_sha256(), NULL) == 1);

    path = r->unparsed_uri;
    last = ngx_strlchr(path.data, path.data + path.len, '?');
    if (last) {
        path.len = last - path.data;
    }

    s = ngx_pnalloc(r->pool, r->method_name.len + path.len + r->args.len
                             + ts->len + 2 * SHA256_DIGEST_LENGTH + 4);
    FUZZ_CHECK(s != NULL);

    p = ngx_sprintf(s, "%V\n%V\n%V\n%V\n", &r->method_name, &path, &r->args,
                    ts);
    p = ngx_hex_dump(p, hash, SHA256_DIGEST_LENGTH);

    FUZZ_CHECK(HMAC(EVP_sha256(), key->secret.data, (int) key->secret.len,
                    s, p - s, mac, &maclen)
               != NULL);

    hex = ngx_pnalloc(r->pool, 2 * SHA256_DIGEST_LENGTH);
    FUZZ_CHECK(hex != NULL);
    ngx_hex_dump(hex, mac, SHA256_DIGEST_LENGTH);

    sig->value.data = hex;
    sig->value.len = 2 * SHA256_DIGEST_LENGTH;
}


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const u_char *data, size_t size);


static void
fuzz_unlink(void)
{
    (void) unlink(fuzz_keys_path);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();

    (void) ngx_sprintf((u_char *) fuzz_keys_path,
                       "/tmp/rbcs-fuzz-keys-%P%Z", ngx_pid);
    atexit(fuzz_unlink);

    fuzz_default = fuzz_keys(fuzz_cycle.pool,
                             (const u_char *) fuzz_default_keys,
                             sizeof(fuzz_default_keys) - 1);
    FUZZ_CHECK(fuzz_default != NULL && fuzz_default->nelts == 3);

    fuzz_rmcf.auth = 1;

    return 0;
}


int
LLVMFuzzerTestOneInput(const u_char *data, size_t size)
{
    u_char               *copy, *p, *q, *last, *eol, *colon, *body, *lc;
    size_t                klen, blen, n;
    ngx_int_t             rc;
    ngx_str_t             id, ts;
    ngx_uint_t            scope, i;
    ngx_buf_t            *b;
    ngx_pool_t           *pool;
    ngx_array_t          *keys;
    ngx_chain_t          *cl, **ll;
    ngx_table_elt_t      *h, *sig;
    ngx_http_request_t   *r;

    pool = ngx_create_pool(1024, &fuzz_log);
    FUZZ_CHECK(pool != NULL);

    copy = ngx_pnalloc(pool, size + 1);
    FUZZ_CHECK(copy != NULL);
    ngx_memcpy(copy, data, size);

    last = copy + size;
    p = ngx_strlchr(copy, last, '\0');
    klen = (p ? p : last) - copy;

    keys = NULL;

    if (klen) {
        keys = fuzz_keys(pool, copy, klen);
        if (keys) {
            fuzz_check_keys(keys);
        }
    }

    if (keys == NULL) {
        keys = fuzz_default;
    }

    if (p == NULL) {
        ngx_destroy_pool(pool);
        return 0;
    }

    fuzz_rmcf.auth_keys = keys;

    r = fuzz_request(pool);
    FUZZ_CHECK(r != NULL);

    /* "METHOD URI" */

    p++;
    eol = ngx_strlchr(p, last, '\n');
    if (eol == NULL) {
        eol = last;
    }

    q = ngx_strlchr(p, eol, ' ');
    r->method_name.data = p;
    r->method_name.len = (q ? q : eol) - p;
    r->unparsed_uri.data = q ? q + 1 : eol;
    r->unparsed_uri.len = eol - r->unparsed_uri.data;

    q = ngx_strlchr(r->unparsed_uri.data, eol, '?');
    if (q) {
        r->args.data = q + 1;
        r->args.len = eol - r->args.data;
    }

    scope = (r->method_name.len && p[0] == 'G') ? NGX_RBCS_AUTH_READ
            : (r->method_name.len && p[0] == 'P') ? NGX_RBCS_AUTH_TRANSFER
            : NGX_RBCS_AUTH_ADMIN;

    /* headers, up to an empty line */

    p = eol < last ? eol + 1 : last;
    sig = NULL;
    ngx_str_null(&id);
    ngx_str_null(&ts);

    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        if (eol == p) {
            p++;
            break;
        }

        colon = ngx_strlchr(p, eol, ':');

        h = ngx_list_push(&r->headers_in.headers);
        FUZZ_CHECK(h != NULL);

        h->hash = 1;
        h->key.data = p;
        h->key.len = (colon ? colon : eol) - p;
        h->value.data = colon ? colon + 1 : eol;
        while (h->value.data < eol && *h->value.data == ' ') {
            h->value.data++;
        }
        h->value.len = eol - h->value.data;

        lc = ngx_pnalloc(pool, h->key.len);
        FUZZ_CHECK(lc != NULL || h->key.len == 0);
        ngx_strlow(lc, h->key.data, h->key.len);
        h->lowcase_key = lc;

        if (h->key.len == sizeof("x-rbcs-signature") - 1
            && ngx_strncmp(lc, "x-rbcs-signature", h->key.len) == 0
            && h->value.len == 4
            && ngx_strncmp(h->value.data, "SIGN", 4) == 0)
        {
            sig = h;
        }

        if (h->key.len == sizeof("x-rbcs-key-id") - 1
            && ngx_strncmp(lc, "x-rbcs-key-id", h->key.len) == 0)
        {
            id = h->value;
        }

        if (h->key.len == sizeof("x-rbcs-timestamp") - 1
            && ngx_strncmp(lc, "x-rbcs-timestamp", h->key.len) == 0)
        {
            if (h->value.len == 3
                && ngx_strncmp(h->value.data, "NOW", 3) == 0)
            {
                h->value.data = ngx_pnalloc(pool, NGX_TIME_T_LEN);
                FUZZ_CHECK(h->value.data != NULL);
                h->value.len = ngx_sprintf(h->value.data, "%T", ngx_time())
                               - h->value.data;
            }

            ts = h->value;
        }

        p = eol < last ? eol + 1 : last;
    }

    body = p;
    blen = last - p;

    if (sig && id.len && ts.len) {
        fuzz_sign(r, keys, &id, &ts, body, blen, sig);
    }

    if (r->method_name.len == 4
        && ngx_strncmp(r->method_name.data, "POST", 4) == 0 && blen)
    {
        /* the body in up to three buffers, split where its bytes say */

        r->request_body = ngx_pcalloc(pool, sizeof(ngx_http_request_body_t));
        FUZZ_CHECK(r->request_body != NULL);

        ll = &r->request_body->bufs;
        q = body;

        for (i = 0; i < 3 && q < last; i++) {
            n = (i == 2) ? (size_t) (last - q)
                         : ngx_min((size_t) (last - q), 1 + (size_t) *q % 64);

            b = ngx_calloc_buf(pool);
            cl = ngx_alloc_chain_link(pool);
            FUZZ_CHECK(b != NULL && cl != NULL);

            /* each buffer its own allocation: reads past it are caught */
            b->pos = ngx_pnalloc(pool, n);
            FUZZ_CHECK(b->pos != NULL);
            ngx_memcpy(b->pos, q, n);
            b->last = b->pos + n;
            b->memory = 1;

            cl->buf = b;
            cl->next = NULL;
            *ll = cl;
            ll = &cl->next;
            q += n;
        }

        rc = ngx_rbcs_auth_check_body(r, scope);

    } else {
        rc = ngx_rbcs_auth_check(r, scope, blen ? body : NULL, blen);
    }

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_HTTP_UNAUTHORIZED
               || rc == NGX_HTTP_FORBIDDEN);

    if (rc == NGX_OK) {
        /* the signer's key id, for the logs and the actor */
        FUZZ_CHECK(ngx_rbcs_http_actor(r) != NULL);
    }

    ngx_destroy_pool(pool);

    return 0;
}
