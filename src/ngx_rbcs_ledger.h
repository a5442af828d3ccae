
/*
 * Copyright (C) RBCS
 */


#ifndef _NGX_RBCS_LEDGER_H_INCLUDED_
#define _NGX_RBCS_LEDGER_H_INCLUDED_


/*
 * The judge of the write path: the money rules, in one place.
 *
 * A batch of operations is judged in arrival order against the accounts
 * and recorded outcomes that the batch read (locked) from the database.
 * Every operation sees what the ones before it in the batch did: two
 * operations on one account chain, an id used twice is a replay (or a
 * conflict) of its first use, and one rejection never fails a neighbour.
 *
 * Money is held as signed 128-bit integers in units of 10^-18 (the
 * storage's DECIMAL(36,18)), whatever the currency's scale; the scale only
 * says which amounts are valid and how they are written out.
 *
 * Pure C: no nginx headers, no I/O, no allocation, no floating point.
 */


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ngx_rbcs_amount.h"


/* 10^18: one currency unit in ledger units */
#define NGX_RBCS_LEDGER_ONE                                                  \
    ((ngx_rbcs_int128_t) 1000000000000000000LL)

/* the largest balance: 999999999999999999.999999999999999999; the
 * smallest is its negative */
#define NGX_RBCS_LEDGER_MAX                                                  \
    (NGX_RBCS_LEDGER_ONE * NGX_RBCS_LEDGER_ONE - 1)

#define NGX_RBCS_LEDGER_DETAIL_LEN  160


/* operation kinds */
#define NGX_RBCS_LEDGER_TRANSFER    1
#define NGX_RBCS_LEDGER_OPEN        2
#define NGX_RBCS_LEDGER_LIMIT       3   /* an overdraft limit set */

/* outcomes */
#define NGX_RBCS_LEDGER_INVALID     1   /* 400, not recorded */
#define NGX_RBCS_LEDGER_CONFLICT    2   /* 404/409, not recorded */
#define NGX_RBCS_LEDGER_REPLAY      3   /* the recorded outcome, again */
#define NGX_RBCS_LEDGER_APPLIED     4   /* recorded: 201 (a limit change: 200) */
#define NGX_RBCS_LEDGER_REJECTED    5   /* recorded business rejection */
#define NGX_RBCS_LEDGER_EXISTS      6   /* an opening repeated, a limit
                                           set again: 200, no change */


typedef struct {
    const u_char              *data;    /* NULL: none (SQL NULL) */
    size_t                     len;
} ngx_rbcs_ledger_str_t;


typedef struct ngx_rbcs_ledger_op_s  ngx_rbcs_ledger_op_t;


/*
 * One account the batch touches, read under lock (exists set) or absent.
 * The judge moves it forward; delta, changes and limit_set are what the
 * batch did to a row that existed before it, created says the batch
 * opened it.  An EXTERNAL account (money outside the ledger) has no floor;
 * a STANDARD one's available balance (balance - held) stays at or above
 * -limit.
 */
typedef struct {
    ngx_rbcs_ledger_str_t      number;
    ngx_rbcs_ledger_str_t      currency;
    unsigned                   scale;
    ngx_rbcs_int128_t          balance;
    ngx_rbcs_int128_t          initial;
    ngx_rbcs_int128_t          limit;
    ngx_rbcs_int128_t          opening_limit;
    ngx_rbcs_int128_t          held;
    uint64_t                   version;
    void                      *data;        /* the caller's */

    ngx_rbcs_int128_t          delta;
    uint64_t                   changes;

    unsigned                   exists:1;
    unsigned                   created:1;
    unsigned                   external:1;
    unsigned                   limit_set:1;
} ngx_rbcs_ledger_account_t;


/*
 * The recorded outcome of a transaction id, as read (found set) or as
 * recorded by an earlier operation of the batch (op set).  A replay must
 * name the same accounts and amount (by value) and the same currency.
 */
typedef struct {
    ngx_rbcs_ledger_str_t      source;
    ngx_rbcs_ledger_str_t      destination;
    ngx_rbcs_ledger_str_t      amount_key;   /* normalized amount text */
    ngx_rbcs_ledger_str_t      currency;     /* recorded, may be none */
    ngx_rbcs_ledger_str_t      request_currency;
    ngx_rbcs_ledger_op_t      *op;           /* recorded in this batch */
    void                      *data;         /* the caller's row */

    unsigned                   found:1;
    unsigned                   has_scale:1;
} ngx_rbcs_ledger_record_t;


struct ngx_rbcs_ledger_op_s {
    unsigned                   kind;

    /*
     * A transfer: source, destination, record (its id's), the amount as
     * given (grammar already checked) and its normalized text, and the
     * requested currency (data NULL when none) with its scale.
     *
     * An opening: source is the account, currency its (configured) code
     * and scale, initial the opening balance and limit its overdraft limit
     * in ledger units (checked against that scale), external its kind.
     *
     * A limit: source is the account, amount the new limit as given
     * (grammar checked), judged at the account's scale.
     */
    ngx_rbcs_ledger_account_t *source;
    ngx_rbcs_ledger_account_t *destination;
    ngx_rbcs_ledger_record_t  *record;
    ngx_rbcs_ledger_str_t      amount;
    ngx_rbcs_ledger_str_t      amount_key;
    ngx_rbcs_ledger_str_t      currency;
    unsigned                   currency_scale;
    ngx_rbcs_int128_t          initial;
    ngx_rbcs_int128_t          limit;
    unsigned                   external:1;
    void                      *data;         /* the caller's */

    /* the judgement */
    unsigned                   outcome;
    unsigned                   status;        /* HTTP status */
    const char                *code;          /* NULL when none */
    char                       detail[NGX_RBCS_LEDGER_DETAIL_LEN];

    /* what is recorded for it (APPLIED, REJECTED) */
    ngx_rbcs_ledger_str_t      record_currency;
    unsigned                   scale;
    unsigned                   has_scale:1;
    unsigned                   has_amount:1;
    ngx_rbcs_int128_t          value;         /* the amount, ledger units */

    /* APPLIED: the balances and versions it left */
    ngx_rbcs_int128_t          source_balance;
    ngx_rbcs_int128_t          destination_balance;
    uint64_t                   source_version;
    uint64_t                   destination_version;

    /* an opening or a limit: the account's limit and held balance then */
    ngx_rbcs_int128_t          source_limit;
    ngx_rbcs_int128_t          source_held;
};


size_t ngx_rbcs_ledger_judge(ngx_rbcs_ledger_op_t *ops, size_t n);

/* units at a scale (0..18) to ledger units and back (exact divisions) */
ngx_rbcs_int128_t ngx_rbcs_ledger_from_units(ngx_rbcs_uint128_t units,
    unsigned scale);
ngx_rbcs_uint128_t ngx_rbcs_ledger_to_units(ngx_rbcs_int128_t value,
    unsigned scale, int *negative);


#endif /* _NGX_RBCS_LEDGER_H_INCLUDED_ */
