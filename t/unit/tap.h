
/*
 * Copyright (C) RBCS
 */


#ifndef _TAP_H_INCLUDED_
#define _TAP_H_INCLUDED_


/*
 * A tiny TAP producer for the C unit tests, header only.
 *
 *     tap_plan(n);               optional: "1..n" first; without it
 *                                tap_done() prints "1..N" at the end
 *     tap_ok(cond, fmt, ...);    "ok N - name" / "not ok N - name"
 *     tap_is_str(got, got_len, expected, fmt, ...);
 *     tap_is_int(got, expected, fmt, ...);
 *     tap_diag(fmt, ...);        "# ..." line
 *     return tap_done();         exit status: 0 if all passed as planned
 *
 * Names are printf formats; '#' is escaped and control characters are
 * replaced so that a name can never break the TAP stream.
 */


#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>


#define TAP_NAME_LEN  256
#define TAP_SHOW_LEN  120


static inline void tap_plan(int n);
static inline void tap_diag(const char *fmt, ...);
static inline void tap_show(const char *s, size_t len);
static inline int tap_vok(int cond, const char *fmt, va_list args);
static inline int tap_ok(int cond, const char *fmt, ...);
static inline int tap_is_str(const void *got, size_t got_len,
    const char *expected, const char *fmt, ...);
static inline int tap_is_int(int64_t got, int64_t expected,
    const char *fmt, ...);
static inline int tap_done(void);


static int  tap_planned = -1;
static int  tap_run;
static int  tap_failed;


static inline void
tap_plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}


static inline void
tap_diag(const char *fmt, ...)
{
    va_list  args;

    fputs("# ", stdout);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    fputc('\n', stdout);
    fflush(stdout);
}


/* prints up to TAP_SHOW_LEN bytes of s, escaping anything unprintable */

static inline void
tap_show(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL) {
        fputs("(null)", stdout);
        return;
    }

    putchar('\'');

    for (i = 0; i < len && i < TAP_SHOW_LEN; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            putchar(s[i]);

        } else {
            printf("\\x%02x", (unsigned) (unsigned char) s[i]);
        }
    }

    putchar('\'');

    if (len > TAP_SHOW_LEN) {
        printf("... (%zu bytes)", len);
    }
}


static inline int
tap_vok(int cond, const char *fmt, va_list args)
{
    char    name[TAP_NAME_LEN];
    size_t  i;

    vsnprintf(name, sizeof(name), fmt, args);

    tap_run++;

    if (!cond) {
        tap_failed++;
        fputs("not ", stdout);
    }

    printf("ok %d - ", tap_run);

    for (i = 0; name[i]; i++) {
        if (name[i] == '#' || name[i] == '\\') {
            putchar('\\');
            putchar(name[i]);

        } else if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f) {
            putchar('?');

        } else {
            putchar(name[i]);
        }
    }

    putchar('\n');
    fflush(stdout);

    return cond;
}


static inline int
tap_ok(int cond, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    cond = tap_vok(cond, fmt, args);
    va_end(args);

    return cond;
}


static inline int
tap_is_str(const void *got, size_t got_len, const char *expected,
    const char *fmt, ...)
{
    int      cond;
    size_t   exp_len;
    va_list  args;

    exp_len = expected ? strlen(expected) : 0;

    if (got == NULL || expected == NULL) {
        cond = (got == NULL && expected == NULL);

    } else {
        cond = (got_len == exp_len && memcmp(got, expected, exp_len) == 0);
    }

    va_start(args, fmt);
    tap_vok(cond, fmt, args);
    va_end(args);

    if (!cond) {
        fputs("#      got: ", stdout);
        tap_show(got, got_len);
        fputs("\n# expected: ", stdout);
        tap_show(expected, exp_len);
        putchar('\n');
        fflush(stdout);
    }

    return cond;
}


static inline int
tap_is_int(int64_t got, int64_t expected, const char *fmt, ...)
{
    int      cond;
    va_list  args;

    cond = (got == expected);

    va_start(args, fmt);
    tap_vok(cond, fmt, args);
    va_end(args);

    if (!cond) {
        tap_diag("     got: %lld", (long long) got);
        tap_diag("expected: %lld", (long long) expected);
    }

    return cond;
}


static inline int
tap_done(void)
{
    if (tap_planned < 0) {
        printf("1..%d\n", tap_run);

    } else if (tap_planned != tap_run) {
        tap_diag("planned %d tests but ran %d", tap_planned, tap_run);
        fflush(stdout);
        return 1;
    }

    if (tap_failed) {
        tap_diag("failed %d of %d tests", tap_failed, tap_run);
    }

    fflush(stdout);

    return tap_failed ? 1 : 0;
}


#endif /* _TAP_H_INCLUDED_ */
