
/*
 * RBCS: strict JSON request body parsing (yajl 2).
 *
 * yajl checks the grammar, the escapes and the characters of strings.
 * Its callbacks here add the shape (exactly one object, the nesting
 * limit) and I-JSON's unique member names in every object (RFC 7493).
 * What yajl lets through is checked after it, on the text it accepted:
 * what follows the object, whitespace ("\v" and "\f" are whitespace to
 * yajl), strict UTF-8 (yajl passes overlong forms, encoded surrogates and
 * code points above U+10FFFF) and paired surrogate escapes (yajl turns a
 * lone one into other text).
 */


#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ngx_rbcs_json.h"


typedef struct {
    const u_char            *data;
    size_t                   len;
} ngx_rbcs_json_key_t;


typedef struct {
    yajl_handle              handle;

    ngx_rbcs_json_field_t   *fields;
    size_t                   nfields;

    ngx_rbcs_json_key_t     *keys;       /* keys of all open objects */
    size_t                   nkeys;
    size_t                   max_keys;   /* also the room in fields */

    u_char                  *pos;        /* copies of keys and values */
    u_char                  *last;

    size_t                   depth;
    size_t                   mark[NGX_RBCS_JSON_MAX_DEPTH + 1];
    size_t                   end;        /* offset past the object */

    const char              *err;
} ngx_rbcs_json_ctx_t;


static yajl_status ngx_rbcs_json_yajl(ngx_rbcs_json_ctx_t *cx,
    const u_char *body, size_t len);
static size_t ngx_rbcs_json_count_keys(const u_char *p, size_t len);
static const char *ngx_rbcs_json_check(const u_char *p, const u_char *last,
    const u_char *end);
static int ngx_rbcs_json_surrogate(const u_char *p);
static size_t ngx_rbcs_json_utf8_len(const u_char *p, size_t n);
static const u_char *ngx_rbcs_json_copy(ngx_rbcs_json_ctx_t *cx,
    const u_char *data, size_t len);
static int ngx_rbcs_json_set_value(ngx_rbcs_json_ctx_t *cx, int type,
    const u_char *data, size_t len);
static int ngx_rbcs_json_push(ngx_rbcs_json_ctx_t *cx);
static int ngx_rbcs_json_key_cmp(const void *one, const void *two);

static int ngx_rbcs_json_null(void *ctx);
static int ngx_rbcs_json_boolean(void *ctx, int b);
static int ngx_rbcs_json_number(void *ctx, const char *s, size_t len);
static int ngx_rbcs_json_string(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_rbcs_json_start_map(void *ctx);
static int ngx_rbcs_json_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_rbcs_json_end_map(void *ctx);
static int ngx_rbcs_json_start_array(void *ctx);
static int ngx_rbcs_json_end_array(void *ctx);


static const yajl_callbacks  ngx_rbcs_json_callbacks = {
    ngx_rbcs_json_null,
    ngx_rbcs_json_boolean,
    NULL,                                /* yajl_integer: never converted */
    NULL,                                /* yajl_double: never converted */
    ngx_rbcs_json_number,
    ngx_rbcs_json_string,
    ngx_rbcs_json_start_map,
    ngx_rbcs_json_map_key,
    ngx_rbcs_json_end_map,
    ngx_rbcs_json_start_array,
    ngx_rbcs_json_end_array
};


static const u_char  ngx_rbcs_json_empty[1] = { '\0' };


int
ngx_rbcs_json_parse_object(const u_char *body, size_t len,
    ngx_rbcs_json_alloc_pt alloc, void *ctx,
    ngx_rbcs_json_field_t **fields, size_t *nfields, const char **err)
{
    int                   rc;
    size_t                n, size;
    u_char               *mem;
    ngx_rbcs_json_ctx_t   cx;

    *fields = NULL;
    *nfields = 0;

    if (err) {
        *err = NULL;
    }

    if (body == NULL) {
        body = ngx_rbcs_json_empty;
        len = 0;
    }

    memset(&cx, 0, sizeof(ngx_rbcs_json_ctx_t));

    rc = NGX_RBCS_JSON_ENOMEM;

    if (len > SIZE_MAX / (sizeof(ngx_rbcs_json_field_t)
                          + sizeof(ngx_rbcs_json_key_t) + 1))
    {
        cx.err = "body too large";
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    /*
     * one allocation: the fields and the key stack, one entry per member,
     * then the copies of keys and top-level values; unescaped text is
     * never longer than its source and the copied tokens do not overlap,
     * so len bytes are enough
     */

    n = ngx_rbcs_json_count_keys(body, len);

    if (n) {
        size = n * (sizeof(ngx_rbcs_json_field_t)
                    + sizeof(ngx_rbcs_json_key_t)) + len;

        mem = alloc(ctx, size);
        if (mem == NULL) {
            cx.err = "out of memory";
            goto failed;
        }

        cx.fields = (ngx_rbcs_json_field_t *) mem;
        cx.keys = (ngx_rbcs_json_key_t *) (cx.fields + n);
        cx.max_keys = n;
        cx.pos = (u_char *) (cx.keys + n);
        cx.last = mem + size;
    }

    cx.handle = yajl_alloc(&ngx_rbcs_json_callbacks, NULL, &cx);
    if (cx.handle == NULL) {
        cx.err = "out of memory";
        goto failed;
    }

    if (ngx_rbcs_json_yajl(&cx, body, len) == yajl_status_ok) {
        cx.err = ngx_rbcs_json_check(body, body + cx.end, body + len);
    }

    yajl_free(cx.handle);

    if (cx.err) {
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    *fields = cx.nfields ? cx.fields : NULL;
    *nfields = cx.nfields;

    return NGX_RBCS_JSON_OK;

failed:

    if (err) {
        *err = cx.err;
    }

    return rc;
}


/* sets cx->err, if yajl's own, to a static reason for the log */

static yajl_status
ngx_rbcs_json_yajl(ngx_rbcs_json_ctx_t *cx, const u_char *body, size_t len)
{
    yajl_status     st;
    unsigned char  *msg;

    /* yajl stops after the object; what follows is checked after it */
    yajl_config(cx->handle, yajl_allow_trailing_garbage, 1);

    st = yajl_parse(cx->handle, body, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(cx->handle);
    }

    if (st != yajl_status_ok && cx->err == NULL) {
        msg = yajl_get_error(cx->handle, 0, NULL, 0);

        cx->err = (msg && strstr((char *) msg,
                                 "invalid character inside string"))
                  ? "control character in string" : "syntax error";

        yajl_free_error(cx->handle, msg);
    }

    return st;
}


/* the members of all objects: colons outside strings, exact in valid JSON */

static size_t
ngx_rbcs_json_count_keys(const u_char *p, size_t len)
{
    size_t    i, n;
    unsigned  str;

    n = 0;
    str = 0;

    for (i = 0; i < len; i++) {

        if (p[i] == '"') {
            str = !str;

        } else if (str) {
            i += (p[i] == '\\');

        } else {
            n += (p[i] == ':');
        }
    }

    return n;
}


/*
 * Runs on the text yajl accepted: p..last is the object, in which every
 * backslash starts a complete escape inside a string, last..end what
 * follows it.
 */

static const char *
ngx_rbcs_json_check(const u_char *p, const u_char *last, const u_char *end)
{
    int            s;
    size_t         n;
    const u_char  *q;

    for (q = last; q < end; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            return "trailing data after object";
        }
    }

    while (p < last) {

        if (*p == '\\') {
            s = ngx_rbcs_json_surrogate(p);

            if (s == 2 || (s == 1 && ngx_rbcs_json_surrogate(p + 6) != 2)) {
                return "lone surrogate escape";
            }

            p += (s == 1) ? 12 : (p[1] == 'u') ? 6 : 2;
            continue;
        }

        if (*p == '\v' || *p == '\f') {
            /* JSON whitespace to yajl, and raw only outside strings */
            return "syntax error";
        }

        n = ngx_rbcs_json_utf8_len(p, last - p);
        if (n == 0) {
            return "invalid UTF-8";
        }

        p += n;
    }

    return NULL;
}


/* p is a backslash: 1 for \uD800-\uDBFF, 2 for \uDC00-\uDFFF, 0 else */

static int
ngx_rbcs_json_surrogate(const u_char *p)
{
    u_char  c;

    if (p[0] != '\\' || p[1] != 'u' || (p[2] | 0x20) != 'd') {
        return 0;
    }

    c = p[3] | 0x20;

    if (c == '8' || c == '9' || c == 'a' || c == 'b') {
        return 1;
    }

    return (c >= 'c' && c <= 'f') ? 2 : 0;
}


/* the length (1..4) of the valid UTF-8 sequence at p[0..n), or 0 */

static size_t
ngx_rbcs_json_utf8_len(const u_char *p, size_t n)
{
    u_char  c, lo, hi;
    size_t  need, i;

    c = p[0];

    if (c < 0x80) {
        return 1;
    }

    if (c < 0xc2) {
        /* continuation bytes, overlong 2-byte sequences */
        return 0;
    }

    if (c < 0xe0) {
        need = 2;
        lo = 0x80;
        hi = 0xbf;

    } else if (c < 0xf0) {
        need = 3;
        lo = (c == 0xe0) ? 0xa0 : 0x80;      /* overlong */
        hi = (c == 0xed) ? 0x9f : 0xbf;      /* UTF-16 surrogates */

    } else if (c < 0xf5) {
        need = 4;
        lo = (c == 0xf0) ? 0x90 : 0x80;      /* overlong */
        hi = (c == 0xf4) ? 0x8f : 0xbf;      /* above U+10FFFF */

    } else {
        return 0;
    }

    if (n < need || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    return need;
}


static const u_char *
ngx_rbcs_json_copy(ngx_rbcs_json_ctx_t *cx, const u_char *data, size_t len)
{
    u_char  *p;

    if (len == 0) {
        return ngx_rbcs_json_empty;
    }

    if (cx->pos == NULL || (size_t) (cx->last - cx->pos) < len) {
        /* only possible for input yajl rejects anyway */
        cx->err = "syntax error";
        return NULL;
    }

    p = cx->pos;
    memcpy(p, data, len);
    cx->pos += len;

    return p;
}


static int
ngx_rbcs_json_set_value(ngx_rbcs_json_ctx_t *cx, int type,
    const u_char *data, size_t len)
{
    ngx_rbcs_json_field_t  *f;

    if (cx->depth != 1) {
        if (cx->depth == 0) {
            cx->err = "not an object";
            return 0;
        }

        return 1;
    }

    /* yajl calls map_key before each member's value */

    f = &cx->fields[cx->nfields - 1];

    if (data) {
        f->value = ngx_rbcs_json_copy(cx, data, len);
        if (f->value == NULL) {
            return 0;
        }

        f->value_len = len;
    }

    f->type = type;

    return 1;
}


static int
ngx_rbcs_json_push(ngx_rbcs_json_ctx_t *cx)
{
    if (cx->depth >= NGX_RBCS_JSON_MAX_DEPTH) {
        cx->err = "nesting too deep";
        return 0;
    }

    cx->depth++;
    cx->mark[cx->depth] = cx->nkeys;

    return 1;
}


static int
ngx_rbcs_json_null(void *ctx)
{
    return ngx_rbcs_json_set_value(ctx, NGX_RBCS_JSON_NULL, NULL, 0);
}


static int
ngx_rbcs_json_boolean(void *ctx, int b)
{
    return ngx_rbcs_json_set_value(ctx,
                                   b ? NGX_RBCS_JSON_TRUE
                                     : NGX_RBCS_JSON_FALSE,
                                   NULL, 0);
}


static int
ngx_rbcs_json_number(void *ctx, const char *s, size_t len)
{
    return ngx_rbcs_json_set_value(ctx, NGX_RBCS_JSON_NUMBER,
                                   (const u_char *) s, len);
}


static int
ngx_rbcs_json_string(void *ctx, const unsigned char *s, size_t len)
{
    return ngx_rbcs_json_set_value(ctx, NGX_RBCS_JSON_STRING, s, len);
}


static int
ngx_rbcs_json_start_map(void *ctx)
{
    ngx_rbcs_json_ctx_t  *cx = ctx;

    if (cx->depth == 1
        && !ngx_rbcs_json_set_value(cx, NGX_RBCS_JSON_OBJECT, NULL, 0))
    {
        return 0;
    }

    return ngx_rbcs_json_push(cx);
}


static int
ngx_rbcs_json_map_key(void *ctx, const unsigned char *s, size_t len)
{
    ngx_rbcs_json_ctx_t  *cx = ctx;

    const u_char           *key;
    ngx_rbcs_json_field_t  *f;

    if (cx->nkeys == cx->max_keys
        || (cx->depth == 1 && cx->nfields == cx->max_keys))
    {
        /* only possible for input yajl rejects anyway */
        cx->err = "syntax error";
        return 0;
    }

    key = ngx_rbcs_json_copy(cx, s, len);
    if (key == NULL) {
        return 0;
    }

    cx->keys[cx->nkeys].data = key;
    cx->keys[cx->nkeys].len = len;
    cx->nkeys++;

    if (cx->depth == 1) {
        f = &cx->fields[cx->nfields++];

        f->key = key;
        f->key_len = len;
        f->type = 0;
        f->value = NULL;
        f->value_len = 0;
    }

    return 1;
}


static int
ngx_rbcs_json_end_map(void *ctx)
{
    ngx_rbcs_json_ctx_t  *cx = ctx;

    size_t                i, n;
    ngx_rbcs_json_key_t  *k;

    /* duplicates sort next to each other: O(n log n) for any object */

    n = cx->nkeys - cx->mark[cx->depth];

    if (n > 1) {
        /* only here: cx->keys is NULL while no object had a key */
        k = cx->keys + cx->mark[cx->depth];

        qsort(k, n, sizeof(ngx_rbcs_json_key_t), ngx_rbcs_json_key_cmp);

        for (i = 1; i < n; i++) {
            if (ngx_rbcs_json_key_cmp(&k[i - 1], &k[i]) == 0) {
                cx->err = "duplicate key";
                return 0;
            }
        }
    }

    /* the keys of the enclosing object are contiguous again */

    cx->nkeys -= n;

    if (--cx->depth == 0) {
        cx->end = yajl_get_bytes_consumed(cx->handle);
    }

    return 1;
}


static int
ngx_rbcs_json_start_array(void *ctx)
{
    ngx_rbcs_json_ctx_t  *cx = ctx;

    if (cx->depth == 0) {
        cx->err = "not an object";
        return 0;
    }

    if (cx->depth == 1
        && !ngx_rbcs_json_set_value(cx, NGX_RBCS_JSON_ARRAY, NULL, 0))
    {
        return 0;
    }

    return ngx_rbcs_json_push(cx);
}


static int
ngx_rbcs_json_end_array(void *ctx)
{
    ngx_rbcs_json_ctx_t  *cx = ctx;

    cx->depth--;

    return 1;
}


/* by length, then bytes: enough to bring equal keys together */

static int
ngx_rbcs_json_key_cmp(const void *one, const void *two)
{
    const ngx_rbcs_json_key_t  *a = one;
    const ngx_rbcs_json_key_t  *b = two;

    if (a->len != b->len) {
        return (a->len < b->len) ? -1 : 1;
    }

    return a->len ? memcmp(a->data, b->data, a->len) : 0;
}
