
/*
 * RBCS: strict JSON request body parsing (yajl 2) and JSON string escaping.
 *
 * Parsing is done in two passes:
 *
 *   1) ngx_rbcs_json_scan(): a small lexer over the raw bytes that enforces
 *      what yajl does not check strictly: a single top-level object with
 *      only whitespace around it, strict UTF-8 (RFC 3629), no raw control
 *      characters in strings, valid escapes, properly paired surrogate
 *      escapes, the nesting limit.  It also counts the keys, which gives
 *      the exact sizes of the buffers needed by the second pass.
 *
 *   2) yajl callback parser: full grammar validation, unescaping of keys
 *      and strings, raw number text (yajl_number), duplicate key detection
 *      per object (keys of an object are sorted when it ends).
 */


#include <string.h>

#include <yajl/yajl_parse.h>

#include "ngx_rbcs_json.h"


/* small objects are checked for duplicates pairwise instead of sorting */
#define NGX_RBCS_JSON_SMALL_OBJECT  8


typedef struct {
    size_t                   nkeys;      /* ':' anywhere */
    size_t                   ntop;       /* ':' in the top-level object */
} ngx_rbcs_json_scan_t;


typedef struct {
    const u_char            *data;
    size_t                   len;
} ngx_rbcs_json_key_t;


typedef struct {
    ngx_rbcs_json_field_t   *fields;
    size_t                   nfields;
    size_t                   max_fields;

    ngx_rbcs_json_key_t     *keys;       /* keys of all open objects */
    size_t                   nkeys;
    size_t                   max_keys;

    u_char                  *pos;        /* copies of keys and values */
    u_char                  *last;

    size_t                   depth;
    size_t                   mark[NGX_RBCS_JSON_MAX_DEPTH + 2];

    const char              *err;
} ngx_rbcs_json_ctx_t;


static int ngx_rbcs_json_scan(const u_char *p, size_t len,
    ngx_rbcs_json_scan_t *sc, const char **err);
static int ngx_rbcs_json_hex4(const u_char *p, const u_char *end);
static const u_char *ngx_rbcs_json_copy(ngx_rbcs_json_ctx_t *cx,
    const u_char *data, size_t len);
static int ngx_rbcs_json_set_value(ngx_rbcs_json_ctx_t *cx, int type,
    const u_char *data, size_t len);
static int ngx_rbcs_json_push(ngx_rbcs_json_ctx_t *cx);
static int ngx_rbcs_json_key_cmp(const ngx_rbcs_json_key_t *a,
    const ngx_rbcs_json_key_t *b);
static void ngx_rbcs_json_sift(ngx_rbcs_json_key_t *k, size_t root,
    size_t n);
static int ngx_rbcs_json_has_dup(ngx_rbcs_json_key_t *k, size_t n);

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
    int                    rc;
    u_char                *mem;
    size_t                 size;
    yajl_handle            h;
    yajl_status            st;
    const char            *reason;
    ngx_rbcs_json_ctx_t    cx;
    ngx_rbcs_json_scan_t   sc;

    *fields = NULL;
    *nfields = 0;

    if (err) {
        *err = NULL;
    }

    if (body == NULL) {
        body = ngx_rbcs_json_empty;
        len = 0;
    }

    if (len > SIZE_MAX / (sizeof(ngx_rbcs_json_field_t)
                          + sizeof(ngx_rbcs_json_key_t) + 1))
    {
        reason = "body too large";
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    /* pass 1: strict lexical checks and sizes */

    if (ngx_rbcs_json_scan(body, len, &sc, &reason) != NGX_RBCS_JSON_OK) {
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    /*
     * one allocation: fields, then the key stack, then room for copies
     * of keys and top-level values; unescaped text is never longer than
     * its source and the copied tokens do not overlap, so len bytes
     * are enough
     */

    size = sc.ntop * sizeof(ngx_rbcs_json_field_t)
           + sc.nkeys * sizeof(ngx_rbcs_json_key_t);

    if (sc.nkeys) {
        size += len;
    }

    mem = NULL;

    if (size) {
        mem = alloc(ctx, size);
        if (mem == NULL) {
            reason = "out of memory";
            rc = NGX_RBCS_JSON_ENOMEM;
            goto failed;
        }
    }

    cx.nfields = 0;
    cx.max_fields = sc.ntop;
    cx.nkeys = 0;
    cx.max_keys = sc.nkeys;
    cx.depth = 0;
    cx.err = NULL;

    if (mem) {
        cx.fields = (ngx_rbcs_json_field_t *) mem;
        cx.keys = (ngx_rbcs_json_key_t *) (cx.fields + sc.ntop);
        cx.pos = (u_char *) (cx.keys + sc.nkeys);
        cx.last = mem + size;

    } else {
        cx.fields = NULL;
        cx.keys = NULL;
        cx.pos = NULL;
        cx.last = NULL;
    }

    /* pass 2: yajl */

    h = yajl_alloc(&ngx_rbcs_json_callbacks, NULL, &cx);
    if (h == NULL) {
        reason = "out of memory";
        rc = NGX_RBCS_JSON_ENOMEM;
        goto failed;
    }

    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    st = yajl_parse(h, body, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok) {
        reason = cx.err ? cx.err : "syntax error";
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    if (cx.depth != 0) {
        /* cannot happen after a successful complete parse */
        reason = "syntax error";
        rc = NGX_RBCS_JSON_EINVALID;
        goto failed;
    }

    *fields = cx.nfields ? cx.fields : NULL;
    *nfields = cx.nfields;

    return NGX_RBCS_JSON_OK;

failed:

    if (err) {
        *err = reason;
    }

    return rc;
}


static int
ngx_rbcs_json_scan(const u_char *p, size_t len, ngx_rbcs_json_scan_t *sc,
    const char **err)
{
    int            cp;
    u_char         c;
    size_t         depth, n;
    unsigned       started;
    const u_char  *end;

    sc->nkeys = 0;
    sc->ntop = 0;

    end = p + len;
    depth = 0;
    started = 0;

    while (p < end) {
        c = *p;

        switch (c) {

        case ' ':
        case '\t':
        case '\n':
        case '\r':
            p++;
            continue;

        case '{':
        case '[':
            if (depth == 0) {
                if (started) {
                    goto trailing;
                }

                if (c != '{') {
                    goto not_object;
                }

                started = 1;
            }

            if (++depth > NGX_RBCS_JSON_MAX_DEPTH) {
                *err = "nesting too deep";
                return NGX_RBCS_JSON_EINVALID;
            }

            p++;
            continue;

        case '}':
        case ']':
            if (depth == 0) {
                goto outside;
            }

            depth--;
            p++;
            continue;

        case ':':
            if (depth == 0) {
                goto outside;
            }

            sc->nkeys++;

            if (depth == 1) {
                sc->ntop++;
            }

            p++;
            continue;

        case '"':
            if (depth == 0) {
                goto outside;
            }

            p++;
            break;

        default:
            if (c >= 0x80 && ngx_rbcs_json_utf8_len(p, end - p) == 0) {
                goto invalid_utf8;
            }

            if (depth == 0) {
                goto outside;
            }

            if (c < 0x20 || c >= 0x7f) {
                /* control characters, "\v", "\f", non-ASCII */
                *err = "syntax error";
                return NGX_RBCS_JSON_EINVALID;
            }

            /* literals, numbers, commas: grammar is checked by yajl */

            p++;
            continue;
        }

        /* inside a string */

        for ( ;; ) {

            if (p == end) {
                *err = "unterminated string";
                return NGX_RBCS_JSON_EINVALID;
            }

            c = *p;

            if (c == '"') {
                p++;
                break;
            }

            if (c < 0x20) {
                *err = "control character in string";
                return NGX_RBCS_JSON_EINVALID;
            }

            if (c >= 0x80) {
                n = ngx_rbcs_json_utf8_len(p, end - p);
                if (n == 0) {
                    goto invalid_utf8;
                }

                p += n;
                continue;
            }

            if (c != '\\') {
                p++;
                continue;
            }

            if (end - p < 2) {
                *err = "unterminated string";
                return NGX_RBCS_JSON_EINVALID;
            }

            switch (p[1]) {

            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;

            case 'u':
                break;

            default:
                goto invalid_escape;
            }

            cp = ngx_rbcs_json_hex4(p + 2, end);
            if (cp < 0) {
                goto invalid_escape;
            }

            p += 6;

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                goto lone_surrogate;
            }

            if (cp < 0xd800 || cp > 0xdbff) {
                continue;
            }

            /* a high surrogate must be followed by a low one */

            if (end - p < 2 || p[0] != '\\' || p[1] != 'u') {
                goto lone_surrogate;
            }

            cp = ngx_rbcs_json_hex4(p + 2, end);
            if (cp < 0) {
                goto invalid_escape;
            }

            if (cp < 0xdc00 || cp > 0xdfff) {
                goto lone_surrogate;
            }

            p += 6;
        }
    }

    if (!started) {
        *err = "empty body";
        return NGX_RBCS_JSON_EINVALID;
    }

    if (depth != 0) {
        *err = "unexpected end of body";
        return NGX_RBCS_JSON_EINVALID;
    }

    return NGX_RBCS_JSON_OK;

outside:

    if (started) {
        goto trailing;
    }

not_object:

    *err = "not an object";
    return NGX_RBCS_JSON_EINVALID;

trailing:

    *err = "trailing data after object";
    return NGX_RBCS_JSON_EINVALID;

invalid_utf8:

    *err = "invalid UTF-8";
    return NGX_RBCS_JSON_EINVALID;

invalid_escape:

    *err = "invalid escape in string";
    return NGX_RBCS_JSON_EINVALID;

lone_surrogate:

    *err = "lone surrogate escape";
    return NGX_RBCS_JSON_EINVALID;
}


static int
ngx_rbcs_json_hex4(const u_char *p, const u_char *end)
{
    int     v, i;
    u_char  c;

    if (end - p < 4) {
        return -1;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = (v << 4) | (c - '0');

        } else {
            c |= 0x20;

            if (c >= 'a' && c <= 'f') {
                v = (v << 4) | (c - 'a' + 10);

            } else {
                return -1;
            }
        }
    }

    return v;
}


size_t
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

    if (cx->nfields == 0 || cx->fields[cx->nfields - 1].type != 0) {
        cx->err = "syntax error";
        return 0;
    }

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
        || (cx->depth == 1 && cx->nfields == cx->max_fields))
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

    size_t  mark;

    if (cx->depth == 0) {
        cx->err = "syntax error";
        return 0;
    }

    mark = cx->mark[cx->depth];

    /* fewer than two keys: none to compare, and keys is NULL for "{}" */

    if (cx->nkeys - mark > 1
        && ngx_rbcs_json_has_dup(cx->keys + mark, cx->nkeys - mark))
    {
        cx->err = "duplicate key";
        return 0;
    }

    /* the keys of the enclosing object are contiguous again */

    cx->nkeys = mark;
    cx->depth--;

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

    if (cx->depth == 0) {
        cx->err = "syntax error";
        return 0;
    }

    cx->depth--;

    return 1;
}


static int
ngx_rbcs_json_key_cmp(const ngx_rbcs_json_key_t *a,
    const ngx_rbcs_json_key_t *b)
{
    int     rc;
    size_t  n;

    n = (a->len < b->len) ? a->len : b->len;

    rc = n ? memcmp(a->data, b->data, n) : 0;

    if (rc != 0) {
        return rc;
    }

    return (a->len > b->len) - (a->len < b->len);
}


static void
ngx_rbcs_json_sift(ngx_rbcs_json_key_t *k, size_t root, size_t n)
{
    size_t               child;
    ngx_rbcs_json_key_t  tmp;

    for ( ;; ) {
        child = 2 * root + 1;

        if (child >= n) {
            return;
        }

        if (child + 1 < n && ngx_rbcs_json_key_cmp(&k[child], &k[child + 1])
                             < 0)
        {
            child++;
        }

        if (ngx_rbcs_json_key_cmp(&k[root], &k[child]) >= 0) {
            return;
        }

        tmp = k[root];
        k[root] = k[child];
        k[child] = tmp;

        root = child;
    }
}


static int
ngx_rbcs_json_has_dup(ngx_rbcs_json_key_t *k, size_t n)
{
    size_t               i, j;
    ngx_rbcs_json_key_t  tmp;

    if (n < 2) {
        return 0;
    }

    if (n <= NGX_RBCS_JSON_SMALL_OBJECT) {
        for (i = 0; i < n; i++) {
            for (j = i + 1; j < n; j++) {
                if (k[i].len == k[j].len
                    && (k[i].len == 0
                        || memcmp(k[i].data, k[j].data, k[i].len) == 0))
                {
                    return 1;
                }
            }
        }

        return 0;
    }

    /* heapsort: O(n log n) worst case, in place, no recursion */

    for (i = n / 2; i > 0; i--) {
        ngx_rbcs_json_sift(k, i - 1, n);
    }

    for (i = n - 1; i > 0; i--) {
        tmp = k[0];
        k[0] = k[i];
        k[i] = tmp;

        ngx_rbcs_json_sift(k, 0, i);
    }

    for (i = 1; i < n; i++) {
        if (ngx_rbcs_json_key_cmp(&k[i - 1], &k[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


size_t
ngx_rbcs_json_escape_len(const u_char *src, size_t len)
{
    u_char         c;
    size_t         size, n;
    const u_char  *end;

    size = 0;
    end = src + len;

    while (src < end) {
        c = *src;

        if (c >= 0x80) {
            n = ngx_rbcs_json_utf8_len(src, end - src);

            if (n == 0) {
                size += sizeof("\\ufffd") - 1;
                src++;

            } else {
                size += n;
                src += n;
            }

            continue;
        }

        src++;

        switch (c) {

        case '"':
        case '\\':
        case '\b':
        case '\f':
        case '\n':
        case '\r':
        case '\t':
            size += 2;
            break;

        default:
            size += (c < 0x20) ? sizeof("\\u00XX") - 1 : 1;
        }
    }

    return size;
}


u_char *
ngx_rbcs_json_escape(u_char *dst, const u_char *src, size_t len)
{
    u_char         c;
    size_t         n;
    const u_char  *end;

    static const u_char  hex[] = "0123456789abcdef";

    end = src + len;

    while (src < end) {
        c = *src;

        if (c >= 0x80) {
            n = ngx_rbcs_json_utf8_len(src, end - src);

            if (n == 0) {
                memcpy(dst, "\\ufffd", sizeof("\\ufffd") - 1);
                dst += sizeof("\\ufffd") - 1;
                src++;

            } else {
                memcpy(dst, src, n);
                dst += n;
                src += n;
            }

            continue;
        }

        src++;

        switch (c) {

        case '"':
        case '\\':
            *dst++ = '\\';
            *dst++ = c;
            break;

        case '\b':
            *dst++ = '\\';
            *dst++ = 'b';
            break;

        case '\f':
            *dst++ = '\\';
            *dst++ = 'f';
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        case '\r':
            *dst++ = '\\';
            *dst++ = 'r';
            break;

        case '\t':
            *dst++ = '\\';
            *dst++ = 't';
            break;

        default:
            if (c < 0x20) {
                *dst++ = '\\';
                *dst++ = 'u';
                *dst++ = '0';
                *dst++ = '0';
                *dst++ = hex[c >> 4];
                *dst++ = hex[c & 0x0f];

            } else {
                *dst++ = c;
            }
        }
    }

    return dst;
}
