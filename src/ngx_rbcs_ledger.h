
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
#define NGX_RBCS_LEDGER_CAPTURE     4   /* a hold's capture */
#define NGX_RBCS_LEDGER_VOID        5   /* a hold's release by request */
#define NGX_RBCS_LEDGER_EXPIRE      6   /* a hold's release at its expiry */

/* the state of a recorded id as a hold */
#define NGX_RBCS_LEDGER_NOT_HOLD    0   /* a transfer, or a refused hold */
#define NGX_RBCS_LEDGER_PENDING     1
#define NGX_RBCS_LEDGER_CAPTURED    2
#define NGX_RBCS_LEDGER_VOIDED      3
#define NGX_RBCS_LEDGER_EXPIRED     4

/* outcomes */
#define NGX_RBCS_LEDGER_INVALID     1   /* 400, not recorded */
#define NGX_RBCS_LEDGER_CONFLICT    2   /* 404/409, not recorded */
#define NGX_RBCS_LEDGER_REPLAY      3   /* the recorded outcome, again */
#define NGX_RBCS_LEDGER_APPLIED     4   /* recorded: 201 (a limit change: 200) */
#define NGX_RBCS_LEDGER_REJECTED    5   /* recorded business rejection */
#define NGX_RBCS_LEDGER_EXISTS      6   /* an opening repeated, a limit
                                           set again: 200, no change */

/* a capture, void or expiry APPLIED is recorded on its hold's row */


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
    ngx_rbcs_int128_t          held_delta;
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
    ngx_rbcs_ledger_op_t      *op;           /* recorded or resolved in
                                                this batch */
    void                      *data;         /* the caller's row */

    /* as a hold: its state, amount, capture and expiry (none: never) */
    unsigned                   hold_state;
    ngx_rbcs_int128_t          hold_amount;
    ngx_rbcs_int128_t          captured;
    ngx_rbcs_ledger_str_t      expires;      /* "YYYY-MM-DD HH:MM:SS.fff" */

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
     *
     * A hold is a transfer with hold set and expires its expiry (none:
     * never); its amount_key carries the hold's terms, so that a transfer
     * and a hold never replay each other.
     *
     * A capture, void or expiry: record is the hold's id, source its
     * source and (a capture) destination its destination, now the batch's
     * time in the expiry's form; a capture's amount is none for the whole
     * held amount.
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
    ngx_rbcs_ledger_str_t      expires;
    ngx_rbcs_ledger_str_t      now;
    unsigned                   external:1;
    unsigned                   hold:1;
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

    /* a hold or its resolution: the source's available balance it left,
     * and the amount the resolution released from the hold */
    ngx_rbcs_int128_t          source_available;
    ngx_rbcs_int128_t          released;
};


size_t ngx_rbcs_ledger_judge(ngx_rbcs_ledger_op_t *ops, size_t n);

/* units at a scale (0..18) to ledger units and back (exact divisions) */
ngx_rbcs_int128_t ngx_rbcs_ledger_from_units(ngx_rbcs_uint128_t units,
    unsigned scale);
ngx_rbcs_uint128_t ngx_rbcs_ledger_to_units(ngx_rbcs_int128_t value,
    unsigned scale, int *negative);


#endif /* _NGX_RBCS_LEDGER_H_INCLUDED_ */
