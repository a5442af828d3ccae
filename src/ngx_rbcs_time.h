
/*
 * Copyright (C) RBCS
 */


#ifndef _NGX_RBCS_TIME_H_INCLUDED_
#define _NGX_RBCS_TIME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/*
 * RFC 3339 timestamps as milliseconds since the Unix epoch (UTC).
 * Pure C: no nginx headers, no libc time functions, no floating point.
 */


/* "2026-11-20T10:00:00.123Z" */
#define NGX_RBCS_TIME_LEN     24

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: RFC 3339 years */
#define NGX_RBCS_TIME_MIN_MS  (-62167219200000LL)
#define NGX_RBCS_TIME_MAX_MS  253402300799999LL


/*
 * Parses YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), 'T' and 'Z' may be
 * lower case; frac is 1 or more digits, truncated to milliseconds.
 * Dates are validated (Gregorian leap years), hour 0-23, minute 0-59,
 * second 0-59 (no leap second), offset hours 0-23, minutes 0-59.
 * The UTC result must lie in years 0000..9999.
 * Returns 0 and sets *ms, or -1.
 */
int ngx_rbcs_time_parse_rfc3339(const u_char *p, size_t len, int64_t *ms);

/*
 * Formats ms as "2026-11-20T10:00:00.123Z" (NGX_RBCS_TIME_LEN bytes,
 * no NUL).  Returns NGX_RBCS_TIME_LEN, or 0 (nothing written) if ms is
 * outside NGX_RBCS_TIME_MIN_MS..NGX_RBCS_TIME_MAX_MS.
 */
size_t ngx_rbcs_time_format(u_char *buf, int64_t ms);

/*
 * Converts a MariaDB DATETIME text "YYYY-MM-DD HH:MM:SS[.f{1,6}]",
 * taken as UTC, to the NGX_RBCS_TIME_LEN form (fraction truncated to
 * milliseconds).  Returns NGX_RBCS_TIME_LEN, or 0 on a malformed input
 * (including the zero date "0000-00-00 00:00:00").
 */
size_t ngx_rbcs_time_from_datetime(u_char *buf, const u_char *p, size_t len);


#endif /* _NGX_RBCS_TIME_H_INCLUDED_ */
