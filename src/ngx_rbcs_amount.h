
/*
 * Copyright (C) RBCS
 */


#ifndef _NGX_RBCS_AMOUNT_H_INCLUDED_
#define _NGX_RBCS_AMOUNT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/*
 * Exact decimal money amounts, held as unsigned integers in minor units
 * (value * 10^scale).  Storage is DECIMAL(36,18): at most 18 integer
 * digits and 18 fractional digits; a currency scale is 0..18.
 *
 * Pure C: no nginx headers, no allocation, no floating point.
 */


__extension__ typedef unsigned __int128  ngx_rbcs_uint128_t;
__extension__ typedef __int128  ngx_rbcs_int128_t;


#define NGX_RBCS_AMOUNT_OK          0
#define NGX_RBCS_AMOUNT_EGRAMMAR   -1  /* not ^(0|[1-9][0-9]*)(\.[0-9]+)?$ */
#define NGX_RBCS_AMOUNT_ESCALE     -2  /* more fractional digits than scale */
#define NGX_RBCS_AMOUNT_EZERO      -3  /* zero where a positive is needed */
#define NGX_RBCS_AMOUNT_ERANGE     -4  /* > 18 integer digits */

/* the only error of ngx_rbcs_amount_from_decimal() */
#define NGX_RBCS_AMOUNT_ERROR          -1

/* longest formatted amount including the sign, NUL not counted */
#define NGX_RBCS_AMOUNT_MAX_LEN         40

#define NGX_RBCS_AMOUNT_MAX_SCALE       18
#define NGX_RBCS_AMOUNT_MAX_INT_DIGITS  18


/*
 * Grammar only: returns NGX_RBCS_AMOUNT_OK or NGX_RBCS_AMOUNT_EGRAMMAR.
 * On success fills the number of integer and fractional digits and
 * whether the value is zero; on error they are set to 0, 0, 0.
 * Any of the output pointers may be NULL.
 */
int ngx_rbcs_amount_check_grammar(const u_char *p, size_t len,
    size_t *int_digits, size_t *frac_digits, int *is_zero);

/*
 * Full parse for a known scale, checks in this order: EGRAMMAR, ERANGE
 * (more than 18 integer digits), ESCALE (more fractional digits than
 * scale, even if they are zeros: "10.500" at scale 2; also a scale
 * above 18), EZERO (value is 0 and !allow_zero).
 * On success *units = value * 10^scale; on error *units = 0.
 */
int ngx_rbcs_amount_parse(const u_char *p, size_t len, unsigned scale,
    int allow_zero, ngx_rbcs_uint128_t *units);

/*
 * Formats units at scale: "10.50", "1000" (scale 0), "1.00000000";
 * "-" is prepended if negative and units != 0 (never "-0.00").
 * buf must have room for NGX_RBCS_AMOUNT_MAX_LEN bytes; no NUL is written.
 * Returns the length written, or 0 (nothing written) if scale > 18 or
 * the text would exceed NGX_RBCS_AMOUNT_MAX_LEN (only possible for
 * negative units >= 10^38 with a non-zero scale, far beyond DECIMAL(36,18)).
 */
size_t ngx_rbcs_amount_format(u_char *buf, ngx_rbcs_uint128_t units,
    unsigned scale, int negative);

/*
 * Parses a DECIMAL text from the database: -?[0-9]+(\.[0-9]+)?
 * ("100.000000000000000000", "-5.50", "0", "12"; leading zeros are
 * tolerated) into units at scale.  Fractional digits beyond scale must be
 * zeros.  At most 18 significant integer digits.  Sets *negative (never
 * for a zero value).  Returns NGX_RBCS_AMOUNT_OK or NGX_RBCS_AMOUNT_ERROR
 * (-1, with *units = 0 and *negative = 0).
 */
int ngx_rbcs_amount_from_decimal(const u_char *p, size_t len, unsigned scale,
    ngx_rbcs_uint128_t *units, int *negative);

/*
 * Canonical value text of a grammar-valid amount: trailing fractional
 * zeros and a dangling dot are removed: "10.50" -> "10.5", "10.0" -> "10",
 * "0.000" -> "0", "7" -> "7".  dst needs room for len bytes and may be
 * equal to p.  No NUL is written.  Returns the length.
 */
size_t ngx_rbcs_amount_normalize(u_char *dst, const u_char *p, size_t len);


#endif /* _NGX_RBCS_AMOUNT_H_INCLUDED_ */
