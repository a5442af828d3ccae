
/*
 * Copyright (C) RBCS
 */


#include <stdio.h>
#include <string.h>

#include "ngx_rbcs_ledger.h"


static void ngx_rbcs_ledger_transfer(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_open(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_limit(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_resolve(ngx_rbcs_ledger_op_t *op);
static int ngx_rbcs_ledger_transfer_rejects(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_transfer_apply(ngx_rbcs_ledger_op_t *op);
static int ngx_rbcs_ledger_resolve_settled(ngx_rbcs_ledger_op_t *op,
    ngx_rbcs_int128_t v);
static int ngx_rbcs_ledger_capture(ngx_rbcs_ledger_op_t *op,
    ngx_rbcs_int128_t v);
static int ngx_rbcs_ledger_amount(ngx_rbcs_ledger_op_t *op, unsigned scale,
    ngx_rbcs_int128_t *value);
static void ngx_rbcs_ledger_replay(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_change(ngx_rbcs_ledger_account_t *a,
    ngx_rbcs_int128_t balance, ngx_rbcs_int128_t held);
static int ngx_rbcs_ledger_cmp(ngx_rbcs_ledger_str_t *a,
    ngx_rbcs_ledger_str_t *b);
static int ngx_rbcs_ledger_replays(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_record(ngx_rbcs_ledger_op_t *op);
static void ngx_rbcs_ledger_set(ngx_rbcs_ledger_op_t *op, unsigned outcome,
    unsigned status, const char *code, const char *fmt,
    ngx_rbcs_ledger_str_t *arg);
static int ngx_rbcs_ledger_eq(ngx_rbcs_ledger_str_t *a,
    ngx_rbcs_ledger_str_t *b);
static ngx_rbcs_ledger_str_t *ngx_rbcs_ledger_or(ngx_rbcs_ledger_str_t *a,
    ngx_rbcs_ledger_str_t *b);


static const ngx_rbcs_int128_t  ngx_rbcs_ledger_pow10[] = {
    1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL,
    100000000LL, 1000000000LL, 10000000000LL, 100000000000LL,
    1000000000000LL, 10000000000000LL, 100000000000000LL,
    1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
    1000000000000000000LL
};


/*
 * Judge ops[0..n-1] in order.  Returns how many of them record an outcome
 * (APPLIED or REJECTED transfers, accounts opened, limits changed), i.e.
 * how many audit rows the batch writes.
 */

size_t
ngx_rbcs_ledger_judge(ngx_rbcs_ledger_op_t *ops, size_t n)
{
    size_t                 i, recorded;
    ngx_rbcs_ledger_op_t  *op;

    recorded = 0;

    for (i = 0; i < n; i++) {
        op = &ops[i];

        op->outcome = 0;
        op->status = 0;
        op->code = NULL;
        op->detail[0] = '\0';
        op->has_scale = 0;
        op->has_amount = 0;

        switch (op->kind) {

        case NGX_RBCS_LEDGER_TRANSFER:
            ngx_rbcs_ledger_transfer(op);
            break;

        case NGX_RBCS_LEDGER_OPEN:
            ngx_rbcs_ledger_open(op);
            break;

        case NGX_RBCS_LEDGER_LIMIT:
            ngx_rbcs_ledger_limit(op);
            break;

        case NGX_RBCS_LEDGER_CAPTURE:
        case NGX_RBCS_LEDGER_VOID:
        case NGX_RBCS_LEDGER_EXPIRE:
            ngx_rbcs_ledger_resolve(op);
            break;

        default:
            ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_INVALID, 400,
                                "invalid_request", "unknown operation",
                                NULL);
            break;
        }

        if (op->outcome == NGX_RBCS_LEDGER_APPLIED
            || op->outcome == NGX_RBCS_LEDGER_REJECTED)
        {
            recorded++;
        }
    }

    return recorded;
}


/*
 * The contract's order, after the checks that need no account (done
 * before an operation is queued): a replay of an outcome recorded while no
 * scale was known (it never changes), 400 invalid_amount at the scale,
 * 400 same_account, the replay or 409 of a recorded id, 404 source,
 * 404 destination, 422 currency_mismatch, insufficient_funds (a STANDARD
 * source's available balance would go below minus its limit),
 * balance_overflow (a credit above the largest balance, or a debit of an
 * EXTERNAL source below the smallest).  A hold is judged the same way
 * (its capture will move the money) and only reserves: the source's held
 * balance grows, no balance moves.
 */

static void
ngx_rbcs_ledger_transfer(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_account_t  *src, *dst;
    ngx_rbcs_ledger_record_t   *rec;

    src = op->source;
    dst = op->destination;
    rec = op->record;

    /* the amount's scale: the source's, else the destination's, else the
     * requested currency's */

    if (src->exists) {
        op->scale = src->scale;
        op->has_scale = 1;

    } else if (dst->exists) {
        op->scale = dst->scale;
        op->has_scale = 1;

    } else if (op->currency.data) {
        op->scale = op->currency_scale;
        op->has_scale = 1;
    }

    if (rec->found && !rec->has_scale && ngx_rbcs_ledger_replays(op)) {
        ngx_rbcs_ledger_replay(op);
        return;
    }

    if (op->has_scale) {
        if (ngx_rbcs_ledger_amount(op, op->scale, &op->value) != 0) {
            return;
        }

        op->has_amount = 1;
    }

    if (ngx_rbcs_ledger_eq(&src->number, &dst->number)) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_INVALID, 400, "same_account",
                            "source and destination accounts must differ",
                            NULL);
        return;
    }

    if (rec->found) {
        if (ngx_rbcs_ledger_replays(op)) {
            ngx_rbcs_ledger_replay(op);
            return;
        }

        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "transaction_id_conflict",
                            "the transaction id was already used with "
                            "other fields", NULL);
        return;
    }

    op->record_currency = *ngx_rbcs_ledger_or(
                              src->exists ? &src->currency : NULL,
                              ngx_rbcs_ledger_or(
                                  dst->exists ? &dst->currency : NULL,
                                  &op->currency));

    if (ngx_rbcs_ledger_transfer_rejects(op) == 0) {
        ngx_rbcs_ledger_transfer_apply(op);
    }

    ngx_rbcs_ledger_record(op);
}


/* the business rules of a new transfer or hold, in the contract's order;
 * returns 1 after rejecting it */

static int
ngx_rbcs_ledger_transfer_rejects(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_account_t  *src, *dst;

    src = op->source;
    dst = op->destination;

    if (!src->exists) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 404,
                            "account_not_found", "account %s does not exist",
                            &src->number);

    } else if (!dst->exists) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 404,
                            "account_not_found", "account %s does not exist",
                            &dst->number);

    } else if (!ngx_rbcs_ledger_eq(&src->currency, &dst->currency)
               || (op->currency.data
                   && !ngx_rbcs_ledger_eq(&op->currency, &src->currency)))
    {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 422,
                            "currency_mismatch",
                            "the accounts and the transfer must have one "
                            "currency", NULL);

    } else if (!src->external
               && src->balance - src->held - op->value < -src->limit)
    {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 422,
                            "insufficient_funds",
                            "account %s has insufficient funds",
                            &src->number);

    } else if (src->balance < op->value - NGX_RBCS_LEDGER_MAX) {
        /*
         * only an EXTERNAL account (no limit) can reach here: the
         * column holds -MAX at the least, as it holds MAX at the most
         */
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 422,
                            "balance_overflow",
                            "the debit would take account %s beyond the "
                            "smallest balance", &src->number);

    } else if (dst->balance > NGX_RBCS_LEDGER_MAX - op->value) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 422,
                            "balance_overflow",
                            "the credit would take account %s beyond the "
                            "largest balance", &dst->number);

    } else if (op->hold
               && (src->held > NGX_RBCS_LEDGER_MAX - op->value
                   || src->balance - src->held - op->value
                      < -NGX_RBCS_LEDGER_MAX))
    {
        /* only an EXTERNAL source (no floor) can reach either bound */
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_REJECTED, 422,
                            "balance_overflow",
                            "the hold would take account %s's held or "
                            "available balance beyond the largest balance",
                            &src->number);

    } else {
        return 0;
    }

    return 1;
}


/* a hold sets the amount aside on the source; a transfer moves it */

static void
ngx_rbcs_ledger_transfer_apply(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_account_t  *src, *dst;

    src = op->source;
    dst = op->destination;

    if (op->hold) {
        ngx_rbcs_ledger_change(src, 0, op->value);

        op->source_balance = src->balance;
        op->source_version = src->version;
        op->source_available = src->balance - src->held;

    } else {
        ngx_rbcs_ledger_change(src, -op->value, 0);
        ngx_rbcs_ledger_change(dst, op->value, 0);

        op->source_balance = src->balance;
        op->destination_balance = dst->balance;
        op->source_version = src->version;
        op->destination_version = dst->version;
    }

    op->outcome = NGX_RBCS_LEDGER_APPLIED;
    op->status = 201;
}


/*
 * An opening: the first one creates the account; a repeat with the same
 * currency, kind, initial balance and opening limit is answered with the
 * account as it is, any other one conflicts.
 */

static void
ngx_rbcs_ledger_open(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_account_t  *a;

    a = op->source;

    if (a->exists) {
        if (ngx_rbcs_ledger_eq(&a->currency, &op->currency)
            && a->initial == op->initial
            && a->external == op->external
            && a->opening_limit == op->limit)
        {
            /* the account as it is at this point of the batch */
            op->source_balance = a->balance;
            op->source_version = a->version;
            op->source_limit = a->limit;
            op->source_held = a->held;
            op->outcome = NGX_RBCS_LEDGER_EXISTS;
            op->status = 200;
            return;
        }

        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "account_exists",
                            "the account number is taken with another "
                            "currency, kind, initial balance or overdraft "
                            "limit", NULL);
        return;
    }

    a->exists = 1;
    a->created = 1;
    a->currency = op->currency;
    a->scale = op->currency_scale;
    a->balance = op->initial;
    a->initial = op->initial;
    a->external = op->external;
    a->limit = op->limit;
    a->opening_limit = op->limit;
    a->held = 0;
    a->version = 1;

    op->source_balance = a->balance;
    op->source_version = a->version;
    op->source_limit = a->limit;
    op->source_held = a->held;
    op->outcome = NGX_RBCS_LEDGER_APPLIED;
    op->status = 201;
}


/*
 * An overdraft limit set: 404 for an account that does not exist,
 * 400 invalid_amount at its scale, 409 account_kind_conflict for an
 * EXTERNAL account; the same limit again changes nothing.  A limit below
 * what the account already uses is set: it only refuses later debits.
 */

static void
ngx_rbcs_ledger_limit(ngx_rbcs_ledger_op_t *op)
{
    char                        fmt[96];
    ngx_rbcs_uint128_t          units;
    ngx_rbcs_ledger_account_t  *a;

    a = op->source;

    if (!a->exists) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 404,
                            "account_not_found", "account %s does not exist",
                            &a->number);
        return;
    }

    op->scale = a->scale;

    if (ngx_rbcs_amount_parse(op->amount.data, op->amount.len, a->scale, 1,
                              &units)
        != NGX_RBCS_AMOUNT_OK)
    {
        snprintf(fmt, sizeof(fmt), "overdraftLimit must be a non-negative "
                 "decimal with at most %u fractional digits", a->scale);
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_INVALID, 400,
                            "invalid_amount", fmt, NULL);
        return;
    }

    if (a->external) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "account_kind_conflict",
                            "account %s is EXTERNAL: it has no overdraft "
                            "limit", &a->number);
        return;
    }

    op->value = ngx_rbcs_ledger_from_units(units, a->scale);

    if (op->value == a->limit) {
        op->outcome = NGX_RBCS_LEDGER_EXISTS;
        op->status = 200;

    } else {
        a->limit = op->value;
        a->version++;

        if (!a->created) {
            a->changes++;
            a->limit_set = 1;
        }

        op->outcome = NGX_RBCS_LEDGER_APPLIED;
        op->status = 200;
    }

    op->source_balance = a->balance;
    op->source_version = a->version;
    op->source_limit = a->limit;
    op->source_held = a->held;
}


/*
 * A hold's capture, void or expiry, against the hold's row as read under
 * the lock of its source (every resolution locks it: the database decides
 * between pods) or as the batch left it.  The order: 404 unknown id,
 * 400 invalid_amount at the hold's scale, the replay of the resolution
 * that resolved it or 409 hold_not_pending (resolved, not a hold, or its
 * expiry reached: a capture at or after expiresAt is refused even before
 * the release ran), 422 amount_exceeds_hold, 422 balance_overflow.  An
 * expiry of a hold that is not due, or no longer pending, does nothing.
 */

static void
ngx_rbcs_ledger_resolve(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_int128_t           v, moved;
    ngx_rbcs_ledger_account_t  *src, *dst;
    ngx_rbcs_ledger_record_t   *rec;

    src = op->source;
    dst = op->destination;
    rec = op->record;

    if (!rec->found) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 404,
                            "transaction_not_found",
                            "the transaction does not exist", NULL);
        return;
    }

    v = rec->hold_amount;

    /* the amount at the scale of the hold's source, if it is one */

    if (op->kind == NGX_RBCS_LEDGER_CAPTURE && op->amount.data
        && src->exists
        && ngx_rbcs_ledger_amount(op, src->scale, &v) != 0)
    {
        return;
    }

    if (rec->hold_state == NGX_RBCS_LEDGER_NOT_HOLD
        || !src->exists
        || !ngx_rbcs_ledger_eq(&rec->source, &src->number)
        || (dst && (!dst->exists
                    || !ngx_rbcs_ledger_eq(&rec->destination, &dst->number))))
    {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "hold_not_pending",
                            "the transaction is not a hold", NULL);
        return;
    }

    op->scale = src->scale;
    op->has_scale = 1;
    op->value = v;
    op->has_amount = 1;

    if (ngx_rbcs_ledger_resolve_settled(op, v)) {
        return;
    }

    moved = 0;

    if (op->kind == NGX_RBCS_LEDGER_CAPTURE) {
        if (ngx_rbcs_ledger_capture(op, v) != 0) {
            return;
        }

        moved = v;
    }

    /* the source's one change: the captured amount out, the hold released */

    ngx_rbcs_ledger_change(src, -moved, -rec->hold_amount);

    op->released = rec->hold_amount;
    op->source_balance = src->balance;
    op->source_version = src->version;
    op->source_available = src->balance - src->held;

    rec->hold_state = (op->kind == NGX_RBCS_LEDGER_CAPTURE)
                      ? NGX_RBCS_LEDGER_CAPTURED
                      : (op->kind == NGX_RBCS_LEDGER_VOID)
                        ? NGX_RBCS_LEDGER_VOIDED : NGX_RBCS_LEDGER_EXPIRED;
    rec->op = op;

    op->outcome = NGX_RBCS_LEDGER_APPLIED;
    op->status = 200;
}


/*
 * A hold no longer pending (a replay of what settled it, or a conflict),
 * or one this kind may not settle now (expired, or not due to expire):
 * answers the operation and returns 1.
 */

static int
ngx_rbcs_ledger_resolve_settled(ngx_rbcs_ledger_op_t *op,
    ngx_rbcs_int128_t v)
{
    int                        replay, due;
    ngx_rbcs_ledger_record_t  *rec;

    rec = op->record;

    if (rec->hold_state != NGX_RBCS_LEDGER_PENDING) {
        replay = (op->kind == NGX_RBCS_LEDGER_CAPTURE
                  && rec->hold_state == NGX_RBCS_LEDGER_CAPTURED
                  && rec->captured == v)
                 || (op->kind == NGX_RBCS_LEDGER_VOID
                     && rec->hold_state == NGX_RBCS_LEDGER_VOIDED);

        if (replay) {
            ngx_rbcs_ledger_replay(op);
            return 1;
        }

        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "hold_not_pending",
                            "the hold is no longer pending", NULL);
        return 1;
    }

    due = (rec->expires.data != NULL
           && ngx_rbcs_ledger_cmp(&op->now, &rec->expires) >= 0);

    if (op->kind == NGX_RBCS_LEDGER_EXPIRE ? !due : due) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 409,
                            "hold_not_pending",
                            due ? "the hold has expired"
                                : "the hold is not due to expire", NULL);
        return 1;
    }

    return 0;
}


/* a capture of v credits the destination; returns -1 after rejecting it */

static int
ngx_rbcs_ledger_capture(ngx_rbcs_ledger_op_t *op, ngx_rbcs_int128_t v)
{
    ngx_rbcs_ledger_account_t  *src, *dst;
    ngx_rbcs_ledger_record_t   *rec;

    src = op->source;
    dst = op->destination;
    rec = op->record;

    if (v > rec->hold_amount) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 422,
                            "amount_exceeds_hold",
                            "the amount is above the held amount", NULL);
        return -1;
    }

    if (src->balance < v - NGX_RBCS_LEDGER_MAX) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 422,
                            "balance_overflow",
                            "the debit would take account %s beyond the "
                            "smallest balance", &src->number);
        return -1;
    }

    if (dst->balance > NGX_RBCS_LEDGER_MAX - v) {
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_CONFLICT, 422,
                            "balance_overflow",
                            "the credit would take account %s beyond the "
                            "largest balance", &dst->number);
        return -1;
    }

    ngx_rbcs_ledger_change(dst, v, 0);

    op->destination_balance = dst->balance;
    op->destination_version = dst->version;
    rec->captured = v;

    return 0;
}


/*
 * One change of an account's state: its balance and held balance move,
 * its version by one; for a row that existed before the batch, the net
 * update learns the same (a row the batch opens is inserted as it ends).
 */

static void
ngx_rbcs_ledger_change(ngx_rbcs_ledger_account_t *a, ngx_rbcs_int128_t balance,
    ngx_rbcs_int128_t held)
{
    a->balance += balance;
    a->held += held;
    a->version++;

    if (!a->created) {
        a->delta += balance;
        a->held_delta += held;
        a->changes++;
    }
}


/* the operation's amount at a scale; returns -1 after rejecting it */

static int
ngx_rbcs_ledger_amount(ngx_rbcs_ledger_op_t *op, unsigned scale,
    ngx_rbcs_int128_t *value)
{
    char                fmt[96];
    ngx_rbcs_uint128_t  units;

    if (ngx_rbcs_amount_parse(op->amount.data, op->amount.len, scale, 0,
                              &units)
        != NGX_RBCS_AMOUNT_OK)
    {
        snprintf(fmt, sizeof(fmt), "amount must be a positive decimal "
                 "with at most %u fractional digits", scale);
        ngx_rbcs_ledger_set(op, NGX_RBCS_LEDGER_INVALID, 400,
                            "invalid_amount", fmt, NULL);
        return -1;
    }

    *value = ngx_rbcs_ledger_from_units(units, scale);

    return 0;
}


/* the operation repeats an applied one: answered as it was */

static void
ngx_rbcs_ledger_replay(ngx_rbcs_ledger_op_t *op)
{
    op->outcome = NGX_RBCS_LEDGER_REPLAY;
    op->status = 200;
}


/* the operation repeats its id's recorded one */

static int
ngx_rbcs_ledger_replays(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_record_t  *rec;

    rec = op->record;

    return ngx_rbcs_ledger_eq(&rec->source, &op->source->number)
           && ngx_rbcs_ledger_eq(&rec->destination,
                                 &op->destination->number)
           && ngx_rbcs_ledger_eq(&rec->amount_key, &op->amount_key)
           && ngx_rbcs_ledger_eq(ngx_rbcs_ledger_or(&op->currency,
                                                    &rec->currency),
                                 ngx_rbcs_ledger_or(&rec->request_currency,
                                                    &rec->currency));
}


/* later operations with the same id see this outcome as recorded */

static void
ngx_rbcs_ledger_record(ngx_rbcs_ledger_op_t *op)
{
    ngx_rbcs_ledger_record_t  *rec;

    rec = op->record;

    rec->found = 1;
    rec->has_scale = op->has_scale;
    rec->source = op->source->number;
    rec->destination = op->destination->number;
    rec->amount_key = op->amount_key;
    rec->currency = op->record_currency;
    rec->request_currency = op->currency;
    rec->op = op;

    if (op->hold && op->outcome == NGX_RBCS_LEDGER_APPLIED) {
        rec->hold_state = NGX_RBCS_LEDGER_PENDING;
        rec->hold_amount = op->value;
        rec->captured = 0;
        rec->expires = op->expires;

    } else {
        rec->hold_state = NGX_RBCS_LEDGER_NOT_HOLD;
    }
}


static void
ngx_rbcs_ledger_set(ngx_rbcs_ledger_op_t *op, unsigned outcome,
    unsigned status, const char *code, const char *fmt,
    ngx_rbcs_ledger_str_t *arg)
{
    const char  *p;
    size_t       len;

    op->outcome = outcome;
    op->status = status;
    op->code = code;

    /* fmt is a plain text, or one with a single %s for arg */

    p = strstr(fmt, "%s");

    if (arg == NULL || p == NULL) {
        snprintf(op->detail, sizeof(op->detail), "%s", fmt);
        return;
    }

    len = (size_t) (p - fmt);

    snprintf(op->detail, sizeof(op->detail), "%.*s%.*s%s",
             (int) len, fmt, (int) arg->len, (const char *) arg->data,
             p + 2);
}


/* byte-for-byte equality; none equals only none */

static int
ngx_rbcs_ledger_eq(ngx_rbcs_ledger_str_t *a, ngx_rbcs_ledger_str_t *b)
{
    if (a->data == NULL || b->data == NULL) {
        return a->data == NULL && b->data == NULL;
    }

    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}


/* byte order, a shorter prefix first (times of one form compare as such) */

static int
ngx_rbcs_ledger_cmp(ngx_rbcs_ledger_str_t *a, ngx_rbcs_ledger_str_t *b)
{
    int     rc;
    size_t  n;

    n = a->len < b->len ? a->len : b->len;

    rc = (n == 0) ? 0 : memcmp(a->data, b->data, n);

    if (rc != 0) {
        return rc;
    }

    return (a->len > b->len) - (a->len < b->len);
}


/* a, unless it is none (SQL's COALESCE) */

static ngx_rbcs_ledger_str_t *
ngx_rbcs_ledger_or(ngx_rbcs_ledger_str_t *a, ngx_rbcs_ledger_str_t *b)
{
    return (a != NULL && a->data != NULL) ? a : b;
}


ngx_rbcs_int128_t
ngx_rbcs_ledger_from_units(ngx_rbcs_uint128_t units, unsigned scale)
{
    if (scale > NGX_RBCS_AMOUNT_MAX_SCALE) {
        return 0;
    }

    return (ngx_rbcs_int128_t) units
           * ngx_rbcs_ledger_pow10[NGX_RBCS_AMOUNT_MAX_SCALE - scale];
}


ngx_rbcs_uint128_t
ngx_rbcs_ledger_to_units(ngx_rbcs_int128_t value, unsigned scale,
    int *negative)
{
    if (scale > NGX_RBCS_AMOUNT_MAX_SCALE) {
        *negative = 0;
        return 0;
    }

    *negative = (value < 0);

    if (value < 0) {
        value = -value;
    }

    return (ngx_rbcs_uint128_t) (value
               / ngx_rbcs_ledger_pow10[NGX_RBCS_AMOUNT_MAX_SCALE - scale]);
}
