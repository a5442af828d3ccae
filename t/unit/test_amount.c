
/*
 * Copyright (C) RBCS
 */


#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_rbcs_amount.h"


#define S(s)       (const u_char *) (s), (sizeof(s) - 1)
#define LONG_LEN   60000

/* xorshift64 */
#define RND()      (seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17)


typedef struct {
    const u_char  *s;
    size_t         len;
    int            rc;
    size_t         int_digits;
    size_t         frac_digits;
    int            is_zero;
} grammar_case_t;


typedef struct {
    const u_char  *s;
    size_t         len;
    unsigned       scale;
    int            allow_zero;
    int            rc;
    const char    *units;
} parse_case_t;


typedef struct {
    const char    *units;
    unsigned       scale;
    int            negative;
    const char    *expected;
} format_case_t;


typedef struct {
    const u_char  *s;
    size_t         len;
    unsigned       scale;
    int            rc;
    const char    *units;
    int            negative;
} decimal_case_t;


typedef struct {
    const u_char  *s;
    size_t         len;
    const char    *expected;
} normalize_case_t;


static const char *u128_str(ngx_rbcs_uint128_t v, char *buf);
static ngx_rbcs_uint128_t u128_from(const char *s);
static const char *rc_name(int rc);
static void test_grammar(void **state);
static void test_parse(void **state);
static void test_format(void **state);
static void test_from_decimal(void **state);
static void test_normalize(void **state);
static void test_long(void **state);
static void test_round_trip(void **state);


#define U128_MAX_STR  "340282366920938463463374607431768211455"
#define MAX_DECIMAL   "999999999999999999.999999999999999999"
#define MAX_UNITS     "999999999999999999999999999999999999"


static const grammar_case_t  grammar_cases[] = {
    { S("0"), NGX_RBCS_AMOUNT_OK, 1, 0, 1 },
    { S("0.00"), NGX_RBCS_AMOUNT_OK, 1, 2, 1 },
    { S("0.0"), NGX_RBCS_AMOUNT_OK, 1, 1, 1 },
    { S("7"), NGX_RBCS_AMOUNT_OK, 1, 0, 0 },
    { S("10"), NGX_RBCS_AMOUNT_OK, 2, 0, 0 },
    { S("10.50"), NGX_RBCS_AMOUNT_OK, 2, 2, 0 },
    { S("0.5"), NGX_RBCS_AMOUNT_OK, 1, 1, 0 },
    { S("0.000000000000000001"), NGX_RBCS_AMOUNT_OK, 1, 18, 0 },
    { S(MAX_DECIMAL), NGX_RBCS_AMOUNT_OK, 18, 18, 0 },
    { S("1234567890123456789012345"), NGX_RBCS_AMOUNT_OK, 25, 0, 0 },
    { S(""), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("-0"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("-1"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("-0.00"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("+1"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1e5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1E5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1e-5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1.5e2"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S(".5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("5."), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("0."), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("."), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("-"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S(" 5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("5 "), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("\t5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("5\n"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("05"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("00"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("00.5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("007"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1.2.3"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1..2"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1,5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1_000"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("0x10"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1.-5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1.+5"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("0.5x"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("NaN"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("inf"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("\xd9\xa1"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1\xd9\xa1"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("\0"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1\0"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
    { S("1.5\0"), NGX_RBCS_AMOUNT_EGRAMMAR, 0, 0, 0 },
};


static const parse_case_t  parse_cases[] = {

    /* scale 2 */
    { S("10.50"), 2, 0, NGX_RBCS_AMOUNT_OK, "1050" },
    { S("10.5"), 2, 0, NGX_RBCS_AMOUNT_OK, "1050" },
    { S("10"), 2, 0, NGX_RBCS_AMOUNT_OK, "1000" },
    { S("0.01"), 2, 0, NGX_RBCS_AMOUNT_OK, "1" },
    { S("0.10"), 2, 0, NGX_RBCS_AMOUNT_OK, "10" },
    { S("10.500"), 2, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("10.505"), 2, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0.001"), 2, 1, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0"), 2, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("0"), 2, 1, NGX_RBCS_AMOUNT_OK, "0" },
    { S("0.00"), 2, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("0.00"), 2, 1, NGX_RBCS_AMOUNT_OK, "0" },
    { S("0.0"), 2, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("0.000"), 2, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0.000"), 2, 1, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("-0"), 2, 1, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("-1.00"), 2, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("1e5"), 2, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("1E5"), 2, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("05"), 2, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("00"), 2, 1, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("999999999999999999.99"), 2, 0, NGX_RBCS_AMOUNT_OK,
      "99999999999999999999" },
    { S("999999999999999999"), 2, 0, NGX_RBCS_AMOUNT_OK,
      "99999999999999999900" },
    { S("1000000000000000000"), 2, 0, NGX_RBCS_AMOUNT_ERANGE, "0" },
    { S("1000000000000000000.5"), 2, 0, NGX_RBCS_AMOUNT_ERANGE, "0" },
    { S("1000000000000000000.123"), 2, 0, NGX_RBCS_AMOUNT_ERANGE, "0" },
    { S("99999999999999999999x"), 2, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
    { S("18446744073709551616"), 2, 0, NGX_RBCS_AMOUNT_ERANGE, "0" },

    /* scale 0: JPY */
    { S("1000"), 0, 0, NGX_RBCS_AMOUNT_OK, "1000" },
    { S("1"), 0, 0, NGX_RBCS_AMOUNT_OK, "1" },
    { S("1000.0"), 0, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("1.5"), 0, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0"), 0, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("0"), 0, 1, NGX_RBCS_AMOUNT_OK, "0" },
    { S("0.0"), 0, 1, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("999999999999999999"), 0, 0, NGX_RBCS_AMOUNT_OK,
      "999999999999999999" },
    { S("1000000000000000000"), 0, 0, NGX_RBCS_AMOUNT_ERANGE, "0" },

    /* scale 3 */
    { S("1.234"), 3, 0, NGX_RBCS_AMOUNT_OK, "1234" },
    { S("1.2345"), 3, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },

    /* scale 8: BTC */
    { S("1"), 8, 0, NGX_RBCS_AMOUNT_OK, "100000000" },
    { S("1.00000000"), 8, 0, NGX_RBCS_AMOUNT_OK, "100000000" },
    { S("0.00000001"), 8, 0, NGX_RBCS_AMOUNT_OK, "1" },
    { S("21000000.12345678"), 8, 0, NGX_RBCS_AMOUNT_OK,
      "2100000012345678" },
    { S("0.000000001"), 8, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("1.000000000"), 8, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0.00000000"), 8, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("999999999999999999.99999999"), 8, 0, NGX_RBCS_AMOUNT_OK,
      "99999999999999999999999999" },

    /* scale 18: ETH */
    { S("1"), 18, 0, NGX_RBCS_AMOUNT_OK, "1000000000000000000" },
    { S("0.1"), 18, 0, NGX_RBCS_AMOUNT_OK, "100000000000000000" },
    { S("0.000000000000000001"), 18, 0, NGX_RBCS_AMOUNT_OK, "1" },
    { S("0.0000000000000000001"), 18, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("1.0000000000000000000"), 18, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("0.000000000000000000"), 18, 0, NGX_RBCS_AMOUNT_EZERO, "0" },
    { S("0.000000000000000000"), 18, 1, NGX_RBCS_AMOUNT_OK, "0" },
    { S(MAX_DECIMAL), 18, 0, NGX_RBCS_AMOUNT_OK, MAX_UNITS },
    { S("999999999999999999"), 18, 0, NGX_RBCS_AMOUNT_OK,
      "999999999999999999000000000000000000" },
    { S("1000000000000000000.000000000000000000"), 18, 0,
      NGX_RBCS_AMOUNT_ERANGE, "0" },

    /* scale beyond DECIMAL(36,18) */
    { S("1"), 19, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("1"), 100, 0, NGX_RBCS_AMOUNT_ESCALE, "0" },
    { S("x"), 19, 0, NGX_RBCS_AMOUNT_EGRAMMAR, "0" },
};


static const format_case_t  format_cases[] = {
    { "1050", 2, 0, "10.50" },
    { "1050", 2, 1, "-10.50" },
    { "1000", 2, 0, "10.00" },
    { "1", 2, 0, "0.01" },
    { "10", 2, 0, "0.10" },
    { "1", 2, 1, "-0.01" },
    { "0", 2, 0, "0.00" },
    { "0", 2, 1, "0.00" },
    { "0", 0, 0, "0" },
    { "0", 0, 1, "0" },
    { "0", 8, 1, "0.00000000" },
    { "0", 18, 1, "0.000000000000000000" },
    { "5", 1, 0, "0.5" },
    { "1000", 0, 0, "1000" },
    { "1000", 0, 1, "-1000" },
    { "100000000", 8, 0, "1.00000000" },
    { "100000000", 8, 1, "-1.00000000" },
    { "1", 8, 0, "0.00000001" },
    { "1", 8, 1, "-0.00000001" },
    { "2100000012345678", 8, 0, "21000000.12345678" },
    { "1000000000000000000", 18, 0, "1.000000000000000000" },
    { "1", 18, 0, "0.000000000000000001" },
    { "1", 18, 1, "-0.000000000000000001" },
    { "99999999999999999999", 2, 0, "999999999999999999.99" },
    { "99999999999999999999", 2, 1, "-999999999999999999.99" },
    { MAX_UNITS, 18, 0, MAX_DECIMAL },
    { MAX_UNITS, 18, 1, "-" MAX_DECIMAL },

    /* beyond DECIMAL(36,18): still formatted while within MAX_LEN */
    { U128_MAX_STR, 0, 0, U128_MAX_STR },
    { U128_MAX_STR, 0, 1, "-" U128_MAX_STR },
    { U128_MAX_STR, 1, 0, "34028236692093846346337460743176821145.5" },
    { U128_MAX_STR, 18, 0, "340282366920938463463.374607431768211455" },
    { "99999999999999999999999999999999999999", 1, 1,
      "-9999999999999999999999999999999999999.9" },
    { U128_MAX_STR, 1, 1, "" },
    { U128_MAX_STR, 18, 1, "" },
    { "100000000000000000000000000000000000000", 2, 1, "" },

    /* invalid scale */
    { "1", 19, 0, "" },
    { "0", 19, 0, "" },
};


static const decimal_case_t  decimal_cases[] = {
    { S("100.000000000000000000"), 2, NGX_RBCS_AMOUNT_OK, "10000", 0 },
    { S("100.000000000000000000"), 0, NGX_RBCS_AMOUNT_OK, "100", 0 },
    { S("100.000000000000000000"), 18, NGX_RBCS_AMOUNT_OK,
      "100000000000000000000", 0 },
    { S("-5.50"), 2, NGX_RBCS_AMOUNT_OK, "550", 1 },
    { S("-5.50"), 1, NGX_RBCS_AMOUNT_OK, "55", 1 },
    { S("-5.50"), 0, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("-5.5"), 2, NGX_RBCS_AMOUNT_OK, "550", 1 },
    { S("0"), 2, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("0"), 0, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("12"), 2, NGX_RBCS_AMOUNT_OK, "1200", 0 },
    { S("12"), 0, NGX_RBCS_AMOUNT_OK, "12", 0 },
    { S("-12"), 8, NGX_RBCS_AMOUNT_OK, "1200000000", 1 },
    { S("12.340"), 2, NGX_RBCS_AMOUNT_OK, "1234", 0 },
    { S("-0"), 2, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("-0.00"), 2, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("-0.000000000000000000"), 18, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("0.000000000000000000"), 0, NGX_RBCS_AMOUNT_OK, "0", 0 },
    { S("1.005"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.0050"), 3, NGX_RBCS_AMOUNT_OK, "1005", 0 },
    { S("1.000000000000000001"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.000000000000000001"), 17, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.000000000000000001"), 18, NGX_RBCS_AMOUNT_OK,
      "1000000000000000001", 0 },
    { S("-0.000000000000000001"), 18, NGX_RBCS_AMOUNT_OK, "1", 1 },
    { S(MAX_DECIMAL), 18, NGX_RBCS_AMOUNT_OK, MAX_UNITS, 0 },
    { S("-" MAX_DECIMAL), 18, NGX_RBCS_AMOUNT_OK, MAX_UNITS, 1 },
    { S("-999999999999999999"), 0, NGX_RBCS_AMOUNT_OK,
      "999999999999999999", 1 },
    { S("1000000000000000000"), 0, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("-1000000000000000000.00"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("0001.5"), 2, NGX_RBCS_AMOUNT_OK, "150", 0 },
    { S("-0000000000000000000000001"), 0, NGX_RBCS_AMOUNT_OK, "1", 1 },
    { S("1"), 19, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S(""), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("-"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("--5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("+5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S(".5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("-.5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("5."), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1e5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S(" 5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("5 "), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.2.3"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1,5"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("5.-1"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("12a"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.00a"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1.000a"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
    { S("1\0"), 2, NGX_RBCS_AMOUNT_ERROR, "0", 0 },
};


static const normalize_case_t  normalize_cases[] = {
    { S("10.50"), "10.5" },
    { S("10.0"), "10" },
    { S("0.000"), "0" },
    { S("0.00"), "0" },
    { S("7"), "7" },
    { S("0"), "0" },
    { S("10"), "10" },
    { S("100"), "100" },
    { S("100.00"), "100" },
    { S("0.10"), "0.1" },
    { S("0.01"), "0.01" },
    { S("120.0300"), "120.03" },
    { S("1.000000000000000001"), "1.000000000000000001" },
    { S("1.000000000000000000"), "1" },
    { S(MAX_DECIMAL), MAX_DECIMAL },
};


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_from_decimal),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_long),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}


static void
test_grammar(void **state)
{
    int                    rc, zero;
    size_t                 i, nint, nfrac;
    const grammar_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(grammar_cases) / sizeof(grammar_cases[0]); i++) {
        c = &grammar_cases[i];

        rc = ngx_rbcs_amount_check_grammar(c->s, c->len, &nint, &nfrac,
                                           &zero);

        if (rc != c->rc || nint != c->int_digits
            || nfrac != c->frac_digits || zero != c->is_zero)
        {
            fail_msg("grammar \"%.*s\" (len %zu): %s int=%zu frac=%zu "
                     "zero=%d, got %s int=%zu frac=%zu zero=%d",
                     (int) c->len, c->s, c->len, rc_name(c->rc),
                     c->int_digits, c->frac_digits, c->is_zero,
                     rc_name(rc), nint, nfrac, zero);
        }
    }

    /* grammar NULL, 0 is EGRAMMAR */
    assert_int_equal(ngx_rbcs_amount_check_grammar(NULL, 0, NULL, NULL, NULL),
                     NGX_RBCS_AMOUNT_EGRAMMAR);

    /* grammar with NULL outputs */
    assert_int_equal(ngx_rbcs_amount_check_grammar((const u_char *) "12.5", 4,
                                                   NULL, NULL, NULL),
                     NGX_RBCS_AMOUNT_OK);

    /* only len bytes are looked at */
    assert_int_equal(ngx_rbcs_amount_check_grammar((const u_char *) "12.5x", 4,
                                                   NULL, NULL, NULL),
                     NGX_RBCS_AMOUNT_OK);
}


static void
test_parse(void **state)
{
    int                  rc;
    char                 got[64];
    size_t               i;
    ngx_rbcs_uint128_t   units, expected;
    const parse_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        c = &parse_cases[i];

        units = 12345;
        rc = ngx_rbcs_amount_parse(c->s, c->len, c->scale, c->allow_zero,
                                   &units);
        expected = u128_from(c->units);

        if (rc != c->rc || units != expected) {
            fail_msg("parse \"%.*s\" scale %u%s: %s %s, got %s %s",
                     (int) c->len, c->s, c->scale,
                     c->allow_zero ? " allow_zero" : "", rc_name(c->rc),
                     c->units, rc_name(rc), u128_str(units, got));
        }
    }
}


static void
test_format(void **state)
{
    size_t                n, i, k;
    u_char                buf[NGX_RBCS_AMOUNT_MAX_LEN + 16];
    const format_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
        c = &format_cases[i];

        memset(buf, 0xa5, sizeof(buf));

        n = ngx_rbcs_amount_format(buf, u128_from(c->units), c->scale,
                                   c->negative);

        if (n != strlen(c->expected) || memcmp(buf, c->expected, n) != 0) {
            fail_msg("format %s scale %u%s -> \"%s\": \"%.*s\"", c->units,
                     c->scale, c->negative ? " negative" : "", c->expected,
                     (int) n, buf);
        }

        for (k = n; k < sizeof(buf); k++) {
            if (buf[k] != 0xa5) {
                break;
            }
        }

        if (n > NGX_RBCS_AMOUNT_MAX_LEN || k != sizeof(buf)) {
            fail_msg("format %s scale %u%s writes only %zu bytes", c->units,
                     c->scale, c->negative ? " negative" : "", n);
        }
    }
}


static void
test_from_decimal(void **state)
{
    int                    rc, neg;
    char                   got[64];
    size_t                 i;
    ngx_rbcs_uint128_t     units, expected;
    const decimal_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(decimal_cases) / sizeof(decimal_cases[0]); i++) {
        c = &decimal_cases[i];

        units = 12345;
        neg = 7;
        rc = ngx_rbcs_amount_from_decimal(c->s, c->len, c->scale, &units,
                                          &neg);
        expected = u128_from(c->units);

        if (rc != c->rc || units != expected || neg != c->negative) {
            fail_msg("from_decimal \"%.*s\" scale %u: %d %s%s, got %d %s "
                     "negative=%d", (int) c->len, c->s, c->scale, c->rc,
                     c->negative ? "-" : "", c->units, rc,
                     u128_str(units, got), neg);
        }
    }
}


static void
test_normalize(void **state)
{
    size_t                   i, n;
    u_char                   buf[64];
    const normalize_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(normalize_cases) / sizeof(normalize_cases[0]);
         i++)
    {
        c = &normalize_cases[i];

        n = ngx_rbcs_amount_normalize(buf, c->s, c->len);

        if (n != strlen(c->expected) || memcmp(buf, c->expected, n) != 0) {
            fail_msg("normalize \"%.*s\" -> \"%s\": \"%.*s\"", (int) c->len,
                     c->s, c->expected, (int) n, buf);
        }

        /* in place */
        memcpy(buf, c->s, c->len);
        n = ngx_rbcs_amount_normalize(buf, buf, c->len);

        if (n != strlen(c->expected) || memcmp(buf, c->expected, n) != 0) {
            fail_msg("normalize in place \"%.*s\" -> \"%s\": \"%.*s\"",
                     (int) c->len, c->s, c->expected, (int) n, buf);
        }
    }
}


static void
test_long(void **state)
{
    int                 rc, zero, neg;
    u_char             *p, buf[NGX_RBCS_AMOUNT_MAX_LEN];
    size_t              n, nint, nfrac;
    ngx_rbcs_uint128_t  units;

    (void) state;

    p = malloc(LONG_LEN + 16);
    assert_non_null(p);

    /* 60000 integer digits */

    memset(p, '1', LONG_LEN);

    rc = ngx_rbcs_amount_check_grammar(p, LONG_LEN, &nint, &nfrac, &zero);
    /* grammar: LONG_LEN integer digits are grammatical */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && nint == LONG_LEN && nfrac == 0
                && !zero);

    rc = ngx_rbcs_amount_parse(p, LONG_LEN, 2, 0, &units);
    /* parse: LONG_LEN integer digits is ERANGE */
    assert_true(rc == NGX_RBCS_AMOUNT_ERANGE && units == 0);

    rc = ngx_rbcs_amount_from_decimal(p, LONG_LEN, 2, &units, &neg);
    /* from_decimal: LONG_LEN integer digits is an error */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_ERROR);

    /* 60000 digits then junk: grammar is checked before range */

    p[LONG_LEN] = 'x';
    rc = ngx_rbcs_amount_parse(p, LONG_LEN + 1, 2, 0, &units);
    /* parse: LONG_LEN digits and junk is EGRAMMAR */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_EGRAMMAR);

    /* "1" followed by 60000 zeros, then ".5" */

    p[0] = '1';
    memset(p + 1, '0', LONG_LEN);
    memcpy(p + 1 + LONG_LEN, ".5", 2);
    rc = ngx_rbcs_amount_parse(p, LONG_LEN + 3, 18, 0, &units);
    /* parse: 1e60000 + 0.5 is ERANGE */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_ERANGE);

    /* 60000 zeros */

    memset(p, '0', LONG_LEN);
    rc = ngx_rbcs_amount_check_grammar(p, LONG_LEN, &nint, &nfrac, &zero);
    /* grammar: LONG_LEN zeros is EGRAMMAR */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_EGRAMMAR);

    /* leading zeros then 7 for the database parser */

    p[LONG_LEN] = '7';
    rc = ngx_rbcs_amount_from_decimal(p, LONG_LEN + 1, 2, &units, &neg);
    /* from_decimal: LONG_LEN leading zeros then 7 */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && units == 700 && neg == 0);

    p[0] = '-';
    rc = ngx_rbcs_amount_from_decimal(p, LONG_LEN, 2, &units, &neg);
    /* from_decimal: minus and LONG_LEN - 1 zeros is 0, not negative */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && units == 0 && neg == 0);

    /* "1." followed by 60000 zeros */

    memcpy(p, "1.", 2);
    memset(p + 2, '0', LONG_LEN);

    rc = ngx_rbcs_amount_check_grammar(p, LONG_LEN + 2, &nint, &nfrac,
                                       &zero);
    /* grammar: 1 and LONG_LEN fractional zeros */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && nint == 1 && nfrac == LONG_LEN
                && !zero);

    rc = ngx_rbcs_amount_parse(p, LONG_LEN + 2, 18, 0, &units);
    /* parse: LONG_LEN fractional zeros is ESCALE at scale 18 */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_ESCALE);

    rc = ngx_rbcs_amount_from_decimal(p, LONG_LEN + 2, 18, &units, &neg);
    /* from_decimal: 1 and LONG_LEN fractional zeros */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && units == 1000000000000000000ULL
                && neg == 0);

    n = ngx_rbcs_amount_normalize(buf, p, LONG_LEN + 2);
    /* normalize: 1 and LONG_LEN fractional zeros */
    assert_int_equal(n, 1);
    assert_memory_equal(buf, "1", 1);

    p[LONG_LEN + 2] = '.';
    rc = ngx_rbcs_amount_parse(p, LONG_LEN + 3, 18, 0, &units);
    /* parse: 1.000...0. is EGRAMMAR */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_EGRAMMAR);

    p[LONG_LEN + 1] = '1';
    rc = ngx_rbcs_amount_from_decimal(p, LONG_LEN + 2, 18, &units, &neg);
    /* from_decimal: non-zero digit LONG_LEN places after the dot */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_ERROR);

    /* "0." followed by 60000 zeros */

    p[0] = '0';
    p[LONG_LEN + 1] = '0';

    rc = ngx_rbcs_amount_check_grammar(p, LONG_LEN + 2, &nint, &nfrac,
                                       &zero);
    /* grammar: 0 and LONG_LEN fractional zeros is zero */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && nint == 1 && nfrac == LONG_LEN
                && zero);

    rc = ngx_rbcs_amount_parse(p, LONG_LEN + 2, 18, 1, &units);
    /* parse: 0 and LONG_LEN fractional zeros is ESCALE */
    assert_int_equal(rc, NGX_RBCS_AMOUNT_ESCALE);

    n = ngx_rbcs_amount_normalize(p, p, LONG_LEN + 2);
    /* normalize in place: 0 and LONG_LEN fractional zeros */
    assert_int_equal(n, 1);
    assert_memory_equal(p, "0", 1);

    free(p);
}


/*
 * Random amounts at every scale: parse -> format gives the input back,
 * normalize keeps the value, from_decimal reads what format wrote.
 */

static void
test_round_trip(void **state)
{
    int                 rc, neg, nint, nfrac, k, iter;
    u_char              in[64], out[NGX_RBCS_AMOUNT_MAX_LEN], norm[64];
    size_t              len, n, nn;
    unsigned            scale;
    uint64_t            seed;
    ngx_rbcs_uint128_t  units, units2;

    (void) state;

    /* the maximum DECIMAL(36,18) value */

    rc = ngx_rbcs_amount_parse(S(MAX_DECIMAL), 18, 0, &units);
    n = ngx_rbcs_amount_format(out, units, 18, 0);
    assert_int_equal(rc, NGX_RBCS_AMOUNT_OK);
    assert_int_equal(n, sizeof(MAX_DECIMAL) - 1);
    assert_memory_equal(out, MAX_DECIMAL, n);

    n = ngx_rbcs_amount_format(out, units, 18, 1);
    rc = ngx_rbcs_amount_from_decimal(out, n, 18, &units2, &neg);
    /* -MAX_DECIMAL through from_decimal */
    assert_true(rc == NGX_RBCS_AMOUNT_OK && units2 == units && neg == 1);

    seed = 88172645463325252ULL;

    for (scale = 0; scale <= NGX_RBCS_AMOUNT_MAX_SCALE; scale++) {
        for (iter = 0; iter < 2000; iter++) {

            nint = 1 + (int) (RND() % 18);
            len = 0;

            in[len++] = (u_char) ('1' + RND() % 9);
            for (k = 1; k < nint; k++) {
                in[len++] = (u_char) ('0' + RND() % 10);
            }

            if (iter % 7 == 0) {
                len = 0;
                in[len++] = '0';
            }

            if (scale) {
                in[len++] = '.';
                for (k = 0; k < (int) scale; k++) {
                    in[len++] = (u_char) ('0' + RND() % 10);
                }
            }

            rc = ngx_rbcs_amount_parse(in, len, scale, 1, &units);
            n = ngx_rbcs_amount_format(out, units, scale, 0);

            if (rc != NGX_RBCS_AMOUNT_OK || n != len
                || memcmp(in, out, len) != 0)
            {
                fail_msg("scale %u: parse/format \"%.*s\" gave %d \"%.*s\"",
                         scale, (int) len, in, rc, (int) n, out);
            }

            /* normalized text parses to the same value */

            nn = ngx_rbcs_amount_normalize(norm, in, len);
            rc = ngx_rbcs_amount_parse(norm, nn, scale, 1, &units2);

            if (rc != NGX_RBCS_AMOUNT_OK || units2 != units
                || (nn > 0 && memchr(norm, '.', nn) != NULL
                    && norm[nn - 1] == '0'))
            {
                fail_msg("scale %u: normalize \"%.*s\" gave \"%.*s\"",
                         scale, (int) len, in, (int) nn, norm);
            }

            /* a shorter fraction means the same value */

            nfrac = (int) scale;
            while (nfrac > 0 && in[len - 1] == '0') {
                len--;
                nfrac--;
            }

            if (nfrac == 0 && scale) {
                len--;
            }

            rc = ngx_rbcs_amount_parse(in, len, scale, 1, &units2);
            if (rc != NGX_RBCS_AMOUNT_OK || units2 != units) {
                fail_msg("scale %u: short form \"%.*s\" gave %d", scale,
                         (int) len, in, rc);
            }

            /* the database parser reads the formatted negative amount */

            n = ngx_rbcs_amount_format(out, units, scale, 1);
            rc = ngx_rbcs_amount_from_decimal(out, n, scale, &units2, &neg);

            if (rc != NGX_RBCS_AMOUNT_OK || units2 != units
                || neg != (units != 0))
            {
                fail_msg("scale %u: from_decimal \"%.*s\" gave %d", scale,
                         (int) n, out, rc);
            }
        }
    }
}


static const char *
u128_str(ngx_rbcs_uint128_t v, char *buf)
{
    char  tmp[64], *p;

    p = tmp + sizeof(tmp);
    *--p = '\0';

    do {
        *--p = (char) ('0' + (int) (v % 10));
        v /= 10;
    } while (v);

    strcpy(buf, p);

    return buf;
}


static ngx_rbcs_uint128_t
u128_from(const char *s)
{
    ngx_rbcs_uint128_t  v;

    v = 0;

    while (*s) {
        v = v * 10 + (ngx_rbcs_uint128_t) (*s++ - '0');
    }

    return v;
}


static const char *
rc_name(int rc)
{
    switch (rc) {
    case NGX_RBCS_AMOUNT_OK:
        return "OK";
    case NGX_RBCS_AMOUNT_EGRAMMAR:
        return "EGRAMMAR";
    case NGX_RBCS_AMOUNT_ESCALE:
        return "ESCALE";
    case NGX_RBCS_AMOUNT_EZERO:
        return "EZERO";
    case NGX_RBCS_AMOUNT_ERANGE:
        return "ERANGE";
    default:
        return "?";
    }
}
