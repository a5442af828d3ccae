
/*
 * Unit tests for src/ngx_rbcs_json.c, TAP output.
 *
 *     make -f t/unit/Makefile.json && ./build/unit/test_json
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_rbcs_json.h"


#define T_MAX_BLOCKS  16


typedef struct {
    void    *block[T_MAX_BLOCKS];
    size_t   nblocks;
    size_t   calls;
    int      fail;
} t_pool_t;


typedef struct {
    int                     rc;
    const char             *err;
    ngx_rbcs_json_field_t  *fields;
    size_t                  nfields;
} t_result_t;


static void *t_alloc(void *ctx, size_t size);
static void t_pool_reset(t_pool_t *pool);
static void t_parse(const void *body, size_t len, t_result_t *r);
static void t_parse_str(const char *body, t_result_t *r);
static int t_ok(int cond, const char *name);
static void t_show(const char *what, const void *data, size_t len);
static int t_is_mem(const void *got, size_t got_len, const void *exp,
    size_t exp_len, const char *name);
static void t_valid(const char *body, size_t nfields, const char *name);
static void t_invalid(const void *body, size_t len, const char *name);
static void t_invalid_str(const char *body, const char *name);
static void t_invalid_reason(const char *body, const char *reason,
    const char *name);
static void t_field(t_result_t *r, size_t i, const char *key, int type,
    const void *value, size_t value_len, const char *name);
static char *t_nested(size_t depth, int arrays);
static char *t_many_keys(size_t n, int dup);
static void t_escape(const void *src, size_t len, const char *expected,
    const char *name);
static void t_bench(void);

static void test_transfer(void);
static void test_literals(void);
static void test_nested_types(void);
static void test_not_object(void);
static void test_whitespace(void);
static void test_duplicates(void);
static void test_depth(void);
static void test_utf8(void);
static void test_surrogates(void);
static void test_unescape(void);
static void test_control(void);
static void test_syntax(void);
static void test_many_keys(void);
static void test_enomem(void);
static void test_escape(void);


static t_pool_t  t_pool;
static int       t_run;
static int       t_failed;


static void *
t_alloc(void *ctx, size_t size)
{
    void      *p;
    t_pool_t  *pool = ctx;

    pool->calls++;

    if (pool->fail || pool->nblocks == T_MAX_BLOCKS) {
        return NULL;
    }

    /* exact size, so that valgrind catches any overrun */
    p = malloc(size);
    if (p == NULL) {
        return NULL;
    }

    pool->block[pool->nblocks++] = p;

    return p;
}


static void
t_pool_reset(t_pool_t *pool)
{
    size_t  i;

    for (i = 0; i < pool->nblocks; i++) {
        free(pool->block[i]);
    }

    pool->nblocks = 0;
    pool->calls = 0;
    pool->fail = 0;
}


/* parses a private copy of exactly len bytes (no terminating NUL) */

static void
t_parse(const void *body, size_t len, t_result_t *r)
{
    u_char  *copy;

    t_pool_reset(&t_pool);

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        fprintf(stderr, "malloc failed\n");
        exit(2);
    }

    memcpy(copy, body, len);

    r->err = "untouched";
    r->fields = (ngx_rbcs_json_field_t *) 1;
    r->nfields = 12345;

    r->rc = ngx_rbcs_json_parse_object(copy, len, t_alloc, &t_pool,
                                       &r->fields, &r->nfields, &r->err);

    /* the results must not refer to the body */
    memset(copy, 'X', len);
    free(copy);

    if (t_pool.calls > 1) {
        printf("# allocator called %zu times\n", t_pool.calls);
        r->rc = 100;
    }
}


static void
t_parse_str(const char *body, t_result_t *r)
{
    t_parse(body, strlen(body), r);
}


static int
t_ok(int cond, const char *name)
{
    t_run++;

    if (!cond) {
        t_failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", t_run, name);

    return cond;
}


static void
t_show(const char *what, const void *data, size_t len)
{
    size_t         i;
    const u_char  *p = data;

    printf("# %s: ", what);

    if (data == NULL) {
        printf("NULL\n");
        return;
    }

    for (i = 0; i < len && i < 80; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            putchar(p[i]);

        } else {
            printf("\\x%02x", p[i]);
        }
    }

    printf(" (%zu bytes)\n", len);
}


static int
t_is_mem(const void *got, size_t got_len, const void *exp, size_t exp_len,
    const char *name)
{
    int  cond;

    if (got == NULL || exp == NULL) {
        cond = (got == exp);

    } else {
        cond = (got_len == exp_len && memcmp(got, exp, exp_len) == 0);
    }

    if (!t_ok(cond, name)) {
        t_show("     got", got, got_len);
        t_show("expected", exp, exp_len);
    }

    return cond;
}


static void
t_valid(const char *body, size_t nfields, const char *name)
{
    t_result_t  r;

    t_parse_str(body, &r);

    if (!t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == nfields
              && r.err == NULL, name))
    {
        printf("# rc %d, nfields %zu (expected %zu), err \"%s\"\n",
               r.rc, r.nfields, nfields, r.err ? r.err : "(null)");
    }
}


static void
t_invalid(const void *body, size_t len, const char *name)
{
    t_result_t  r;

    t_parse(body, len, &r);

    if (!t_ok(r.rc == NGX_RBCS_JSON_EINVALID && r.err != NULL
              && r.fields == NULL && r.nfields == 0, name))
    {
        printf("# rc %d, nfields %zu, err \"%s\"\n",
               r.rc, r.nfields, r.err ? r.err : "(null)");

    } else {
        printf("# reason: %s\n", r.err);
    }
}


static void
t_invalid_str(const char *body, const char *name)
{
    t_invalid(body, strlen(body), name);
}


static void
t_invalid_reason(const char *body, const char *reason, const char *name)
{
    t_result_t  r;

    t_parse_str(body, &r);

    if (!t_ok(r.rc == NGX_RBCS_JSON_EINVALID && r.err != NULL
              && strcmp(r.err, reason) == 0, name))
    {
        printf("# rc %d, err \"%s\", expected \"%s\"\n",
               r.rc, r.err ? r.err : "(null)", reason);
    }
}


static void
t_field(t_result_t *r, size_t i, const char *key, int type,
    const void *value, size_t value_len, const char *name)
{
    char                    buf[256];
    ngx_rbcs_json_field_t  *f;

    if (r->rc != NGX_RBCS_JSON_OK || i >= r->nfields) {
        snprintf(buf, sizeof(buf), "%s: field %zu present", name, i);
        t_ok(0, buf);
        return;
    }

    f = &r->fields[i];

    snprintf(buf, sizeof(buf), "%s: key", name);
    t_is_mem(f->key, f->key_len, key, strlen(key), buf);

    snprintf(buf, sizeof(buf), "%s: type", name);
    if (!t_ok(f->type == type, buf)) {
        printf("# got type %d, expected %d\n", f->type, type);
    }

    snprintf(buf, sizeof(buf), "%s: value", name);
    t_is_mem(f->value, f->value_len, value, value_len, buf);
}


/* {"a":{"a":...{}...}} with depth levels, or {"a":[[...[]...]]} */

static char *
t_nested(size_t depth, int arrays)
{
    char    *s, *p;
    size_t   i;

    s = malloc(depth * 6 + 16);
    if (s == NULL) {
        exit(2);
    }

    p = s;
    *p++ = '{';

    for (i = 1; i < depth; i++) {
        if (arrays) {
            if (i == 1) {
                p += sprintf(p, "\"a\":");
            }

            *p++ = '[';

        } else {
            p += sprintf(p, "\"a\":{");
        }
    }

    for (i = 1; i < depth; i++) {
        *p++ = arrays ? ']' : '}';
    }

    *p++ = '}';
    *p = '\0';

    return s;
}


static char *
t_many_keys(size_t n, int dup)
{
    char    *s, *p;
    size_t   i;

    s = malloc(n * 16 + 16);
    if (s == NULL) {
        exit(2);
    }

    p = s;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        /* with dup, key 4321 repeats key 17 */
        p += sprintf(p, "%s\"k%zu\":%zu", i ? "," : "",
                     (dup && i == 4321) ? (size_t) 17 : i, i);
    }

    *p++ = '}';
    *p = '\0';

    return s;
}


static void
t_escape(const void *src, size_t len, const char *expected, const char *name)
{
    u_char  *buf, *end;
    size_t   n;

    n = ngx_rbcs_json_escape_len(src, len);

    buf = malloc(n ? n : 1);
    if (buf == NULL) {
        exit(2);
    }

    end = ngx_rbcs_json_escape(buf, src, len);

    if (!t_ok((size_t) (end - buf) == n, name)) {
        printf("# escape_len %zu, written %zu\n", n, (size_t) (end - buf));
    }

    t_is_mem(buf, end - buf, expected, strlen(expected), name);

    free(buf);
}


static void
test_transfer(void)
{
    t_result_t   r;
    const char  *body;

    body = "{\"from\":\"acc-1\",\"to\":\"acc-2\",\"amount\":\"10.50\","
           "\"fee\":10.50,\"zero\":-0,\"exp\":1e5,\"neg\":-1.25E-3,"
           "\"currency\":\"EUR\",\"empty\":\"\",\"big\":"
           "123456789012345678901234567890}";

    t_parse_str(body, &r);

    if (!t_ok(r.rc == NGX_RBCS_JSON_OK && r.err == NULL && r.nfields == 10,
              "transfer body parses"))
    {
        printf("# rc %d, nfields %zu, err \"%s\"\n",
               r.rc, r.nfields, r.err ? r.err : "(null)");
        return;
    }

    t_field(&r, 0, "from", NGX_RBCS_JSON_STRING, "acc-1", 5, "from");
    t_field(&r, 1, "to", NGX_RBCS_JSON_STRING, "acc-2", 5, "to");
    t_field(&r, 2, "amount", NGX_RBCS_JSON_STRING, "10.50", 5,
            "string amount");
    t_field(&r, 3, "fee", NGX_RBCS_JSON_NUMBER, "10.50", 5,
            "number 10.50 kept raw");
    t_field(&r, 4, "zero", NGX_RBCS_JSON_NUMBER, "-0", 2,
            "number -0 kept raw");
    t_field(&r, 5, "exp", NGX_RBCS_JSON_NUMBER, "1e5", 3,
            "number 1e5 kept raw");
    t_field(&r, 6, "neg", NGX_RBCS_JSON_NUMBER, "-1.25E-3", 8,
            "number -1.25E-3 kept raw");
    t_field(&r, 7, "currency", NGX_RBCS_JSON_STRING, "EUR", 3, "currency");
    t_field(&r, 8, "empty", NGX_RBCS_JSON_STRING, "", 0, "empty string");
    t_field(&r, 9, "big", NGX_RBCS_JSON_NUMBER,
            "123456789012345678901234567890", 30, "big number kept raw");

    t_ok(r.fields[8].value != NULL, "empty string value is not NULL");
}


static void
test_literals(void)
{
    t_result_t  r;

    t_parse_str("{\"t\":true,\"f\":false,\"n\":null}", &r);

    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 3, "literals parse");
    t_field(&r, 0, "t", NGX_RBCS_JSON_TRUE, NULL, 0, "true");
    t_field(&r, 1, "f", NGX_RBCS_JSON_FALSE, NULL, 0, "false");
    t_field(&r, 2, "n", NGX_RBCS_JSON_NULL, NULL, 0, "null");
}


static void
test_nested_types(void)
{
    t_result_t  r;

    t_parse_str("{\"o\":{\"x\":{\"y\":[1,{\"z\":\"s\"}]}},\"a\":[1,\"2\",[]],"
                "\"e\":{},\"ea\":[],\"last\":1}", &r);

    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 5, "nested parses");
    t_field(&r, 0, "o", NGX_RBCS_JSON_OBJECT, NULL, 0, "object type");
    t_field(&r, 1, "a", NGX_RBCS_JSON_ARRAY, NULL, 0, "array type");
    t_field(&r, 2, "e", NGX_RBCS_JSON_OBJECT, NULL, 0, "empty object");
    t_field(&r, 3, "ea", NGX_RBCS_JSON_ARRAY, NULL, 0, "empty array");
    t_field(&r, 4, "last", NGX_RBCS_JSON_NUMBER, "1", 1,
            "field after nested");
}


static void
test_not_object(void)
{
    t_invalid("", 0, "empty body");
    t_invalid_str(" \t\r\n ", "whitespace only");
    t_invalid_str("[]", "array at top level");
    t_invalid_str("[{}]", "object in array at top level");
    t_invalid_str("\"x\"", "string at top level");
    t_invalid_str("1", "number at top level");
    t_invalid_str("true", "true at top level");
    t_invalid_str("null", "null at top level");
    t_invalid_str("{}{}", "two objects");
    t_invalid_str("{} {\"a\":1}", "two objects with space");
    t_invalid_str("{}x", "trailing garbage");
    t_invalid_str("{\"a\":1}]", "trailing bracket");
    t_invalid_str("{\"a\":1} 1", "trailing number");
    t_invalid_str("{\"a\":1}\"", "trailing quote");
    t_invalid("{}\0", 3, "trailing NUL byte");
    t_invalid_str("\xef\xbb\xbf{}", "UTF-8 BOM");
    t_invalid_reason("[]", "not an object", "reason: not an object");
    t_invalid_reason("{}{}", "trailing data after object",
                     "reason: trailing data");
}


static void
test_whitespace(void)
{
    t_valid("{}", 0, "{} is valid");
    t_valid(" \t\r\n{ \t\r\n} \t\r\n", 0, "{} with whitespace");
    t_valid("{\"a\":1}\n", 1, "trailing newline ok");
    t_valid("\r\n {\n \"a\" : 1 ,\n \"b\" :\t\"x\" \n}  \r\n", 2,
            "whitespace everywhere");
    t_invalid_str("{}\v", "vertical tab is not JSON whitespace");
    t_invalid_str("{\f}", "form feed is not JSON whitespace");
}


static void
test_duplicates(void)
{
    t_invalid_reason("{\"a\":1,\"a\":2}", "duplicate key", "duplicate");
    t_invalid_str("{\"a\":1,\"b\":2,\"a\":\"x\"}", "duplicate, other types");
    t_invalid_str("{\"x\":{\"a\":1,\"a\":2}}", "duplicate nested");
    t_invalid_str("{\"x\":[1,{\"b\":{\"a\":1,\"a\":2}}]}",
                  "duplicate nested in array");
    t_invalid_str("{\"a\":1,\"\\u0061\":2}", "duplicate via escape");
    t_invalid_str("{\"\\u00e9\":1,\"\xc3\xa9\":2}",
                  "duplicate via non-ASCII escape");
    t_invalid_str("{\"\\/\":1,\"/\":2}", "duplicate via \\/");
    t_invalid_str("{\"\":1,\"\":2}", "duplicate empty key");
    t_invalid_str("{\"a\":{},\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,"
                  "\"g\":1,\"h\":1,\"i\":1,\"j\":1,\"a\":[]}",
                  "duplicate in larger object");
    t_invalid_str("{\"a\":{\"x\":1},\"b\":2,\"b\":3}",
                  "duplicate after nested object");
    t_valid("{\"a\":{\"a\":{\"a\":1}}}", 1, "same key at different levels");
    t_valid("{\"a\":{\"x\":1},\"b\":{\"x\":1}}", 2,
            "same key in sibling objects");
    t_valid("{\"l\":[{\"x\":1},{\"x\":2}]}", 1,
            "same key in objects of an array");
    t_valid("{\"a\":1,\"A\":2,\"a \":3,\"\":4}", 4,
            "keys differing in case/space are distinct");
    t_valid("{\"a\\u0000\":1,\"a\":2}", 2, "key with NUL is distinct");
    t_valid("{\"ab\":1,\"a\":2,\"abc\":3,\"b\":4,\"ba\":5,\"c\":6,\"ca\":7,"
            "\"cb\":8,\"d\":9,\"e\":10}", 10, "prefix keys are distinct");
}


static void
test_depth(void)
{
    char        *s;
    t_result_t   r;

    s = t_nested(32, 0);
    t_parse_str(s, &r);
    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 1
         && r.fields[0].type == NGX_RBCS_JSON_OBJECT,
         "32 nested objects ok");
    free(s);

    s = t_nested(33, 0);
    t_invalid_reason(s, "nesting too deep", "33 nested objects rejected");
    free(s);

    s = t_nested(32, 1);
    t_parse_str(s, &r);
    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 1
         && r.fields[0].type == NGX_RBCS_JSON_ARRAY,
         "object + 31 nested arrays ok");
    free(s);

    s = t_nested(33, 1);
    t_invalid_reason(s, "nesting too deep", "object + 32 arrays rejected");
    free(s);

    s = t_nested(1000, 0);
    t_invalid_str(s, "1000 nested objects rejected");
    free(s);

    s = t_nested(31, 0);
    t_valid(s, 1, "31 nested objects ok");
    free(s);
}


static void
test_utf8(void)
{
    t_valid("{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"
            "\xed\x9f\xbf\xee\x80\x80\"}", 1, "valid multibyte UTF-8");
    t_valid("{\"\xe2\x82\xac\":1}", 1, "valid UTF-8 in key");

    t_invalid_str("{\"k\":\"\xc0\x80\"}", "overlong C0 80");
    t_invalid_str("{\"k\":\"\xc1\xbf\"}", "overlong C1 BF");
    t_invalid_str("{\"k\":\"\xe0\x80\x80\"}", "overlong E0 80 80");
    t_invalid_str("{\"k\":\"\xe0\x9f\xbf\"}", "overlong E0 9F BF");
    t_invalid_str("{\"k\":\"\xf0\x80\x80\x80\"}", "overlong F0 80 80 80");
    t_invalid_str("{\"k\":\"\xed\xa0\x80\"}", "CESU surrogate ED A0 80");
    t_invalid_str("{\"k\":\"\xed\xbf\xbf\"}", "CESU surrogate ED BF BF");
    t_invalid_str("{\"k\":\"\xf4\x90\x80\x80\"}", "F4 90 80 80 > U+10FFFF");
    t_invalid_str("{\"k\":\"\xf5\x80\x80\x80\"}", "F5 lead byte");
    t_invalid_str("{\"k\":\"\xff\"}", "FF byte");
    t_invalid_str("{\"k\":\"\x80\"}", "lone continuation byte 80");
    t_invalid_str("{\"k\":\"\xc3\"}", "truncated 2-byte sequence");
    t_invalid_str("{\"k\":\"\xe2\x82\"}", "truncated 3-byte sequence");
    t_invalid_str("{\"k\":\"\xe2\x28\xa1\"}", "bad continuation");
    t_invalid("{\"k\":\"\xe2\x82", 8, "truncated multibyte at end of body");
    t_invalid("{\"k\":1}\xc3", 8, "truncated multibyte after object");
    t_invalid_str("{\"\xc0\x80\":1}", "overlong in key");
    t_invalid_str("{\"k\":[\"\xed\xa0\x80\"]}", "surrogate nested in array");
    t_invalid_reason("{\"k\":\"\xc0\x80\"}", "invalid UTF-8",
                     "reason: invalid UTF-8");
    t_invalid_str("{\"k\":\xc3\xa9}", "valid UTF-8 outside string");
}


static void
test_surrogates(void)
{
    t_result_t  r;

    t_invalid_reason("{\"k\":\"\\ud800\"}", "lone surrogate escape",
                     "high surrogate alone");
    t_invalid_str("{\"k\":\"\\udc00\"}", "low surrogate alone");
    t_invalid_str("{\"k\":\"\\uDFFF x\"}", "low surrogate (upper case)");
    t_invalid_str("{\"k\":\"\\ud800\\u0041\"}", "high + non-low escape");
    t_invalid_str("{\"k\":\"\\ud800\\ud800\"}", "high + high escape");
    t_invalid_str("{\"k\":\"\\ud800\\n\"}", "high + other escape");
    t_invalid_str("{\"k\":\"\\ud800x\\udc00\"}", "high, char, low");
    t_invalid_str("{\"k\":\"abc\\udbff\"}", "high at end of string");
    t_invalid_str("{\"k\":\"\\ude00\\ud83d\"}", "pair in wrong order");
    t_invalid_str("{\"\\ud800\":1}", "lone surrogate in key");
    t_invalid_str("{\"k\":{\"x\":\"\\udc00\"}}", "lone surrogate nested");

    t_parse_str("{\"k\":\"\\ud83d\\ude00\",\"m\":\"\\uDBFF\\uDFFF\"}", &r);
    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 2, "valid pair");
    t_field(&r, 0, "k", NGX_RBCS_JSON_STRING, "\xf0\x9f\x98\x80", 4,
            "pair decoded to U+1F600");
    t_field(&r, 1, "m", NGX_RBCS_JSON_STRING, "\xf4\x8f\xbf\xbf", 4,
            "pair decoded to U+10FFFF");
}


static void
test_unescape(void)
{
    t_result_t  r;

    t_parse_str("{\"\\u0061\\u00e9\":\"\\u20ac\","
                "\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\","
                "\"nul\":\"a\\u0000b\","
                "\"mix\":\"x\\u00E9y\xe2\x82\xacz\"}", &r);

    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 4, "escapes parse");
    t_field(&r, 0, "a\xc3\xa9", NGX_RBCS_JSON_STRING, "\xe2\x82\xac", 3,
            "unicode escapes decoded in key and value");
    t_field(&r, 1, "esc", NGX_RBCS_JSON_STRING, "\"\\/\b\f\n\r\t", 8,
            "simple escapes decoded");
    t_field(&r, 2, "nul", NGX_RBCS_JSON_STRING, "a\0b", 3,
            "\\u0000 decoded to NUL byte");
    t_field(&r, 3, "mix", NGX_RBCS_JSON_STRING,
            "x\xc3\xa9y\xe2\x82\xacz", 8, "mixed escapes and raw UTF-8");

    t_invalid_str("{\"k\":\"\\x41\"}", "invalid escape \\x");
    t_invalid_str("{\"k\":\"\\u12\"}", "short \\u escape");
    t_invalid_str("{\"k\":\"\\u12g4\"}", "non-hex \\u escape");
    t_invalid_str("{\"k\":\"\\'\"}", "invalid escape \\'");
}


static void
test_control(void)
{
    t_invalid_reason("{\"k\":\"a\nb\"}", "control character in string",
                     "raw newline in string");
    t_invalid_str("{\"k\":\"a\tb\"}", "raw tab in string");
    t_invalid_str("{\"k\":\"\x01\"}", "raw 0x01 in string");
    t_invalid_str("{\"k\x1f\":1}", "raw 0x1f in key");
    t_invalid("{\"k\":\"a\0b\"}", 11, "raw NUL in string");
    t_valid("{\"k\":\"a\x7f" "b\"}", 1, "DEL is allowed in strings");
}


static void
test_syntax(void)
{
    t_invalid_str("{", "unterminated object");
    t_invalid_str("{\"a\":1", "missing closing brace");
    t_invalid_str("{\"a\":\"x}", "unterminated string");
    t_invalid_str("{\"a\"}", "missing colon and value");
    t_invalid_str("{\"a\":}", "missing value");
    t_invalid_str("{\"a\" 1}", "missing colon");
    t_invalid_str("{\"a\" \"b\"}", "string after key");
    t_invalid_str("{\"a\":1,}", "trailing comma");
    t_invalid_str("{,\"a\":1}", "leading comma");
    t_invalid_str("{\"a\":1 \"b\":2}", "missing comma");
    t_invalid_str("{\"a\":1::2}", "double colon");
    t_invalid_str("{\"a\":01}", "leading zero");
    t_invalid_str("{\"a\":+1}", "plus sign");
    t_invalid_str("{\"a\":1.}", "number ends with dot");
    t_invalid_str("{\"a\":.5}", "number starts with dot");
    t_invalid_str("{\"a\":-}", "minus alone");
    t_invalid_str("{\"a\":1e}", "empty exponent");
    t_invalid_str("{\"a\":NaN}", "NaN");
    t_invalid_str("{\"a\":tru}", "bad literal");
    t_invalid_str("{\"a\":True}", "capitalised literal");
    t_invalid_str("{'a':1}", "single quotes");
    t_invalid_str("{a:1}", "unquoted key");
    t_invalid_str("{1:1}", "number key");
    t_invalid_str("{\"a\":[1,2}", "unclosed array");
    t_invalid_str("{\"a\":[1,2]]}", "extra bracket");
    t_invalid_str("{\"a\":{]}", "mismatched brackets");
    t_invalid_str("{\"a\":1}}", "extra brace");
    t_invalid_str("{\"a\":1 /* c */}", "comment");
    t_invalid_str("{\"a\":[1,]}", "trailing comma in array");
}


static void
test_many_keys(void)
{
    char        *s, *p;
    size_t       i;
    t_result_t   r;
    char         key[32];

    s = t_many_keys(5000, 0);
    t_parse_str(s, &r);

    t_ok(r.rc == NGX_RBCS_JSON_OK && r.nfields == 5000,
         "5000 distinct keys parse");

    if (r.rc == NGX_RBCS_JSON_OK && r.nfields == 5000) {
        snprintf(key, sizeof(key), "k%d", 4999);
        t_is_mem(r.fields[4999].key, r.fields[4999].key_len, key,
                 strlen(key), "last key kept in order");
        t_is_mem(r.fields[4321].value, r.fields[4321].value_len, "4321", 4,
                 "value kept in order");

    } else {
        t_ok(0, "last key kept in order");
        t_ok(0, "value kept in order");
    }

    free(s);

    s = t_many_keys(5000, 1);
    t_invalid_reason(s, "duplicate key", "duplicate among 5000 keys");
    free(s);

    s = malloc(5000 * 24 + 32);
    if (s == NULL) {
        exit(2);
    }

    p = s;
    p += sprintf(p, "{\"o\":{");

    for (i = 0; i < 5000; i++) {
        p += sprintf(p, "%s\"n%zu\":[%zu]", i ? "," : "", i, i);
    }

    sprintf(p, "},\"x\":{\"n1\":1}}");

    t_valid(s, 2, "5000 distinct keys in a nested object");
    free(s);
}


static void
test_enomem(void)
{
    int                     rc;
    size_t                  n;
    const char             *err;
    ngx_rbcs_json_field_t  *f;

    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "{\"a\":1}", 7, t_alloc,
                                    &t_pool, &f, &n, &err);

    t_ok(rc == NGX_RBCS_JSON_ENOMEM && f == NULL && n == 0 && err != NULL,
         "allocator failure gives ENOMEM");

    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "{}", 2, t_alloc, &t_pool,
                                    &f, &n, NULL);

    t_ok(rc == NGX_RBCS_JSON_OK && t_pool.calls == 0 && f == NULL && n == 0,
         "{} does not allocate, err may be NULL");

    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "[1]", 3, t_alloc, &t_pool,
                                    &f, &n, NULL);

    t_ok(rc == NGX_RBCS_JSON_EINVALID && t_pool.calls == 0,
         "lexically rejected body does not allocate");

    t_pool_reset(&t_pool);
}


static void
test_escape(void)
{
    t_escape("", 0, "", "escape empty");
    t_escape("plain text 123", 14, "plain text 123", "escape plain");
    t_escape("a\"b\\c/d", 7, "a\\\"b\\\\c/d", "escape quote, backslash");
    t_escape("\b\f\n\r\t", 5, "\\b\\f\\n\\r\\t", "escape short forms");
    t_escape("\x01\x1f\x00", 3, "\\u0001\\u001f\\u0000",
             "escape other controls");
    t_escape("\x7f", 1, "\x7f", "DEL left as is");
    t_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
             "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "valid UTF-8 as is");
    t_escape("a\xffz", 3, "a\\ufffdz", "invalid byte replaced");
    t_escape("\xc0\x80", 2, "\\ufffd\\ufffd", "overlong replaced");
    t_escape("\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd",
             "surrogate replaced");
    t_escape("x\xe2\x82", 3, "x\\ufffd\\ufffd", "truncated at end");
}


/* not a test: TEST_JSON_BENCH=1 prints the cost of a typical parse */

static void
t_bench(void)
{
    int                     i, n;
    size_t                  nf;
    const char             *body, *err;
    struct timespec         t0, t1;
    ngx_rbcs_json_field_t  *f;

    body = "{\"from\":\"acc-000001\",\"to\":\"acc-000002\","
           "\"amount\":\"10.50\",\"currency\":\"EUR\","
           "\"reference\":\"invoice 42\","
           "\"idempotency_key\":\"3f2a9c1e-7b1d-4c55-9e0a-1b2c3d4e5f60\"}";

    n = 200000;

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < n; i++) {
        t_pool_reset(&t_pool);

        if (ngx_rbcs_json_parse_object((const u_char *) body, strlen(body),
                                       t_alloc, &t_pool, &f, &nf, &err)
            != NGX_RBCS_JSON_OK)
        {
            printf("# bench parse failed: %s\n", err);
            return;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    t_pool_reset(&t_pool);

    printf("# bench: %lld ns per parse of a %zu byte body\n",
           ((long long) (t1.tv_sec - t0.tv_sec) * 1000000000LL
            + (t1.tv_nsec - t0.tv_nsec)) / n, strlen(body));
}


int
main(void)
{
    test_transfer();
    test_literals();
    test_nested_types();
    test_not_object();
    test_whitespace();
    test_duplicates();
    test_depth();
    test_utf8();
    test_surrogates();
    test_unescape();
    test_control();
    test_syntax();
    test_many_keys();
    test_enomem();
    test_escape();

    t_pool_reset(&t_pool);

    if (getenv("TEST_JSON_BENCH")) {
        t_bench();
    }

    printf("1..%d\n", t_run);

    if (t_failed) {
        printf("# failed %d of %d tests\n", t_failed, t_run);
    }

    return t_failed ? 1 : 0;
}
