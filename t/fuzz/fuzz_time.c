
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of src/ngx_rbcs_time.c: RFC 3339 timestamps of request
 * bodies (parsed, formatted back, parsed again to the same instant) and
 * the DATETIME texts of the database.  The input is the text.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_rbcs_time.h"


#define FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)


int LLVMFuzzerTestOneInput(const u_char *data, size_t size);


int
LLVMFuzzerTestOneInput(const u_char *data, size_t size)
{
    u_char   *p;
    u_char    buf[NGX_RBCS_TIME_LEN], buf2[NGX_RBCS_TIME_LEN];
    size_t    n;
    int64_t   ms, again;

    p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, size);

    ms = 0;

    if (ngx_rbcs_time_parse_rfc3339(p, size, &ms) == 0) {
        FUZZ_CHECK(ms >= NGX_RBCS_TIME_MIN_MS && ms <= NGX_RBCS_TIME_MAX_MS);

        n = ngx_rbcs_time_format(buf, ms);
        FUZZ_CHECK(n == NGX_RBCS_TIME_LEN);
        FUZZ_CHECK(ngx_rbcs_time_parse_rfc3339(buf, n, &again) == 0
                   && again == ms);
    }

    /* any instant formats, or is refused, without writing past buf */

    if (size >= sizeof(int64_t)) {
        memcpy(&ms, data, sizeof(int64_t));
        n = ngx_rbcs_time_format(buf, ms);
        FUZZ_CHECK(n == 0 || n == NGX_RBCS_TIME_LEN);
        FUZZ_CHECK((n != 0) == (ms >= NGX_RBCS_TIME_MIN_MS
                                && ms <= NGX_RBCS_TIME_MAX_MS));
        if (n) {
            FUZZ_CHECK(ngx_rbcs_time_parse_rfc3339(buf, n, &again) == 0
                       && again == ms);
        }
    }

    n = ngx_rbcs_time_from_datetime(buf, p, size);
    FUZZ_CHECK(n == 0 || n == NGX_RBCS_TIME_LEN);

    if (n) {
        /* the same instant as an RFC 3339 text */
        FUZZ_CHECK(ngx_rbcs_time_parse_rfc3339(buf, n, &ms) == 0);
        FUZZ_CHECK(ngx_rbcs_time_format(buf2, ms) == NGX_RBCS_TIME_LEN
                   && memcmp(buf, buf2, NGX_RBCS_TIME_LEN) == 0);
    }

    free(p);

    return 0;
}
