
/*
 * Unit tests of src/ngx_rbcs_json.c on cmocka:
 *
 *     make -f t/unit/Makefile.json && ./build/unit/test_json
 */


#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_rbcs_json.h"


#define S(s)          (s), (sizeof(s) - 1)
#define T_MAX_BLOCKS  16


typedef struct {
    void          *block[T_MAX_BLOCKS];
    size_t         nblocks;
    size_t         calls;
    int            fail;
} t_pool_t;


typedef struct {
    int                     rc;
    const char             *err;
    ngx_rbcs_json_field_t  *fields;
    size_t                  nfields;
} t_result_t;


typedef struct {
    const char    *body;
    size_t         len;
    const char    *reason;     /* NULL: any */
    const char    *name;
} t_invalid_t;


typedef struct {
    const char    *body;
    size_t         len;
    size_t         nfields;
    const char    *name;
} t_valid_t;


static void *t_alloc(void *ctx, size_t size);
static void t_pool_reset(t_pool_t *pool);
static void t_parse(const void *body, size_t len, t_result_t *r);
static void t_field(t_result_t *r, size_t i, const char *key, int type,
    const void *value, size_t value_len);
static char *t_nested(size_t depth, int arrays);
static char *t_many_keys(size_t n, int dup);

static void test_invalid(void **state);
static void test_valid(void **state);
static void test_transfer(void **state);
static void test_literals(void **state);
static void test_nested_types(void **state);
static void test_depth(void **state);
static void test_surrogate_pairs(void **state);
static void test_unescape(void **state);
static void test_many_keys(void **state);
static void test_enomem(void **state);


static const t_invalid_t  t_invalid_cases[] = {

    /* not one object */
    { S(""), NULL, "empty body" },
    { S(" \t\r\n "), NULL, "whitespace only" },
    { S("[]"), "not an object", "array at top level" },
    { S("[{}]"), NULL, "object in array at top level" },
    { S("\"x\""), NULL, "string at top level" },
    { S("1"), NULL, "number at top level" },
    { S("true"), NULL, "true at top level" },
    { S("null"), NULL, "null at top level" },
    { S("{}{}"), "trailing data after object", "two objects" },
    { S("{} {\"a\":1}"), NULL, "two objects with space" },
    { S("{}x"), NULL, "trailing garbage" },
    { S("{\"a\":1}]"), NULL, "trailing bracket" },
    { S("{\"a\":1} 1"), NULL, "trailing number" },
    { S("{\"a\":1}\""), NULL, "trailing quote" },
    { S("{} \"abc"), NULL, "trailing unterminated string" },
    { S("{}\0"), NULL, "trailing NUL byte" },
    { S("\xef\xbb\xbf{}"), NULL, "UTF-8 BOM" },

    /* whitespace */
    { S("{}\v"), NULL, "vertical tab is not JSON whitespace" },
    { S("{\f}"), NULL, "form feed is not JSON whitespace" },
    { S("\v{}"), NULL, "vertical tab before the object" },
    { S("{\"a\":\v1}"), NULL, "vertical tab inside the object" },

    /* duplicate member names, in any object */
    { S("{\"a\":1,\"a\":2}"), "duplicate key", "duplicate" },
    { S("{\"a\":1,\"b\":2,\"a\":\"x\"}"), NULL, "duplicate, other types" },
    { S("{\"x\":{\"a\":1,\"a\":2}}"), NULL, "duplicate nested" },
    { S("{\"x\":[1,{\"b\":{\"a\":1,\"a\":2}}]}"), NULL,
      "duplicate nested in array" },
    { S("{\"a\":1,\"\\u0061\":2}"), NULL, "duplicate via escape" },
    { S("{\"\\u00e9\":1,\"\xc3\xa9\":2}"), NULL,
      "duplicate via non-ASCII escape" },
    { S("{\"\\/\":1,\"/\":2}"), NULL, "duplicate via \\/" },
    { S("{\"\":1,\"\":2}"), NULL, "duplicate empty key" },
    { S("{\"a\":{},\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,"
        "\"g\":1,\"h\":1,\"i\":1,\"j\":1,\"a\":[]}"), NULL,
      "duplicate in larger object" },
    { S("{\"a\":{\"x\":1},\"b\":2,\"b\":3}"), NULL,
      "duplicate after nested object" },

    /* UTF-8 */
    { S("{\"k\":\"\xc0\x80\"}"), "invalid UTF-8", "overlong C0 80" },
    { S("{\"k\":\"\xc1\xbf\"}"), NULL, "overlong C1 BF" },
    { S("{\"k\":\"\xe0\x80\x80\"}"), NULL, "overlong E0 80 80" },
    { S("{\"k\":\"\xe0\x9f\xbf\"}"), NULL, "overlong E0 9F BF" },
    { S("{\"k\":\"\xf0\x80\x80\x80\"}"), NULL, "overlong F0 80 80 80" },
    { S("{\"k\":\"\xed\xa0\x80\"}"), NULL, "CESU surrogate ED A0 80" },
    { S("{\"k\":\"\xed\xbf\xbf\"}"), NULL, "CESU surrogate ED BF BF" },
    { S("{\"k\":\"\xf4\x90\x80\x80\"}"), NULL, "F4 90 80 80 > U+10FFFF" },
    { S("{\"k\":\"\xf5\x80\x80\x80\"}"), NULL, "F5 lead byte" },
    { S("{\"k\":\"\xff\"}"), NULL, "FF byte" },
    { S("{\"k\":\"\x80\"}"), NULL, "lone continuation byte 80" },
    { S("{\"k\":\"\xc3\"}"), NULL, "truncated 2-byte sequence" },
    { S("{\"k\":\"\xe2\x82\"}"), NULL, "truncated 3-byte sequence" },
    { S("{\"k\":\"\xe2\x28\xa1\"}"), NULL, "bad continuation" },
    { S("{\"k\":\"\xe2\x82"), NULL, "truncated multibyte at end of body" },
    { S("{\"k\":1}\xc3"), NULL, "truncated multibyte after object" },
    { S("{\"\xc0\x80\":1}"), NULL, "overlong in key" },
    { S("{\"k\":[\"\xed\xa0\x80\"]}"), NULL, "surrogate nested in array" },
    { S("{\"k\":\xc3\xa9}"), NULL, "valid UTF-8 outside string" },

    /* surrogate escapes, paired or nothing */
    { S("{\"k\":\"\\ud800\"}"), "lone surrogate escape",
      "high surrogate alone" },
    { S("{\"k\":\"\\udc00\"}"), NULL, "low surrogate alone" },
    { S("{\"k\":\"\\uDFFF x\"}"), NULL, "low surrogate (upper case)" },
    { S("{\"k\":\"\\ud800\\u0041\"}"), NULL, "high + non-low escape" },
    { S("{\"k\":\"\\ud800\\ud800\"}"), NULL, "high + high escape" },
    { S("{\"k\":\"\\ud800\\n\"}"), NULL, "high + other escape" },
    { S("{\"k\":\"\\ud800x\\udc00\"}"), NULL, "high, char, low" },
    { S("{\"k\":\"abc\\udbff\"}"), NULL, "high at end of string" },
    { S("{\"k\":\"\\ude00\\ud83d\"}"), NULL, "pair in wrong order" },
    { S("{\"\\ud800\":1}"), NULL, "lone surrogate in key" },
    { S("{\"k\":{\"x\":\"\\udc00\"}}"), NULL, "lone surrogate nested" },

    /* escapes */
    { S("{\"k\":\"\\x41\"}"), NULL, "invalid escape \\x" },
    { S("{\"k\":\"\\u12\"}"), NULL, "short \\u escape" },
    { S("{\"k\":\"\\u12g4\"}"), NULL, "non-hex \\u escape" },
    { S("{\"k\":\"\\'\"}"), NULL, "invalid escape \\'" },

    /* control characters */
    { S("{\"k\":\"a\nb\"}"), "control character in string",
      "raw newline in string" },
    { S("{\"k\":\"a\tb\"}"), NULL, "raw tab in string" },
    { S("{\"k\":\"\x01\"}"), NULL, "raw 0x01 in string" },
    { S("{\"k\x1f\":1}"), NULL, "raw 0x1f in key" },
    { S("{\"k\":\"a\0b\"}"), NULL, "raw NUL in string" },

    /* grammar */
    { S("{"), NULL, "unterminated object" },
    { S("{\"a\":1"), NULL, "missing closing brace" },
    { S("{\"a\":\"x}"), NULL, "unterminated string" },
    { S("{\"a\"}"), NULL, "missing colon and value" },
    { S("{\"a\":}"), NULL, "missing value" },
    { S("{\"a\" 1}"), NULL, "missing colon" },
    { S("{\"a\" \"b\"}"), NULL, "string after key" },
    { S("{\"a\":1,}"), NULL, "trailing comma" },
    { S("{,\"a\":1}"), NULL, "leading comma" },
    { S("{\"a\":1 \"b\":2}"), NULL, "missing comma" },
    { S("{\"a\":1::2}"), NULL, "double colon" },
    { S("{\"a\":01}"), NULL, "leading zero" },
    { S("{\"a\":+1}"), NULL, "plus sign" },
    { S("{\"a\":1.}"), NULL, "number ends with dot" },
    { S("{\"a\":.5}"), NULL, "number starts with dot" },
    { S("{\"a\":-}"), NULL, "minus alone" },
    { S("{\"a\":1e}"), NULL, "empty exponent" },
    { S("{\"a\":NaN}"), NULL, "NaN" },
    { S("{\"a\":tru}"), NULL, "bad literal" },
    { S("{\"a\":True}"), NULL, "capitalised literal" },
    { S("{'a':1}"), NULL, "single quotes" },
    { S("{a:1}"), NULL, "unquoted key" },
    { S("{1:1}"), NULL, "number key" },
    { S("{\"a\":[1,2}"), NULL, "unclosed array" },
    { S("{\"a\":[1,2]]}"), NULL, "extra bracket" },
    { S("{\"a\":{]}"), NULL, "mismatched brackets" },
    { S("{\"a\":1}}"), NULL, "extra brace" },
    { S("{\"a\":1 /* c */}"), NULL, "comment" },
    { S("{\"a\":[1,]}"), NULL, "trailing comma in array" },
};


static const t_valid_t  t_valid_cases[] = {
    { S("{}"), 0, "{} is valid" },
    { S(" \t\r\n{ \t\r\n} \t\r\n"), 0, "{} with whitespace" },
    { S("{\"a\":1}\n"), 1, "trailing newline ok" },
    { S("\r\n {\n \"a\" : 1 ,\n \"b\" :\t\"x\" \n}  \r\n"), 2,
      "whitespace everywhere" },
    { S("{\"a\":{\"a\":{\"a\":1}}}"), 1, "same key at different levels" },
    { S("{\"a\":{\"x\":1},\"b\":{\"x\":1}}"), 2,
      "same key in sibling objects" },
    { S("{\"l\":[{\"x\":1},{\"x\":2}]}"), 1,
      "same key in objects of an array" },
    { S("{\"a\":1,\"A\":2,\"a \":3,\"\":4}"), 4,
      "keys differing in case/space are distinct" },
    { S("{\"a\\u0000\":1,\"a\":2}"), 2, "key with NUL is distinct" },
    { S("{\"ab\":1,\"a\":2,\"abc\":3,\"b\":4,\"ba\":5,\"c\":6,\"ca\":7,"
        "\"cb\":8,\"d\":9,\"e\":10}"), 10, "prefix keys are distinct" },
    { S("{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"
        "\xed\x9f\xbf\xee\x80\x80\"}"), 1, "valid multibyte UTF-8" },
    { S("{\"\xe2\x82\xac\":1}"), 1, "valid UTF-8 in key" },
    { S("{\"k\":\"a\x7f" "b\"}"), 1, "DEL is allowed in strings" },
    { S("{\"k:\\\"\":\"x:\\\\\",\"t\":\"10:00\"}"), 2,
      "colons and escaped quotes in strings" },
};


static t_pool_t  t_pool;


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_nested_types),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_surrogate_pairs),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_enomem),
    };

    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}


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


/*
 * Parses a private copy of exactly len bytes (no terminating NUL), wiped
 * afterwards: the results must not refer to the body.  The allocator is
 * called at most once.
 */

static void
t_parse(const void *body, size_t len, t_result_t *r)
{
    u_char  *copy;

    t_pool_reset(&t_pool);

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, body, len);

    r->err = "untouched";
    r->fields = (ngx_rbcs_json_field_t *) 1;
    r->nfields = 12345;

    r->rc = ngx_rbcs_json_parse_object(copy, len, t_alloc, &t_pool,
                                       &r->fields, &r->nfields, &r->err);

    memset(copy, 'X', len);
    free(copy);

    assert_true(t_pool.calls <= 1);
}


static void
t_field(t_result_t *r, size_t i, const char *key, int type,
    const void *value, size_t value_len)
{
    ngx_rbcs_json_field_t  *f;

    assert_int_equal(r->rc, NGX_RBCS_JSON_OK);
    assert_true(i < r->nfields);

    f = &r->fields[i];

    assert_int_equal(f->key_len, strlen(key));
    assert_memory_equal(f->key, key, f->key_len);
    assert_int_equal(f->type, type);

    if (value == NULL) {
        assert_null(f->value);
        return;
    }

    assert_non_null(f->value);
    assert_int_equal(f->value_len, value_len);

    if (value_len) {
        assert_memory_equal(f->value, value, value_len);
    }
}


/* {"a":{"a":...{}...}} with depth levels, or {"a":[[...[]...]]} */

static char *
t_nested(size_t depth, int arrays)
{
    char    *s, *p;
    size_t   i;

    s = malloc(depth * 6 + 16);
    assert_non_null(s);

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


/* {"k0":0,"k1":1,...}; with dup, key 4321 repeats key 17 */

static char *
t_many_keys(size_t n, int dup)
{
    char    *s, *p;
    size_t   i;

    s = malloc(n * 16 + 16);
    assert_non_null(s);

    p = s;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s\"k%zu\":%zu", i ? "," : "",
                     (dup && i == 4321) ? (size_t) 17 : i, i);
    }

    *p++ = '}';
    *p = '\0';

    return s;
}


static void
test_invalid(void **state)
{
    size_t              i;
    t_result_t          r;
    const t_invalid_t  *c;

    (void) state;

    for (i = 0; i < sizeof(t_invalid_cases) / sizeof(t_invalid_cases[0]);
         i++)
    {
        c = &t_invalid_cases[i];

        t_parse(c->body, c->len, &r);

        if (r.rc != NGX_RBCS_JSON_EINVALID || r.err == NULL
            || r.fields != NULL || r.nfields != 0
            || (c->reason && strcmp(r.err, c->reason) != 0))
        {
            fail_msg("%s: rc %d, nfields %zu, reason \"%s\" (expected %s)",
                     c->name, r.rc, r.nfields, r.err ? r.err : "(null)",
                     c->reason ? c->reason : "any");
        }
    }
}


static void
test_valid(void **state)
{
    size_t            i;
    t_result_t        r;
    const t_valid_t  *c;

    (void) state;

    for (i = 0; i < sizeof(t_valid_cases) / sizeof(t_valid_cases[0]); i++) {
        c = &t_valid_cases[i];

        t_parse(c->body, c->len, &r);

        if (r.rc != NGX_RBCS_JSON_OK || r.nfields != c->nfields
            || r.err != NULL)
        {
            fail_msg("%s: rc %d, nfields %zu (expected %zu), reason \"%s\"",
                     c->name, r.rc, r.nfields, c->nfields,
                     r.err ? r.err : "(null)");
        }
    }
}


static void
test_transfer(void **state)
{
    t_result_t  r;

    (void) state;

    t_parse(S("{\"from\":\"acc-1\",\"to\":\"acc-2\",\"amount\":\"10.50\","
              "\"fee\":10.50,\"zero\":-0,\"exp\":1e5,\"neg\":-1.25E-3,"
              "\"currency\":\"EUR\",\"empty\":\"\",\"big\":"
              "123456789012345678901234567890}"), &r);

    assert_int_equal(r.rc, NGX_RBCS_JSON_OK);
    assert_null(r.err);
    assert_int_equal(r.nfields, 10);

    t_field(&r, 0, "from", NGX_RBCS_JSON_STRING, S("acc-1"));
    t_field(&r, 1, "to", NGX_RBCS_JSON_STRING, S("acc-2"));
    t_field(&r, 2, "amount", NGX_RBCS_JSON_STRING, S("10.50"));

    /* numbers are kept as written */
    t_field(&r, 3, "fee", NGX_RBCS_JSON_NUMBER, S("10.50"));
    t_field(&r, 4, "zero", NGX_RBCS_JSON_NUMBER, S("-0"));
    t_field(&r, 5, "exp", NGX_RBCS_JSON_NUMBER, S("1e5"));
    t_field(&r, 6, "neg", NGX_RBCS_JSON_NUMBER, S("-1.25E-3"));
    t_field(&r, 7, "currency", NGX_RBCS_JSON_STRING, S("EUR"));

    /* an empty string's value is not NULL */
    t_field(&r, 8, "empty", NGX_RBCS_JSON_STRING, S(""));
    t_field(&r, 9, "big", NGX_RBCS_JSON_NUMBER,
            S("123456789012345678901234567890"));
}


static void
test_literals(void **state)
{
    t_result_t  r;

    (void) state;

    t_parse(S("{\"t\":true,\"f\":false,\"n\":null}"), &r);

    assert_int_equal(r.nfields, 3);
    t_field(&r, 0, "t", NGX_RBCS_JSON_TRUE, NULL, 0);
    t_field(&r, 1, "f", NGX_RBCS_JSON_FALSE, NULL, 0);
    t_field(&r, 2, "n", NGX_RBCS_JSON_NULL, NULL, 0);
}


static void
test_nested_types(void **state)
{
    t_result_t  r;

    (void) state;

    t_parse(S("{\"o\":{\"x\":{\"y\":[1,{\"z\":\"s\"}]}},\"a\":[1,\"2\",[]],"
              "\"e\":{},\"ea\":[],\"last\":1}"), &r);

    assert_int_equal(r.nfields, 5);
    t_field(&r, 0, "o", NGX_RBCS_JSON_OBJECT, NULL, 0);
    t_field(&r, 1, "a", NGX_RBCS_JSON_ARRAY, NULL, 0);
    t_field(&r, 2, "e", NGX_RBCS_JSON_OBJECT, NULL, 0);
    t_field(&r, 3, "ea", NGX_RBCS_JSON_ARRAY, NULL, 0);
    t_field(&r, 4, "last", NGX_RBCS_JSON_NUMBER, S("1"));
}


static void
test_depth(void **state)
{
    char        *s;
    size_t       i;
    t_result_t   r;

    static const struct {
        size_t   depth;
        int      arrays;
        int      ok;
    } cases[] = {
        { 31, 0, 1 },                    /* 31 nested objects */
        { 32, 0, 1 },                    /* 32 nested objects */
        { 33, 0, 0 },                    /* 33 nested objects */
        { 32, 1, 1 },                    /* an object and 31 arrays */
        { 33, 1, 0 },                    /* an object and 32 arrays */
        { 1000, 0, 0 },                  /* 1000 nested objects */
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s = t_nested(cases[i].depth, cases[i].arrays);
        t_parse(s, strlen(s), &r);
        free(s);

        if (!cases[i].ok) {
            assert_int_equal(r.rc, NGX_RBCS_JSON_EINVALID);
            assert_string_equal(r.err, "nesting too deep");
            continue;
        }

        assert_int_equal(r.rc, NGX_RBCS_JSON_OK);
        assert_int_equal(r.nfields, 1);
        assert_int_equal(r.fields[0].type, cases[i].arrays
                                           ? NGX_RBCS_JSON_ARRAY
                                           : NGX_RBCS_JSON_OBJECT);
    }
}


static void
test_surrogate_pairs(void **state)
{
    t_result_t  r;

    (void) state;

    t_parse(S("{\"k\":\"\\ud83d\\ude00\",\"m\":\"\\uDBFF\\uDFFF\"}"), &r);

    assert_int_equal(r.nfields, 2);
    t_field(&r, 0, "k", NGX_RBCS_JSON_STRING, S("\xf0\x9f\x98\x80"));
    t_field(&r, 1, "m", NGX_RBCS_JSON_STRING, S("\xf4\x8f\xbf\xbf"));
}


static void
test_unescape(void **state)
{
    t_result_t  r;

    (void) state;

    t_parse(S("{\"\\u0061\\u00e9\":\"\\u20ac\","
              "\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\","
              "\"nul\":\"a\\u0000b\","
              "\"mix\":\"x\\u00E9y\xe2\x82\xacz\"}"), &r);

    assert_int_equal(r.nfields, 4);
    t_field(&r, 0, "a\xc3\xa9", NGX_RBCS_JSON_STRING, S("\xe2\x82\xac"));
    t_field(&r, 1, "esc", NGX_RBCS_JSON_STRING, S("\"\\/\b\f\n\r\t"));
    t_field(&r, 2, "nul", NGX_RBCS_JSON_STRING, S("a\0b"));
    t_field(&r, 3, "mix", NGX_RBCS_JSON_STRING,
            S("x\xc3\xa9y\xe2\x82\xacz"));
}


static void
test_many_keys(void **state)
{
    char        *s, *p;
    char         key[32];
    size_t       i;
    t_result_t   r;

    (void) state;

    s = t_many_keys(5000, 0);
    t_parse(s, strlen(s), &r);
    free(s);

    /* 5000 distinct keys, kept in order */
    assert_int_equal(r.rc, NGX_RBCS_JSON_OK);
    assert_int_equal(r.nfields, 5000);
    snprintf(key, sizeof(key), "k%d", 4999);
    t_field(&r, 4999, key, NGX_RBCS_JSON_NUMBER, S("4999"));
    t_field(&r, 4321, "k4321", NGX_RBCS_JSON_NUMBER, S("4321"));

    s = t_many_keys(5000, 1);
    t_parse(s, strlen(s), &r);
    free(s);

    assert_int_equal(r.rc, NGX_RBCS_JSON_EINVALID);
    assert_string_equal(r.err, "duplicate key");

    /* 5000 distinct keys in a nested object */
    s = malloc(5000 * 24 + 32);
    assert_non_null(s);

    p = s;
    p += sprintf(p, "{\"o\":{");

    for (i = 0; i < 5000; i++) {
        p += sprintf(p, "%s\"n%zu\":[%zu]", i ? "," : "", i, i);
    }

    sprintf(p, "},\"x\":{\"n1\":1}}");

    t_parse(s, strlen(s), &r);
    free(s);

    assert_int_equal(r.rc, NGX_RBCS_JSON_OK);
    assert_int_equal(r.nfields, 2);
}


static void
test_enomem(void **state)
{
    int                     rc;
    size_t                  n;
    const char             *err;
    ngx_rbcs_json_field_t  *f;

    (void) state;

    /* an allocator failure is ENOMEM */
    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "{\"a\":1}", 7, t_alloc,
                                    &t_pool, &f, &n, &err);

    assert_int_equal(rc, NGX_RBCS_JSON_ENOMEM);
    assert_null(f);
    assert_int_equal(n, 0);
    assert_non_null(err);

    /* {} does not allocate, err may be NULL */
    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "{}", 2, t_alloc, &t_pool,
                                    &f, &n, NULL);

    assert_int_equal(rc, NGX_RBCS_JSON_OK);
    assert_int_equal(t_pool.calls, 0);
    assert_null(f);
    assert_int_equal(n, 0);

    /* a body without members does not allocate */
    t_pool_reset(&t_pool);
    t_pool.fail = 1;

    rc = ngx_rbcs_json_parse_object((u_char *) "[1]", 3, t_alloc, &t_pool,
                                    &f, &n, NULL);

    assert_int_equal(rc, NGX_RBCS_JSON_EINVALID);
    assert_int_equal(t_pool.calls, 0);

    t_pool_reset(&t_pool);
}
