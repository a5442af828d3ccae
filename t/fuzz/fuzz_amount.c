
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of src/ngx_rbcs_amount.c: the amount grammar of
 * request bodies, the parse at every scale, the formatter (a parsed
 * amount formats back to a text that parses to the same units, and whose
 * normalized value text is the input's), the DECIMAL text of the database
 * and the normalized replay key.  The input is the amount text.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_rbcs_amount.h"


#define FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)


static const unsigned  fuzz_scales[] = { 0, 2, 8, 18, 19 };


int LLVMFuzzerTestOneInput(const u_char *data, size_t size);


int
LLVMFuzzerTestOneInput(const u_char *data, size_t size)
{
    int                  rc, grc, zero, negative;
    size_t               n, k, idig, fdig, len;
    u_char              *p, *norm, *norm2;
    u_char               buf[NGX_RBCS_AMOUNT_MAX_LEN];
    unsigned             scale;
    ngx_rbcs_uint128_t   units, again;

    /* an exact copy: the parsers must not read past it */
    p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, size);

    grc = ngx_rbcs_amount_check_grammar(p, size, &idig, &fdig, &zero);
    FUZZ_CHECK(grc == NGX_RBCS_AMOUNT_OK || grc == NGX_RBCS_AMOUNT_EGRAMMAR);

    if (grc == NGX_RBCS_AMOUNT_OK) {
        FUZZ_CHECK(idig >= 1 && idig + fdig + (fdig ? 1 : 0) == size);

        norm = malloc(size);
        FUZZ_CHECK(norm != NULL);
        n = ngx_rbcs_amount_normalize(norm, p, size);
        FUZZ_CHECK(n >= 1 && n <= size);
        FUZZ_CHECK(ngx_rbcs_amount_check_grammar(norm, n, NULL, NULL, NULL)
                   == NGX_RBCS_AMOUNT_OK);

        /* in place, as the header allows */
        norm2 = malloc(size);
        FUZZ_CHECK(norm2 != NULL);
        memcpy(norm2, p, size);
        FUZZ_CHECK(ngx_rbcs_amount_normalize(norm2, norm2, size) == n
                   && memcmp(norm2, norm, n) == 0);
        free(norm2);

    } else {
        norm = NULL;
        n = 0;
        FUZZ_CHECK(idig == 0 && fdig == 0 && zero == 0);
    }

    for (k = 0; k < sizeof(fuzz_scales) / sizeof(fuzz_scales[0]); k++) {
        scale = fuzz_scales[k];

        rc = ngx_rbcs_amount_parse(p, size, scale, 1, &units);

        if (grc != NGX_RBCS_AMOUNT_OK) {
            FUZZ_CHECK(rc == NGX_RBCS_AMOUNT_EGRAMMAR && units == 0);
            continue;
        }

        if (rc != NGX_RBCS_AMOUNT_OK) {
            FUZZ_CHECK(units == 0);
            FUZZ_CHECK(rc == NGX_RBCS_AMOUNT_ERANGE
                       || rc == NGX_RBCS_AMOUNT_ESCALE);
            continue;
        }

        FUZZ_CHECK(scale <= NGX_RBCS_AMOUNT_MAX_SCALE);
        FUZZ_CHECK((units == 0) == (zero != 0));
        FUZZ_CHECK(ngx_rbcs_amount_parse(p, size, scale, 0, &again)
                   == (zero ? NGX_RBCS_AMOUNT_EZERO : NGX_RBCS_AMOUNT_OK));

        /* the round trip: format, parse again, same units, same value */

        len = ngx_rbcs_amount_format(buf, units, scale, 0);
        FUZZ_CHECK(len > 0 && len <= NGX_RBCS_AMOUNT_MAX_LEN);
        FUZZ_CHECK(ngx_rbcs_amount_parse(buf, len, scale, 1, &again)
                   == NGX_RBCS_AMOUNT_OK && again == units);

        {
            u_char  nbuf[NGX_RBCS_AMOUNT_MAX_LEN];
            size_t  nlen;

            nlen = ngx_rbcs_amount_normalize(nbuf, buf, len);
            FUZZ_CHECK(nlen == n && memcmp(nbuf, norm, n) == 0);
        }

        /* the database's form of the same value, either sign */

        negative = 0;
        FUZZ_CHECK(ngx_rbcs_amount_from_decimal(buf, len, scale, &again,
                                                &negative)
                   == NGX_RBCS_AMOUNT_OK
                   && again == units && negative == 0);

        len = ngx_rbcs_amount_format(buf, units, scale, 1);
        FUZZ_CHECK(len > 0 && len <= NGX_RBCS_AMOUNT_MAX_LEN);
        FUZZ_CHECK((buf[0] == '-') == (units != 0));
        FUZZ_CHECK(ngx_rbcs_amount_from_decimal(buf, len, scale, &again,
                                                &negative)
                   == NGX_RBCS_AMOUNT_OK
                   && again == units && negative == (units != 0));
    }

    /* the input as a database DECIMAL text */

    for (k = 0; k < sizeof(fuzz_scales) / sizeof(fuzz_scales[0]); k++) {
        negative = 7;
        rc = ngx_rbcs_amount_from_decimal(p, size, fuzz_scales[k], &units,
                                          &negative);

        if (rc != NGX_RBCS_AMOUNT_OK) {
            FUZZ_CHECK(rc == NGX_RBCS_AMOUNT_ERROR && units == 0
                       && negative == 0);
            continue;
        }

        FUZZ_CHECK(negative == 0 || negative == 1);
        FUZZ_CHECK(!(negative && units == 0));

        len = ngx_rbcs_amount_format(buf, units, fuzz_scales[k], negative);
        FUZZ_CHECK(len > 0);
        FUZZ_CHECK(ngx_rbcs_amount_from_decimal(buf, len, fuzz_scales[k],
                                                &again, &zero)
                   == NGX_RBCS_AMOUNT_OK
                   && again == units && zero == negative);
    }

    free(norm);
    free(p);

    return 0;
}
