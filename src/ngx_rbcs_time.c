
/*
 * Copyright (C) RBCS
 */


#include "ngx_rbcs_time.h"


#define NGX_RBCS_TIME_MS_PER_DAY  86400000LL

/* "YYYY-MM-DD?HH:MM:SS" */
#define NGX_RBCS_TIME_BASE_LEN    19


typedef struct {
    unsigned  year;
    unsigned  month;
    unsigned  day;
    unsigned  hour;
    unsigned  min;
    unsigned  sec;
    unsigned  msec;
} ngx_rbcs_time_tm_t;


static int ngx_rbcs_time_number(const u_char *p, size_t n, unsigned *value);
static int ngx_rbcs_time_parse_base(const u_char *p, size_t len,
    const char *seps, ngx_rbcs_time_tm_t *tm);
static size_t ngx_rbcs_time_parse_frac(const u_char *p, size_t len,
    size_t max, unsigned *msec);
static unsigned ngx_rbcs_time_days_in_month(unsigned year, unsigned month);
static int64_t ngx_rbcs_time_to_ms(ngx_rbcs_time_tm_t *tm);
static int64_t ngx_rbcs_time_days_from_civil(int64_t y, unsigned m,
    unsigned d);
static void ngx_rbcs_time_civil_from_days(int64_t z, int64_t *year,
    unsigned *month, unsigned *day);
static u_char *ngx_rbcs_time_put(u_char *p, unsigned value, size_t n);


int
ngx_rbcs_time_parse_rfc3339(const u_char *p, size_t len, int64_t *ms)
{
    size_t              i, n;
    int64_t             t, offset;
    unsigned            oh, om;
    ngx_rbcs_time_tm_t  tm;

    if (ngx_rbcs_time_parse_base(p, len, "Tt", &tm) != 0) {
        return -1;
    }

    i = NGX_RBCS_TIME_BASE_LEN;

    /* optional fraction, any number of digits */

    n = ngx_rbcs_time_parse_frac(p + i, len - i, (size_t) -1, &tm.msec);
    if (n == (size_t) -1) {
        return -1;
    }

    i += n;

    /* offset */

    if (i == len) {
        return -1;
    }

    if (p[i] == 'Z' || p[i] == 'z') {

        if (i + 1 != len) {
            return -1;
        }

        offset = 0;

    } else if (p[i] == '+' || p[i] == '-') {

        if (len - i != 6
            || p[i + 3] != ':'
            || ngx_rbcs_time_number(p + i + 1, 2, &oh) != 0
            || ngx_rbcs_time_number(p + i + 4, 2, &om) != 0
            || oh > 23
            || om > 59)
        {
            return -1;
        }

        offset = ((int64_t) oh * 60 + om) * 60000;

        if (p[i] == '-') {
            offset = -offset;
        }

    } else {
        return -1;
    }

    /* local time minus offset is UTC */

    t = ngx_rbcs_time_to_ms(&tm) - offset;

    if (t < NGX_RBCS_TIME_MIN_MS || t > NGX_RBCS_TIME_MAX_MS) {
        return -1;
    }

    *ms = t;

    return 0;
}


size_t
ngx_rbcs_time_format(u_char *buf, int64_t ms)
{
    u_char    *p;
    int64_t    days, rem, year;
    unsigned   month, day, msec;

    if (ms < NGX_RBCS_TIME_MIN_MS || ms > NGX_RBCS_TIME_MAX_MS) {
        return 0;
    }

    /* floor division, ms may be negative */

    days = ms / NGX_RBCS_TIME_MS_PER_DAY;
    rem = ms % NGX_RBCS_TIME_MS_PER_DAY;

    if (rem < 0) {
        rem += NGX_RBCS_TIME_MS_PER_DAY;
        days--;
    }

    ngx_rbcs_time_civil_from_days(days, &year, &month, &day);

    msec = (unsigned) rem;

    p = buf;
    p = ngx_rbcs_time_put(p, (unsigned) year, 4);
    *p++ = '-';
    p = ngx_rbcs_time_put(p, month, 2);
    *p++ = '-';
    p = ngx_rbcs_time_put(p, day, 2);
    *p++ = 'T';
    p = ngx_rbcs_time_put(p, msec / 3600000, 2);
    *p++ = ':';
    p = ngx_rbcs_time_put(p, msec / 60000 % 60, 2);
    *p++ = ':';
    p = ngx_rbcs_time_put(p, msec / 1000 % 60, 2);
    *p++ = '.';
    p = ngx_rbcs_time_put(p, msec % 1000, 3);
    *p++ = 'Z';

    return (size_t) (p - buf);
}


size_t
ngx_rbcs_time_from_datetime(u_char *buf, const u_char *p, size_t len)
{
    size_t              n;
    int64_t             t;
    ngx_rbcs_time_tm_t  tm;

    if (ngx_rbcs_time_parse_base(p, len, " ", &tm) != 0) {
        return 0;
    }

    n = ngx_rbcs_time_parse_frac(p + NGX_RBCS_TIME_BASE_LEN,
                                 len - NGX_RBCS_TIME_BASE_LEN, 6, &tm.msec);

    if (n == (size_t) -1 || NGX_RBCS_TIME_BASE_LEN + n != len) {
        return 0;
    }

    t = ngx_rbcs_time_to_ms(&tm);

    return ngx_rbcs_time_format(buf, t);
}


static int
ngx_rbcs_time_number(const u_char *p, size_t n, unsigned *value)
{
    size_t    i;
    unsigned  v;

    v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        v = v * 10 + (unsigned) (p[i] - '0');
    }

    *value = v;

    return 0;
}


/*
 * "YYYY-MM-DD?HH:MM:SS" where '?' is one of seps; validates the fields;
 * tm->msec is set to 0.  Characters after the 19th are not looked at.
 */

static int
ngx_rbcs_time_parse_base(const u_char *p, size_t len, const char *seps,
    ngx_rbcs_time_tm_t *tm)
{
    const char  *s;

    if (p == NULL || len < NGX_RBCS_TIME_BASE_LEN) {
        return -1;
    }

    for (s = seps; *s; s++) {
        if (p[10] == (u_char) *s) {
            break;
        }
    }

    if (*s == '\0'
        || p[4] != '-' || p[7] != '-' || p[13] != ':' || p[16] != ':')
    {
        return -1;
    }

    if (ngx_rbcs_time_number(p, 4, &tm->year) != 0
        || ngx_rbcs_time_number(p + 5, 2, &tm->month) != 0
        || ngx_rbcs_time_number(p + 8, 2, &tm->day) != 0
        || ngx_rbcs_time_number(p + 11, 2, &tm->hour) != 0
        || ngx_rbcs_time_number(p + 14, 2, &tm->min) != 0
        || ngx_rbcs_time_number(p + 17, 2, &tm->sec) != 0)
    {
        return -1;
    }

    if (tm->month < 1 || tm->month > 12
        || tm->day < 1
        || tm->day > ngx_rbcs_time_days_in_month(tm->year, tm->month)
        || tm->hour > 23
        || tm->min > 59
        || tm->sec > 59)
    {
        return -1;
    }

    tm->msec = 0;

    return 0;
}


/*
 * An optional "." followed by 1..max digits, truncated to milliseconds.
 * Returns the number of bytes consumed (0 if there is no '.'), or
 * (size_t) -1 if the '.' is not followed by digits or by more than max.
 */

static size_t
ngx_rbcs_time_parse_frac(const u_char *p, size_t len, size_t max,
    unsigned *msec)
{
    size_t    i, n;
    unsigned  v;

    if (len == 0 || p[0] != '.') {
        *msec = 0;
        return 0;
    }

    v = 0;

    for (i = 1; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (i <= 3) {
            v = v * 10 + (unsigned) (p[i] - '0');
        }
    }

    n = i - 1;

    if (n == 0 || n > max) {
        return (size_t) -1;
    }

    for ( /* void */ ; n < 3; n++) {
        v *= 10;
    }

    *msec = v;

    return i;
}


static unsigned
ngx_rbcs_time_days_in_month(unsigned year, unsigned month)
{
    static const unsigned  days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (month == 2
        && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
    {
        return 29;
    }

    return days[month - 1];
}


static int64_t
ngx_rbcs_time_to_ms(ngx_rbcs_time_tm_t *tm)
{
    int64_t  days;

    days = ngx_rbcs_time_days_from_civil(tm->year, tm->month, tm->day);

    return days * NGX_RBCS_TIME_MS_PER_DAY
           + (((int64_t) tm->hour * 60 + tm->min) * 60 + tm->sec) * 1000
           + tm->msec;
}


/*
 * Days since 1970-01-01 of a proleptic Gregorian date, after
 * H. Hinnant, "chrono-Compatible Low-Level Date Algorithms".
 */

static int64_t
ngx_rbcs_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    if (m <= 2) {
        y--;
    }

    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}


static void
ngx_rbcs_time_civil_from_days(int64_t z, int64_t *year, unsigned *month,
    unsigned *day)
{
    int64_t   era, y;
    unsigned  doe, yoe, doy, mp, m;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = (int64_t) yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    m = mp < 10 ? mp + 3 : mp - 9;

    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = m;
    *year = y + (m <= 2);
}


static u_char *
ngx_rbcs_time_put(u_char *p, unsigned value, size_t n)
{
    size_t  i;

    for (i = n; i > 0; i--) {
        p[i - 1] = (u_char) ('0' + value % 10);
        value /= 10;
    }

    return p + n;
}
