
/*
 * Copyright (C) RBCS
 */


#include "ngx_rbcs_amount.h"


#define ngx_rbcs_amount_is_digit(c)  ((c) >= '0' && (c) <= '9')

/* room for 39 digits of a 128-bit value, a dot, 18 zeros and a sign */
#define NGX_RBCS_AMOUNT_TMP_LEN      64


static const uint64_t  ngx_rbcs_amount_pow10[NGX_RBCS_AMOUNT_MAX_SCALE + 1] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL
};


static uint64_t ngx_rbcs_amount_digits(const u_char *p, size_t n);


int
ngx_rbcs_amount_check_grammar(const u_char *p, size_t len,
    size_t *int_digits, size_t *frac_digits, int *is_zero)
{
    int     zero;
    size_t  i, start, nint, nfrac;

    if (int_digits != NULL) {
        *int_digits = 0;
    }

    if (frac_digits != NULL) {
        *frac_digits = 0;
    }

    if (is_zero != NULL) {
        *is_zero = 0;
    }

    if (p == NULL || len == 0) {
        return NGX_RBCS_AMOUNT_EGRAMMAR;
    }

    /* integer part: "0" or [1-9][0-9]* */

    if (p[0] == '0') {
        i = 1;
        zero = 1;

    } else if (p[0] >= '1' && p[0] <= '9') {
        i = 1;
        zero = 0;

        while (i < len && ngx_rbcs_amount_is_digit(p[i])) {
            i++;
        }

    } else {
        return NGX_RBCS_AMOUNT_EGRAMMAR;
    }

    nint = i;
    nfrac = 0;

    /* optional fraction: \.[0-9]+ */

    if (i < len) {

        if (p[i] != '.') {
            return NGX_RBCS_AMOUNT_EGRAMMAR;
        }

        i++;
        start = i;

        while (i < len && ngx_rbcs_amount_is_digit(p[i])) {
            if (p[i] != '0') {
                zero = 0;
            }

            i++;
        }

        nfrac = i - start;

        if (nfrac == 0 || i != len) {
            return NGX_RBCS_AMOUNT_EGRAMMAR;
        }
    }

    if (int_digits != NULL) {
        *int_digits = nint;
    }

    if (frac_digits != NULL) {
        *frac_digits = nfrac;
    }

    if (is_zero != NULL) {
        *is_zero = zero;
    }

    return NGX_RBCS_AMOUNT_OK;
}


int
ngx_rbcs_amount_parse(const u_char *p, size_t len, unsigned scale,
    int allow_zero, ngx_rbcs_uint128_t *units)
{
    int       rc, zero;
    size_t    nint, nfrac;
    uint64_t  ipart, fpart;

    *units = 0;

    rc = ngx_rbcs_amount_check_grammar(p, len, &nint, &nfrac, &zero);
    if (rc != NGX_RBCS_AMOUNT_OK) {
        return rc;
    }

    if (nint > NGX_RBCS_AMOUNT_MAX_INT_DIGITS) {
        return NGX_RBCS_AMOUNT_ERANGE;
    }

    if (scale > NGX_RBCS_AMOUNT_MAX_SCALE || nfrac > scale) {
        return NGX_RBCS_AMOUNT_ESCALE;
    }

    if (zero && !allow_zero) {
        return NGX_RBCS_AMOUNT_EZERO;
    }

    /* both parts have at most 18 digits and fit in 64 bits */

    ipart = ngx_rbcs_amount_digits(p, nint);
    fpart = nfrac ? ngx_rbcs_amount_digits(p + nint + 1, nfrac) : 0;

    *units = (ngx_rbcs_uint128_t) ipart * ngx_rbcs_amount_pow10[scale]
             + (ngx_rbcs_uint128_t) fpart
               * ngx_rbcs_amount_pow10[scale - nfrac];

    return NGX_RBCS_AMOUNT_OK;
}


size_t
ngx_rbcs_amount_format(u_char *buf, ngx_rbcs_uint128_t units, unsigned scale,
    int negative)
{
    u_char    *p, *last;
    size_t     i, len;
    unsigned   n;
    u_char     tmp[NGX_RBCS_AMOUNT_TMP_LEN];

    if (scale > NGX_RBCS_AMOUNT_MAX_SCALE) {
        return 0;
    }

    if (units == 0) {
        negative = 0;
    }

    last = tmp + sizeof(tmp);
    p = last;

    for (n = 0; n < scale; n++) {
        *--p = (u_char) ('0' + (unsigned) (units % 10));
        units /= 10;
    }

    if (scale) {
        *--p = '.';
    }

    do {
        *--p = (u_char) ('0' + (unsigned) (units % 10));
        units /= 10;
    } while (units);

    if (negative) {
        *--p = '-';
    }

    len = (size_t) (last - p);

    if (len > NGX_RBCS_AMOUNT_MAX_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        buf[i] = p[i];
    }

    return len;
}


int
ngx_rbcs_amount_from_decimal(const u_char *p, size_t len, unsigned scale,
    ngx_rbcs_uint128_t *units, int *negative)
{
    int       neg;
    size_t    i, start, sig;
    unsigned  nfrac;
    uint64_t  ipart, fpart;

    *units = 0;
    *negative = 0;

    if (p == NULL || len == 0 || scale > NGX_RBCS_AMOUNT_MAX_SCALE) {
        return NGX_RBCS_AMOUNT_ERROR;
    }

    i = 0;
    neg = 0;

    if (p[0] == '-') {
        neg = 1;
        i = 1;
    }

    /* integer part, leading zeros are skipped */

    start = i;

    while (i < len && p[i] == '0') {
        i++;
    }

    sig = i;

    while (i < len && ngx_rbcs_amount_is_digit(p[i])) {
        i++;
    }

    if (i == start || i - sig > NGX_RBCS_AMOUNT_MAX_INT_DIGITS) {
        return NGX_RBCS_AMOUNT_ERROR;
    }

    ipart = ngx_rbcs_amount_digits(p + sig, i - sig);

    /* fraction: digits beyond scale must be zeros */

    fpart = 0;
    nfrac = 0;

    if (i < len) {

        if (p[i] != '.' || i + 1 == len) {
            return NGX_RBCS_AMOUNT_ERROR;
        }

        for (i++; i < len; i++) {

            if (!ngx_rbcs_amount_is_digit(p[i])) {
                return NGX_RBCS_AMOUNT_ERROR;
            }

            if (nfrac < scale) {
                fpart = fpart * 10 + (uint64_t) (p[i] - '0');
                nfrac++;

            } else if (p[i] != '0') {
                return NGX_RBCS_AMOUNT_ERROR;
            }
        }
    }

    *units = (ngx_rbcs_uint128_t) ipart * ngx_rbcs_amount_pow10[scale]
             + (ngx_rbcs_uint128_t) fpart
               * ngx_rbcs_amount_pow10[scale - nfrac];

    *negative = (neg && *units != 0);

    return NGX_RBCS_AMOUNT_OK;
}


size_t
ngx_rbcs_amount_normalize(u_char *dst, const u_char *p, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i++) {
        if (p[i] == '.') {
            break;
        }
    }

    n = len;

    if (i < len) {

        while (n > i + 1 && p[n - 1] == '0') {
            n--;
        }

        if (n == i + 1) {
            /* dangling dot */
            n = i;
        }
    }

    /* the result is a prefix of the input, so dst == p is fine */

    for (i = 0; i < n; i++) {
        dst[i] = p[i];
    }

    return n;
}


static uint64_t
ngx_rbcs_amount_digits(const u_char *p, size_t n)
{
    size_t    i;
    uint64_t  v;

    /* the caller guarantees n <= 18 digits */

    v = 0;

    for (i = 0; i < n; i++) {
        v = v * 10 + (uint64_t) (p[i] - '0');
    }

    return v;
}
