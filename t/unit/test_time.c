
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
#include <time.h>
#include <cmocka.h>

#include "ngx_rbcs_time.h"


#define S(s)      (const u_char *) (s), (sizeof(s) - 1)
#define LONG_LEN  60000


typedef struct {
    const u_char  *s;
    size_t         len;
    const char    *expected;   /* formatted UTC, NULL: refused */
} parse_case_t;


typedef struct {
    const u_char  *s;
    size_t         len;
    int64_t        ms;
} ms_case_t;


typedef struct {
    int64_t        ms;
    const char    *expected;   /* "" if refused */
} format_case_t;


typedef struct {
    const u_char  *s;
    size_t         len;
    const char    *expected;   /* "" if refused */
} datetime_case_t;


static void test_parse(void **state);
static void test_ms(void **state);
static void test_format(void **state);
static void test_from_datetime(void **state);
static void test_long(void **state);
static void test_every_day(void **state);
static void test_every_date(void **state);


static const parse_case_t  parse_cases[] = {

    /* UTC */
    { S("2026-11-20T10:00:00.123Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00Z"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20t10:00:00z"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20t10:00:00.5Z"), "2026-11-20T10:00:00.500Z" },
    { S("2026-11-20T10:00:00.5z"), "2026-11-20T10:00:00.500Z" },
    { S("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00.000Z" },
    { S("2026-12-31T23:59:59Z"), "2026-12-31T23:59:59.000Z" },

    /* fractions of 1..9 digits, truncated to milliseconds */
    { S("2026-11-20T10:00:00.1Z"), "2026-11-20T10:00:00.100Z" },
    { S("2026-11-20T10:00:00.12Z"), "2026-11-20T10:00:00.120Z" },
    { S("2026-11-20T10:00:00.123Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.1239Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.12399Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.123999Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.1239999Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.12399999Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.123999999Z"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20T10:00:00.9999Z"), "2026-11-20T10:00:00.999Z" },
    { S("2026-11-20T23:59:59.999999999Z"), "2026-11-20T23:59:59.999Z" },
    { S("2026-11-20T10:00:00.000000001Z"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20T10:00:00.0Z"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20T10:00:00.05Z"), "2026-11-20T10:00:00.050Z" },
    { S("2026-11-20T10:00:00.007Z"), "2026-11-20T10:00:00.007Z" },
    { S("2026-11-20T10:00:00.9999+05:30"), "2026-11-20T04:30:00.999Z" },

    /* offsets */
    { S("2026-11-20T10:00:00+05:30"), "2026-11-20T04:30:00.000Z" },
    { S("2026-11-20T10:00:00.5-08:00"), "2026-11-20T18:00:00.500Z" },
    { S("2026-11-20T10:00:00+00:00"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20T10:00:00-00:00"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20T10:00:00+23:59"), "2026-11-19T10:01:00.000Z" },
    { S("2026-11-20T10:00:00-23:59"), "2026-11-21T09:59:00.000Z" },
    { S("2026-11-20T10:00:00+00:01"), "2026-11-20T09:59:00.000Z" },
    { S("2026-11-20T20:00:00-08:00"), "2026-11-21T04:00:00.000Z" },
    { S("2026-11-20T02:00:00+05:30"), "2026-11-19T20:30:00.000Z" },
    { S("2026-12-31T20:00:00-08:00"), "2027-01-01T04:00:00.000Z" },
    { S("2026-12-31T23:59:59.999-00:01"), "2027-01-01T00:00:59.999Z" },
    { S("2027-01-01T03:00:00+05:30"), "2026-12-31T21:30:00.000Z" },
    { S("2027-01-01T00:00:00+00:01"), "2026-12-31T23:59:00.000Z" },
    { S("2024-02-28T23:00:00-02:00"), "2024-02-29T01:00:00.000Z" },
    { S("2023-02-28T23:00:00-02:00"), "2023-03-01T01:00:00.000Z" },
    { S("2024-03-01T01:00:00+02:00"), "2024-02-29T23:00:00.000Z" },
    { S("2023-03-01T01:00:00+02:00"), "2023-02-28T23:00:00.000Z" },
    { S("2026-11-20T10:00:00+24:00"), NULL },
    { S("2026-11-20T10:00:00+05:60"), NULL },
    { S("2026-11-20T10:00:00+99:00"), NULL },
    { S("2026-11-20T10:00:00+0530"), NULL },
    { S("2026-11-20T10:00:00+05"), NULL },
    { S("2026-11-20T10:00:00+5:30"), NULL },
    { S("2026-11-20T10:00:00+05:3"), NULL },
    { S("2026-11-20T10:00:00+05:300"), NULL },
    { S("2026-11-20T10:00:00+05-30"), NULL },
    { S("2026-11-20T10:00:00+a5:30"), NULL },
    { S("2026-11-20T10:00:00+05:3a"), NULL },
    { S("2026-11-20T10:00:00 +05:30"), NULL },
    { S("2026-11-20T10:00:00+05:30Z"), NULL },
    { S("2026-11-20T10:00:00Z+05:30"), NULL },
    { S("2026-11-20T10:00:00UTC"), NULL },
    { S("2026-11-20T10:00:00GMT"), NULL },

    /* leap years */
    { S("2024-02-29T00:00:00Z"), "2024-02-29T00:00:00.000Z" },
    { S("2023-02-29T00:00:00Z"), NULL },
    { S("2023-02-28T00:00:00Z"), "2023-02-28T00:00:00.000Z" },
    { S("1900-02-29T00:00:00Z"), NULL },
    { S("1900-02-28T00:00:00Z"), "1900-02-28T00:00:00.000Z" },
    { S("2000-02-29T00:00:00Z"), "2000-02-29T00:00:00.000Z" },
    { S("2100-02-29T00:00:00Z"), NULL },
    { S("1600-02-29T00:00:00Z"), "1600-02-29T00:00:00.000Z" },
    { S("2024-02-30T00:00:00Z"), NULL },

    /* calendar and clock ranges */
    { S("2026-01-31T00:00:00Z"), "2026-01-31T00:00:00.000Z" },
    { S("2026-01-32T00:00:00Z"), NULL },
    { S("2026-04-30T00:00:00Z"), "2026-04-30T00:00:00.000Z" },
    { S("2026-04-31T00:00:00Z"), NULL },
    { S("2026-06-31T00:00:00Z"), NULL },
    { S("2026-09-31T00:00:00Z"), NULL },
    { S("2026-11-31T00:00:00Z"), NULL },
    { S("2026-12-31T00:00:00Z"), "2026-12-31T00:00:00.000Z" },
    { S("2026-13-01T00:00:00Z"), NULL },
    { S("2026-00-01T00:00:00Z"), NULL },
    { S("2026-01-00T00:00:00Z"), NULL },
    { S("2026-11-20T23:59:59Z"), "2026-11-20T23:59:59.000Z" },
    { S("2026-11-20T23:59:60Z"), NULL },
    { S("2016-12-31T23:59:60Z"), NULL },
    { S("2026-11-20T24:00:00Z"), NULL },
    { S("2026-11-20T23:60:00Z"), NULL },
    { S("2026-11-20T99:99:99Z"), NULL },

    /* year range after conversion to UTC */
    { S("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00.000Z" },
    { S("0000-01-01T00:00:00+00:01"), NULL },
    { S("0000-01-01T05:29:59.999+05:30"), NULL },
    { S("0000-12-31T23:59:59.999Z"), "0000-12-31T23:59:59.999Z" },
    { S("0000-12-31T23:00:00-02:00"), "0001-01-01T01:00:00.000Z" },
    { S("0000-02-29T00:00:00Z"), "0000-02-29T00:00:00.000Z" },
    { S("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00.000Z" },
    { S("0001-01-01T00:00:00+00:01"), "0000-12-31T23:59:00.000Z" },
    { S("0001-01-01T05:29:59.999+05:30"), "0000-12-31T23:59:59.999Z" },
    { S("0001-01-01T05:30:00+05:30"), "0001-01-01T00:00:00.000Z" },
    { S("9999-12-31T23:59:59.999Z"), "9999-12-31T23:59:59.999Z" },
    { S("9999-12-31T23:59:59.999999999Z"), "9999-12-31T23:59:59.999Z" },
    { S("9999-12-31T23:00:00-02:00"), NULL },
    { S("9999-12-31T23:59:59.999-00:01"), NULL },
    { S("9999-12-31T23:59:59+00:01"), "9999-12-31T23:58:59.000Z" },
    { S("1970-01-01T00:00:00Z"), "1970-01-01T00:00:00.000Z" },
    { S("1969-12-31T23:59:59.999Z"), "1969-12-31T23:59:59.999Z" },
    { S("1969-07-20T20:17:40Z"), "1969-07-20T20:17:40.000Z" },

    /* malformed */
    { S(""), NULL },
    { S("2026-11-20"), NULL },
    { S("2026-11-20T"), NULL },
    { S("2026-11-20T10:00:00"), NULL },
    { S("2026-11-20T10:00:00.123"), NULL },
    { S("2026-11-20T10:00Z"), NULL },
    { S("2026-11-20T10:00:0Z"), NULL },
    { S("2026-11-20 10:00:00Z"), NULL },
    { S("2026-11-20_10:00:00Z"), NULL },
    { S("2026-11-20X10:00:00Z"), NULL },
    { S("2026-11-20T10:00:00.Z"), NULL },
    { S("2026-11-20T10:00:00,123Z"), NULL },
    { S("2026-11-20T10:00:00.12a3Z"), NULL },
    { S("2026-11-20T10:00:00..1Z"), NULL },
    { S("2026-11-20T10:00:00Z "), NULL },
    { S("2026-11-20T10:00:00ZZ"), NULL },
    { S("2026-11-20T10:00:00Zjunk"), NULL },
    { S("2026-11-20T10:00:00Z\n"), NULL },
    { S("2026-11-20T10:00:00Z\0"), NULL },
    { S("2026-11-20T10:00:00.123\0Z"), NULL },
    { S(" 2026-11-20T10:00:00Z"), NULL },
    { S("+2026-11-20T10:00:00Z"), NULL },
    { S("-2026-11-20T10:00:00Z"), NULL },
    { S("20026-11-20T10:00:00Z"), NULL },
    { S("26-11-20T10:00:00Z"), NULL },
    { S("2026-1-20T10:00:00Z"), NULL },
    { S("2026-11-2T10:00:00Z"), NULL },
    { S("2026/11/20T10:00:00Z"), NULL },
    { S("2026-11-20T10.00.00Z"), NULL },
    { S("2026-11-20T1a:00:00Z"), NULL },
    { S("2026-11-20T10:00: 0Z"), NULL },
    { S("2026-11-20T10:00:+1Z"), NULL },
    { S("2026-1a-20T10:00:00Z"), NULL },
    { S("2026-11-20T10:00:00 Z"), NULL },
    { S("20261120T100000Z"), NULL },
    { S("\xef\xbc\x92" "026-11-20T10:00:00Z"), NULL },
};


static const ms_case_t  ms_cases[] = {
    { S("1970-01-01T00:00:00Z"), 0 },
    { S("1970-01-01T00:00:00.001Z"), 1 },
    { S("1969-12-31T23:59:59.999Z"), -1 },
    { S("1970-01-01T05:30:00+05:30"), 0 },
    { S("1969-12-31T16:00:00-08:00"), 0 },
    { S("1969-07-20T20:17:40Z"), -14182940000LL },
    { S("2026-11-20T10:00:00.123Z"), 1795168800123LL },
    { S("2000-03-01T00:00:00Z"), 951868800000LL },
    { S("2038-01-19T03:14:08Z"), 2147483648000LL },
    { S("0001-01-01T00:00:00Z"), -62135596800000LL },
    { S("0000-01-01T00:00:00Z"), NGX_RBCS_TIME_MIN_MS },
    { S("9999-12-31T23:59:59.999Z"), NGX_RBCS_TIME_MAX_MS },
};


static const format_case_t  format_cases[] = {
    { 0, "1970-01-01T00:00:00.000Z" },
    { 1, "1970-01-01T00:00:00.001Z" },
    { -1, "1969-12-31T23:59:59.999Z" },
    { -1000, "1969-12-31T23:59:59.000Z" },
    { -1001, "1969-12-31T23:59:58.999Z" },
    { -86400000LL, "1969-12-31T00:00:00.000Z" },
    { -86400001LL, "1969-12-30T23:59:59.999Z" },
    { 86399999LL, "1970-01-01T23:59:59.999Z" },
    { 1795168800123LL, "2026-11-20T10:00:00.123Z" },
    { 951782400000LL, "2000-02-29T00:00:00.000Z" },
    { NGX_RBCS_TIME_MIN_MS, "0000-01-01T00:00:00.000Z" },
    { -62135596800000LL, "0001-01-01T00:00:00.000Z" },
    { NGX_RBCS_TIME_MAX_MS, "9999-12-31T23:59:59.999Z" },
    { NGX_RBCS_TIME_MIN_MS - 1, "" },
    { NGX_RBCS_TIME_MAX_MS + 1, "" },
    { INT64_MIN, "" },
    { INT64_MAX, "" },
};


static const datetime_case_t  datetime_cases[] = {
    { S("2026-11-20 10:00:00.123"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20 10:00:00"), "2026-11-20T10:00:00.000Z" },
    { S("2026-11-20 10:00:00.1"), "2026-11-20T10:00:00.100Z" },
    { S("2026-11-20 10:00:00.12"), "2026-11-20T10:00:00.120Z" },
    { S("2026-11-20 10:00:00.1239"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20 10:00:00.12399"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20 10:00:00.123999"), "2026-11-20T10:00:00.123Z" },
    { S("2026-11-20 10:00:00.000"), "2026-11-20T10:00:00.000Z" },
    { S("1000-01-01 00:00:00.000"), "1000-01-01T00:00:00.000Z" },
    { S("9999-12-31 23:59:59.999999"), "9999-12-31T23:59:59.999Z" },
    { S("0001-01-01 00:00:00"), "0001-01-01T00:00:00.000Z" },
    { S("1969-12-31 23:59:59.999"), "1969-12-31T23:59:59.999Z" },
    { S("2024-02-29 12:00:00"), "2024-02-29T12:00:00.000Z" },
    { S("2026-11-20 10:00:00.1234567"), "" },
    { S("2026-11-20 10:00:00."), "" },
    { S("2026-11-20 10:00:00.12a"), "" },
    { S("2026-11-20 10:00:00 "), "" },
    { S("2026-11-20 10:00:00Z"), "" },
    { S("2026-11-20T10:00:00"), "" },
    { S("2026-11-20T10:00:00.123Z"), "" },
    { S("2026-11-20 10:00"), "" },
    { S("2026-11-20"), "" },
    { S(""), "" },
    { S("0000-00-00 00:00:00"), "" },
    { S("0000-01-01 00:00:00"), "0000-01-01T00:00:00.000Z" },
    { S("2023-02-29 00:00:00"), "" },
    { S("2026-13-01 00:00:00"), "" },
    { S("2026-11-20 24:00:00"), "" },
    { S("2026-11-20 23:59:60"), "" },
    { S("2026-11-20 10:00:00\0"), "" },
};


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_ms),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_from_datetime),
        cmocka_unit_test(test_long),
        cmocka_unit_test(test_every_day),
        cmocka_unit_test(test_every_date),
    };

    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}


static void
test_parse(void **state)
{
    int                  rc;
    u_char               buf[NGX_RBCS_TIME_LEN];
    size_t               i, n;
    int64_t              ms;
    const parse_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        c = &parse_cases[i];

        ms = 0x5a5a5a5a;
        rc = ngx_rbcs_time_parse_rfc3339(c->s, c->len, &ms);

        if (c->expected == NULL) {
            if (rc != -1 || ms != 0x5a5a5a5a) {
                fail_msg("parse \"%.*s\" is refused", (int) c->len, c->s);
            }

            continue;
        }

        n = rc == 0 ? ngx_rbcs_time_format(buf, ms) : 0;

        if (rc != 0 || n != strlen(c->expected)
            || memcmp(buf, c->expected, n) != 0)
        {
            fail_msg("parse \"%.*s\" -> %s: rc %d, \"%.*s\"",
                     (int) c->len, c->s, c->expected, rc, (int) n, buf);
        }
    }

    /* parse NULL, 0 is refused */
    assert_int_equal(ngx_rbcs_time_parse_rfc3339(NULL, 0, &ms), -1);

    /* only len bytes are looked at */
    assert_int_equal(ngx_rbcs_time_parse_rfc3339(
                         (const u_char *) "2026-11-20T10:00:00Zjunk", 20, &ms),
                     0);
}


static void
test_ms(void **state)
{
    int               rc;
    size_t            i;
    int64_t           ms;
    const ms_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(ms_cases) / sizeof(ms_cases[0]); i++) {
        c = &ms_cases[i];

        ms = 0x5a5a5a5a;
        rc = ngx_rbcs_time_parse_rfc3339(c->s, c->len, &ms);

        if (rc != 0 || ms != c->ms) {
            fail_msg("parse \"%.*s\" is %lld ms: rc %d, %lld ms",
                     (int) c->len, c->s, (long long) c->ms, rc,
                     (long long) ms);
        }
    }
}


static void
test_format(void **state)
{
    u_char                buf[NGX_RBCS_TIME_LEN + 8];
    size_t                i, k, n;
    const format_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
        c = &format_cases[i];

        memset(buf, 0xa5, sizeof(buf));
        n = ngx_rbcs_time_format(buf, c->ms);

        if (n != strlen(c->expected) || memcmp(buf, c->expected, n) != 0) {
            fail_msg("format %lld -> \"%s\": \"%.*s\"", (long long) c->ms,
                     c->expected, (int) n, buf);
        }

        for (k = n; k < sizeof(buf); k++) {
            if (buf[k] != 0xa5) {
                break;
            }
        }

        if ((n != 0 && n != NGX_RBCS_TIME_LEN) || k != sizeof(buf)) {
            fail_msg("format %lld writes only %zu bytes", (long long) c->ms,
                     n);
        }
    }
}


static void
test_from_datetime(void **state)
{
    u_char                  buf[NGX_RBCS_TIME_LEN + 8];
    size_t                  i, k, n;
    const datetime_case_t  *c;

    (void) state;

    for (i = 0; i < sizeof(datetime_cases) / sizeof(datetime_cases[0]);
         i++)
    {
        c = &datetime_cases[i];

        memset(buf, 0xa5, sizeof(buf));
        n = ngx_rbcs_time_from_datetime(buf, c->s, c->len);

        if (n != strlen(c->expected) || memcmp(buf, c->expected, n) != 0) {
            fail_msg("from_datetime \"%.*s\" -> \"%s\": \"%.*s\"",
                     (int) c->len, c->s, c->expected, (int) n, buf);
        }

        for (k = n; k < sizeof(buf); k++) {
            if (buf[k] != 0xa5) {
                break;
            }
        }

        if (k != sizeof(buf)) {
            fail_msg("from_datetime \"%.*s\" writes only %zu",
                     (int) c->len, c->s, n);
        }
    }

    /* from_datetime NULL, 0 is refused */
    assert_int_equal(ngx_rbcs_time_from_datetime(buf, NULL, 0), 0);
}


static void
test_long(void **state)
{
    int      rc;
    u_char  *p, buf[NGX_RBCS_TIME_LEN];
    size_t   n, len;
    int64_t  ms;

    (void) state;

    p = malloc(LONG_LEN + 64);
    assert_non_null(p);

    memcpy(p, "2026-11-20T10:00:00.", 20);
    memset(p + 20, '9', LONG_LEN);
    len = 20 + LONG_LEN;
    memcpy(p + len, "-08:00", 6);
    len += 6;

    rc = ngx_rbcs_time_parse_rfc3339(p, len, &ms);
    n = rc == 0 ? ngx_rbcs_time_format(buf, ms) : 0;
    /* LONG_LEN fraction digits are truncated */
    assert_int_equal(n, NGX_RBCS_TIME_LEN);
    assert_memory_equal(buf, "2026-11-20T18:00:00.999Z", n);

    /* ... then junk */
    p[len - 6] = 'x';
    assert_int_equal(ngx_rbcs_time_parse_rfc3339(p, len, &ms), -1);

    /* LONG_LEN nines */
    memset(p, '9', LONG_LEN);
    assert_int_equal(ngx_rbcs_time_parse_rfc3339(p, LONG_LEN, &ms), -1);

    /* from_datetime: LONG_LEN fraction digits */
    memcpy(p, "2026-11-20 10:00:00.", 20);
    memset(p + 20, '1', LONG_LEN);
    assert_int_equal(ngx_rbcs_time_from_datetime(buf, p, 20 + LONG_LEN), 0);

    free(p);
}


/*
 * Every day of 0001..9999 with a varying time of day: format agrees with
 * the C library's gmtime_r() and parse reads the text back.
 */

static void
test_every_day(void **state)
{
    char       exp[64];
    u_char     buf[NGX_RBCS_TIME_LEN];
    size_t     n;
    time_t     t;
    int64_t    day, first, last, ms, back;
    struct tm  tm;

    (void) state;

    first = NGX_RBCS_TIME_MIN_MS / 86400000LL;
    last = NGX_RBCS_TIME_MAX_MS / 86400000LL;

    for (day = first; day <= last; day++) {
        ms = day * 86400000LL
             + (int64_t) ((uint64_t) (day * 7919 + 13) % 86400000ULL);

        n = ngx_rbcs_time_format(buf, ms);

        t = (time_t) ((ms - (ms % 1000 + 1000) % 1000) / 1000);

        if (gmtime_r(&t, &tm) == NULL) {
            fail_msg("gmtime_r(%lld) failed", (long long) t);
        }

        snprintf(exp, sizeof(exp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int) ((ms % 1000 + 1000) % 1000));

        if (n != NGX_RBCS_TIME_LEN || memcmp(buf, exp, n) != 0) {
            fail_msg("format %lld: \"%.*s\", gmtime_r: \"%s\"",
                     (long long) ms, (int) n, buf, exp);
        }

        if (ngx_rbcs_time_parse_rfc3339(buf, n, &back) != 0 || back != ms) {
            fail_msg("parse \"%.*s\" did not give %lld", (int) n, buf,
                     (long long) ms);
        }
    }
}


/* every YYYY-MM-DD with day 1..31: valid exactly for real dates */

static void
test_every_date(void **state)
{
    int       rc, valid, leap, dim;
    char      s[32];
    int64_t   ms;
    unsigned  y, m, d;

    static const int  days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    (void) state;

    for (y = 1; y <= 9999; y++) {
        leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

        for (m = 1; m <= 12; m++) {
            dim = days[m - 1] + (m == 2 && leap);

            for (d = 1; d <= 31; d++) {
                snprintf(s, sizeof(s), "%04u-%02u-%02uT12:00:00Z", y, m, d);

                rc = ngx_rbcs_time_parse_rfc3339((u_char *) s, strlen(s),
                                                 &ms);
                valid = ((int) d <= dim);

                if ((rc == 0) != valid) {
                    fail_msg("\"%s\": rc %d", s, rc);
                }
            }
        }
    }
}
