
/*
 * Copyright (C) RBCS
 */


/*
 * Unit tests of the write path's judge (src/ngx_rbcs_ledger.c), and a
 * property test: random operation sequences, cut into random batches and
 * judged batch by batch against a "database" that each batch's writes are
 * applied to, must give every operation the outcome that a simple
 * reference model gives it when it takes the operations one at a time.
 * The model keeps balances in minor units at the account's scale, the
 * judge in 10^-18 units: the two do their arithmetic differently.  The
 * sequences open STANDARD and EXTERNAL accounts with overdraft limits and
 * set limits; after every batch money must be conserved and no account
 * debited in it be left below its floor, unless its limit was lowered.
 *
 *     build/unit/test_ledger [SEED [ROUNDS]]
 */


#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_rbcs_ledger.h"


#define S(s)  ((ngx_rbcs_ledger_str_t) { (const u_char *) (s), sizeof(s) - 1 })
#define NONE  ((ngx_rbcs_ledger_str_t) { NULL, 0 })

#define T_MAX_OPS       64
#define T_MAX_ACCOUNTS  8
#define T_MAX_IDS       64
#define T_RANDOM_IDS    24      /* the ids of random transfers */


/* ------------------------------------------------------------ helpers -- */

static ngx_rbcs_ledger_str_t
str(const char *s)
{
    ngx_rbcs_ledger_str_t  r;

    r.data = (const u_char *) s;
    r.len = s ? strlen(s) : 0;

    return r;
}


static ngx_rbcs_int128_t
units(const char *text, unsigned scale)
{
    ngx_rbcs_uint128_t  u;

    if (ngx_rbcs_amount_parse((const u_char *) text, strlen(text), scale, 1,
                              &u)
        != NGX_RBCS_AMOUNT_OK)
    {
        return -1;
    }

    return ngx_rbcs_ledger_from_units(u, scale);
}


static void
account(ngx_rbcs_ledger_account_t *a, const char *number,
    const char *currency, unsigned scale, const char *balance,
    uint64_t version)
{
    memset(a, 0, sizeof(*a));
    a->number = str(number);

    if (currency) {
        a->exists = 1;
        a->currency = str(currency);
        a->scale = scale;
        a->balance = units(balance, scale);
        a->initial = a->balance;
        a->version = version;
    }
}


static void
transfer(ngx_rbcs_ledger_op_t *op, ngx_rbcs_ledger_account_t *src,
    ngx_rbcs_ledger_account_t *dst, ngx_rbcs_ledger_record_t *rec,
    const char *amount, const char *currency, unsigned currency_scale)
{
    static u_char  keys[T_MAX_OPS * 4][64];
    static size_t  nkeys;
    u_char        *key;

    memset(op, 0, sizeof(*op));
    op->kind = NGX_RBCS_LEDGER_TRANSFER;
    op->source = src;
    op->destination = dst;
    op->record = rec;
    op->amount = str(amount);

    key = keys[nkeys++ % (T_MAX_OPS * 4)];
    op->amount_key.data = key;
    op->amount_key.len = ngx_rbcs_amount_normalize(key,
                                                   (const u_char *) amount,
                                                   strlen(amount));
    op->currency = str(currency);
    op->currency_scale = currency_scale;
}


static void
open_op(ngx_rbcs_ledger_op_t *op, ngx_rbcs_ledger_account_t *a,
    const char *currency, unsigned scale, const char *initial)
{
    memset(op, 0, sizeof(*op));
    op->kind = NGX_RBCS_LEDGER_OPEN;
    op->source = a;
    op->currency = str(currency);
    op->currency_scale = scale;
    op->initial = units(initial, scale);
}


/* an opening of a kind (external or not) with an opening overdraft limit */

static void
open_kind(ngx_rbcs_ledger_op_t *op, ngx_rbcs_ledger_account_t *a,
    const char *currency, unsigned scale, const char *initial, int external,
    const char *limit)
{
    open_op(op, a, currency, scale, initial);
    op->external = external ? 1 : 0;
    op->limit = units(limit, scale);
}


/* an overdraft limit set; no destination, no record: the judge must not
 * need them */

static void
limit_op(ngx_rbcs_ledger_op_t *op, ngx_rbcs_ledger_account_t *a,
    const char *amount)
{
    memset(op, 0, sizeof(*op));
    op->kind = NGX_RBCS_LEDGER_LIMIT;
    op->source = a;
    op->amount = str(amount);
}


/* a hold: a transfer that reserves, its key carrying its terms */

static void
hold_op(ngx_rbcs_ledger_op_t *op, ngx_rbcs_ledger_account_t *src,
    ngx_rbcs_ledger_account_t *dst, ngx_rbcs_ledger_record_t *rec,
    const char *amount, const char *expires)
{
    static u_char  keys[T_MAX_OPS * 4][72];
    static size_t  nkeys;
    u_char        *key;
    size_t         n;

    transfer(op, src, dst, rec, amount, NULL, 0);
    op->hold = 1;
    op->expires = str(expires);

    key = keys[nkeys++ % (T_MAX_OPS * 4)];
    n = ngx_rbcs_amount_normalize(key, (const u_char *) amount,
                                  strlen(amount));
    n += sprintf((char *) key + n, "|H%s", expires ? expires : "");
    op->amount_key.data = key;
    op->amount_key.len = n;
}


/* a capture (amount NULL: the whole hold), void or expiry at a time */

static void
resolve_op(ngx_rbcs_ledger_op_t *op, unsigned kind,
    ngx_rbcs_ledger_account_t *src, ngx_rbcs_ledger_account_t *dst,
    ngx_rbcs_ledger_record_t *rec, const char *amount, const char *now)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->source = src;
    op->destination = (kind == NGX_RBCS_LEDGER_CAPTURE) ? dst : NULL;
    op->record = rec;
    op->amount = amount ? str(amount) : NONE;
    op->now = str(now);
}


/* an account read from the database with its kind and limits */

static void
kind(ngx_rbcs_ledger_account_t *a, int external, const char *limit,
    const char *opening_limit)
{
    a->external = external ? 1 : 0;
    a->limit = units(limit, a->scale);
    a->opening_limit = units(opening_limit, a->scale);
}


static int
is_code(ngx_rbcs_ledger_op_t *op, const char *code)
{
    if (code == NULL || op->code == NULL) {
        return code == op->code;
    }

    return strcmp(op->code, code) == 0;
}


/* ---------------------------------------------------------- unit tests -- */

static void
test_basics(void **state)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[4];
    ngx_rbcs_ledger_account_t  a, b, c, x;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "100.00", 1);
    account(&b, "B", "USD", 2, "5.00", 3);
    account(&c, "C", "JPY", 0, "1000", 1);
    account(&x, "X", NULL, 0, NULL, 0);

    transfer(&ops[0], &a, &b, &recs[0], "10.5", NULL, 0);
    transfer(&ops[1], &a, &b, &recs[0], "10.50", "USD", 2);   /* replay */
    transfer(&ops[2], &a, &b, &recs[0], "10.51", NULL, 0);    /* 409 */
    transfer(&ops[3], &a, &b, &recs[1], "89.51", NULL, 0);    /* 422 */
    transfer(&ops[4], &a, &b, &recs[2], "89.50", NULL, 0);    /* all */
    transfer(&ops[5], &a, &c, &recs[3], "1", NULL, 0);        /* 422 */
    transfer(&ops[6], &x, &a, &recs[3], "1", NULL, 0);        /* 409 */

    /* four outcomes recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 7), 4);

    /* a transfer applies */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].status == 201);
    /* ... leaving both balances and versions */
    assert_true(ops[0].source_balance == units("89.50", 2)
                && ops[0].destination_balance == units("15.50", 2)
                && ops[0].source_version == 2
                && ops[0].destination_version == 4);
    /* the same id and fields in the same batch: a replay (amount by value,
     * currency given = the accounts') */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_REPLAY
                && ops[1].status == 200);
    /* the same id with another amount: 409 */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_CONFLICT
                && is_code(&ops[2], "transaction_id_conflict"));
    /* one unit more than the chained balance: 422 */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_REJECTED
                && is_code(&ops[3], "insufficient_funds"));
    assert_string_equal(ops[3].detail, "account A has insufficient funds");
    /* exactly the chained balance: applied, down to zero */
    assert_true(ops[4].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[4].source_balance == 0 && ops[4].source_version == 3);
    /* accounts of two currencies: 422 currency_mismatch */
    assert_true(ops[5].outcome == NGX_RBCS_LEDGER_REJECTED
                && is_code(&ops[5], "currency_mismatch"));
    /* an id recorded as a rejection in the batch: other fields 409 */
    assert_true(ops[6].outcome == NGX_RBCS_LEDGER_CONFLICT);

    /* net changes per account: one update each */
    assert_true(a.delta == -units("100.00", 2) && a.changes == 2
                && b.delta == units("100.00", 2) && b.changes == 2
                && c.changes == 0);
    /* money is conserved */
    assert_true(a.balance + b.balance == units("105.00", 2));
}


/*
 * Holds: reserved against the available balance, nothing moved; a
 * partial capture moves its amount and releases the rest; replays of the
 * resolution by value; void; expiry only when due; a capture at or after
 * expiresAt refused; the order of the refusals.
 */

static void
test_holds(void **state)
{
    ngx_rbcs_ledger_op_t       ops[12];
    ngx_rbcs_ledger_record_t   recs[4];
    ngx_rbcs_ledger_account_t  a, b;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "100.00", 1);
    account(&b, "B", "USD", 2, "0", 1);

    hold_op(&ops[0], &a, &b, &recs[0], "30", NULL);
    transfer(&ops[1], &a, &b, &recs[1], "70.01", NULL, 0);
    hold_op(&ops[2], &a, &b, &recs[2], "70.01", "0000000100");
    hold_op(&ops[3], &a, &b, &recs[2], "10", "0000000100");
    transfer(&ops[4], &a, &b, &recs[0], "30", NULL, 0);
    hold_op(&ops[5], &a, &b, &recs[0], "30.00", NULL);

    /* a hold, a refused transfer and a refused hold recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 6), 3);

    /* a hold reserves: held 30, available 70, nothing moved, the source's
     * version moves */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].status == 201
                && ops[0].source_balance == units("100", 2)
                && ops[0].source_available == units("70", 2)
                && ops[0].source_version == 2 && a.held == units("30", 2)
                && b.balance == 0 && b.version == 1);
    /* a transfer and a hold above the available balance: 422 */
    assert_true(is_code(&ops[1], "insufficient_funds")
                && is_code(&ops[2], "insufficient_funds"));
    /* the id of a refused hold again with another amount: 409 */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_CONFLICT
                && is_code(&ops[3], "transaction_id_conflict"));
    /* a hold's id as a plain transfer: 409 */
    assert_true(is_code(&ops[4], "transaction_id_conflict"));
    /* the hold again (amount by value): a replay */
    assert_true(ops[5].outcome == NGX_RBCS_LEDGER_REPLAY);
    /* the net update: held + 30, balance unchanged */
    assert_true(a.changes == 1 && a.held_delta == units("30", 2)
                && a.delta == 0);

    /* the next batch reads the hold as recorded */

    recs[0].op = NULL;
    a.delta = 0; a.held_delta = 0; a.changes = 0;
    b.delta = 0; b.held_delta = 0; b.changes = 0;

    resolve_op(&ops[0], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], "30.01",
               "0000000050");
    resolve_op(&ops[1], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], "0.001",
               "0000000050");
    resolve_op(&ops[2], NGX_RBCS_LEDGER_EXPIRE, &a, NULL, &recs[0], NULL,
               "0000000050");
    resolve_op(&ops[3], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], "20",
               "0000000050");
    resolve_op(&ops[4], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], "20.00",
               "0000000050");
    resolve_op(&ops[5], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], NULL,
               "0000000050");
    resolve_op(&ops[6], NGX_RBCS_LEDGER_VOID, &a, NULL, &recs[0], NULL,
               "0000000050");
    resolve_op(&ops[7], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[1], NULL,
               "0000000050");
    resolve_op(&ops[8], NGX_RBCS_LEDGER_VOID, &a, NULL, &recs[3], NULL,
               "0000000050");

    /* one resolution recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 9), 1);

    /* a capture above the hold: 422 amount_exceeds_hold */
    assert_true(ops[0].status == 422
                && is_code(&ops[0], "amount_exceeds_hold"));
    /* a capture beyond the scale: 400 invalid_amount */
    assert_true(ops[1].status == 400 && is_code(&ops[1], "invalid_amount"));
    /* the expiry of a hold without expiresAt does nothing */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_CONFLICT);
    /* a partial capture moves 20 and releases the rest */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[3].status == 200
                && ops[3].source_balance == units("80", 2)
                && ops[3].destination_balance == units("20", 2)
                && ops[3].source_available == units("80", 2)
                && ops[3].released == units("30", 2)
                && ops[3].source_version == 3
                && ops[3].destination_version == 2);
    /* the same capture by value: a replay */
    assert_true(ops[4].outcome == NGX_RBCS_LEDGER_REPLAY
                && ops[4].status == 200);
    /* a capture of the whole hold after a partial one: 409 */
    assert_true(ops[5].status == 409 && is_code(&ops[5], "hold_not_pending"));
    /* a void of a captured hold: 409 */
    assert_true(ops[6].status == 409 && is_code(&ops[6], "hold_not_pending"));
    /* a capture of a plain transfer: 409 */
    assert_true(ops[7].status == 409 && is_code(&ops[7], "hold_not_pending"));
    /* a void of an unknown id: 404 */
    assert_true(ops[8].status == 404
                && is_code(&ops[8], "transaction_not_found"));
    /* net: held - 30, balance - 20 at the source, + 20 at the destination */
    assert_true(a.held == 0 && a.balance == units("80", 2)
                && b.balance == units("20", 2)
                && a.held_delta == -units("30", 2) && a.delta == -units("20", 2)
                && b.delta == units("20", 2) && a.changes == 1
                && b.changes == 1);

    /* an expiring hold: void, then expiry and capture when due */

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "10.00", 1);
    account(&b, "B", "USD", 2, "0", 1);

    hold_op(&ops[0], &a, &b, &recs[0], "4", "0000000100");
    hold_op(&ops[1], &a, &b, &recs[1], "5", "0000000100");
    /* two holds */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 2), 2);
    recs[0].op = NULL;
    recs[1].op = NULL;

    resolve_op(&ops[0], NGX_RBCS_LEDGER_EXPIRE, &a, NULL, &recs[0], NULL,
               "0000000099");
    resolve_op(&ops[1], NGX_RBCS_LEDGER_VOID, &a, NULL, &recs[0], NULL,
               "0000000099");
    resolve_op(&ops[2], NGX_RBCS_LEDGER_VOID, &a, NULL, &recs[0], NULL,
               "0000000099");
    resolve_op(&ops[3], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], NULL,
               "0000000099");
    resolve_op(&ops[4], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[1], NULL,
               "0000000100");
    resolve_op(&ops[5], NGX_RBCS_LEDGER_VOID, &a, NULL, &recs[1], NULL,
               "0000000100");
    resolve_op(&ops[6], NGX_RBCS_LEDGER_EXPIRE, &a, NULL, &recs[1], NULL,
               "0000000100");
    resolve_op(&ops[7], NGX_RBCS_LEDGER_EXPIRE, &a, NULL, &recs[1], NULL,
               "0000000101");

    /* a void and an expiry */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 8), 2);

    /* an expiry before expiresAt does nothing */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_CONFLICT);
    /* a void before expiresAt releases */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].source_available == units("5", 2));
    /* a void again: a replay */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_REPLAY);
    /* a capture of a voided hold: 409 */
    assert_true(ops[3].status == 409);
    /* a capture or void at expiresAt: 409, before the release */
    assert_true(ops[4].status == 409 && is_code(&ops[4], "hold_not_pending")
                && ops[5].status == 409);
    /* the expiry at expiresAt releases */
    assert_true(ops[6].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[6].source_available == units("10", 2));
    /* a second expiry does nothing (no double release) */
    assert_true(ops[7].outcome == NGX_RBCS_LEDGER_CONFLICT);
    /* held back to zero: two holds and two releases */
    assert_true(a.held == 0 && a.balance == units("10", 2)
                && a.held_delta == 0 && a.changes == 4);

    /* an EXTERNAL source holds without a floor */

    memset(recs, 0, sizeof(recs));
    account(&a, "X", "USD", 2, "0", 1);
    kind(&a, 1, "0", "0");
    account(&b, "B", "USD", 2, "0", 1);
    hold_op(&ops[0], &a, &b, &recs[0], "1000", NULL);
    (void) ngx_rbcs_ledger_judge(ops, 1);
    recs[0].op = NULL;
    resolve_op(&ops[1], NGX_RBCS_LEDGER_CAPTURE, &a, &b, &recs[0], NULL,
               "0000000001");
    (void) ngx_rbcs_ledger_judge(&ops[1], 1);
    /* an EXTERNAL hold and its capture: a deposit */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && a.balance == -units("1000", 2)
                && b.balance == units("1000", 2)
                && a.held == 0);
}


static void
test_order(void **state)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[8];
    ngx_rbcs_ledger_account_t  a, b, x, y;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "1.00", 1);
    account(&b, "B", "USD", 2, "0", 1);
    account(&x, "X", NULL, 0, NULL, 0);
    account(&y, "Y", NULL, 0, NULL, 0);

    transfer(&ops[0], &a, &a, &recs[0], "1.001", NULL, 0);
    transfer(&ops[1], &a, &a, &recs[1], "1.00", NULL, 0);
    transfer(&ops[2], &x, &y, &recs[2], "0", NULL, 0);
    transfer(&ops[3], &x, &y, &recs[3], "0.001", "USD", 2);
    transfer(&ops[4], &x, &b, &recs[4], "0.5", NULL, 0);
    transfer(&ops[5], &a, &y, &recs[5], "0.5", NULL, 0);
    transfer(&ops[6], &a, &b, &recs[6], "0", NULL, 0);

    /* three recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 7), 3);

    /* invalid_amount at the account's scale before same_account */
    assert_true(is_code(&ops[0], "invalid_amount") && ops[0].status == 400);
    assert_string_equal(ops[0].detail, "amount must be a positive decimal with "
                                       "at most 2 fractional digits");
    /* then same_account */
    assert_true(is_code(&ops[1], "same_account") && ops[1].status == 400);
    /* no scale known: only the grammar, then 404 (zero allowed) */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_REJECTED
                && is_code(&ops[2], "account_not_found") && !ops[2].has_scale);
    assert_string_equal(ops[2].detail, "account X does not exist");
    /* the requested currency gives the scale when no account does */
    assert_true(is_code(&ops[3], "invalid_amount"));
    /* missing source: 404, recorded with the destination's currency */
    assert_true(is_code(&ops[4], "account_not_found") && ops[4].has_scale
                && ops[4].record_currency.len == 3);
    /* missing destination: 404 naming it */
    assert_true(is_code(&ops[5], "account_not_found"));
    assert_string_equal(ops[5].detail, "account Y does not exist");
    /* zero: invalid_amount */
    assert_true(is_code(&ops[6], "invalid_amount"));
    /* 400s are not recorded: their ids stay free */
    assert_true(!recs[0].found && !recs[1].found && !recs[6].found);
}


static void
test_recorded(void **state)
{
    ngx_rbcs_ledger_op_t       ops[4];
    ngx_rbcs_ledger_record_t   rec;
    ngx_rbcs_ledger_account_t  a, b;

    (void) state;

    /* recorded while no scale was known, replayed as recorded even though
     * an amount of 3 decimals is now invalid at the opened account's */

    account(&a, "A", "USD", 2, "1.00", 1);
    account(&b, "B", "USD", 2, "1.00", 1);
    memset(&rec, 0, sizeof(rec));
    rec.found = 1;
    rec.source = S("A");
    rec.destination = S("B");
    rec.amount_key = S("0.001");
    rec.currency = NONE;
    rec.request_currency = NONE;

    transfer(&ops[0], &a, &b, &rec, "0.0010", NULL, 0);
    transfer(&ops[1], &a, &b, &rec, "0.001", "USD", 2);
    ngx_rbcs_ledger_judge(ops, 2);

    /* a rejection recorded without scale is replayed as recorded */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_REPLAY);
    /* ... but not with another currency: the checks apply */
    assert_true(is_code(&ops[1], "invalid_amount"));

    rec.has_scale = 1;
    rec.currency = S("USD");
    rec.request_currency = S("USD");
    rec.amount_key = S("1");

    transfer(&ops[0], &a, &b, &rec, "1.00", NULL, 0);
    transfer(&ops[1], &a, &b, &rec, "1", "EUR", 2);
    ngx_rbcs_ledger_judge(ops, 2);
    /* an omitted currency equals a recorded one */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_REPLAY);
    /* another currency conflicts */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_CONFLICT);
}


static void
test_limits(void **state)
{
    ngx_rbcs_ledger_op_t       ops[4];
    ngx_rbcs_ledger_record_t   recs[4];
    ngx_rbcs_ledger_account_t  a, b;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "ETH", 18, "999999999999999999.999999999999999999", 1);
    account(&b, "B", "ETH", 18, "999999999999999999.999999999999999998", 1);

    transfer(&ops[0], &a, &b, &recs[0], "0.000000000000000002", NULL, 0);
    transfer(&ops[1], &a, &b, &recs[1], "0.000000000000000001", NULL, 0);
    transfer(&ops[2], &a, &b, &recs[2], "1000000000000000000", NULL, 0);
    ngx_rbcs_ledger_judge(ops, 3);

    /* one unit past the largest balance: balance_overflow */
    assert_true(is_code(&ops[0], "balance_overflow"));
    assert_string_equal(ops[0].detail, "the credit would take account B beyond "
                                       "the largest balance");
    /* up to the largest balance exactly */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].destination_balance == NGX_RBCS_LEDGER_MAX);
    /* 19 integer digits: invalid_amount */
    assert_true(is_code(&ops[2], "invalid_amount"));
}


static void
test_open(void **state)
{
    ngx_rbcs_ledger_op_t       ops[6];
    ngx_rbcs_ledger_record_t   recs[2];
    ngx_rbcs_ledger_account_t  n, m;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&n, "N", NULL, 0, NULL, 0);
    account(&m, "M", "USD", 2, "7.00", 1);

    open_op(&ops[0], &n, "USD", 2, "10");
    transfer(&ops[1], &n, &m, &recs[0], "4", NULL, 0);
    open_op(&ops[2], &n, "USD", 2, "10.00");
    open_op(&ops[3], &n, "USD", 2, "11");
    open_op(&ops[4], &m, "EUR", 2, "7");

    /* two recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 5), 2);
    /* an opening creates the account */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].status == 201
                && ops[0].source_version == 1);
    /* a transfer later in the batch uses it */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED);
    /* the same opening again: the account as it is then */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_EXISTS && ops[2].status == 200
                && ops[2].source_balance == units("6", 2)
                && ops[2].source_version == 2);
    /* another initial balance: 409 */
    assert_true(is_code(&ops[3], "account_exists") && ops[3].status == 409);
    /* another currency: 409 */
    assert_true(is_code(&ops[4], "account_exists"));
    /* an account opened by the batch is inserted as it ends */
    assert_true(n.created && n.changes == 0 && n.balance == units("6", 2)
                && m.delta == units("4", 2) && m.changes == 1);
}


static void
test_overdraft(void **state)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[8];
    ngx_rbcs_ledger_account_t  a, b, c, e, f;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "10.00", 1);
    kind(&a, 0, "50", "50");
    account(&b, "B", "USD", 2, "0", 1);

    transfer(&ops[0], &a, &b, &recs[0], "60.01", NULL, 0);
    transfer(&ops[1], &a, &b, &recs[1], "60", NULL, 0);
    transfer(&ops[2], &a, &b, &recs[2], "0.01", NULL, 0);
    transfer(&ops[3], &b, &a, &recs[3], "0.01", NULL, 0);
    transfer(&ops[4], &a, &b, &recs[4], "0.01", NULL, 0);

    /* overdraft: five outcomes recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 5), 5);
    /* one minor unit beyond balance + limit: 422 insufficient_funds */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_REJECTED
                && ops[0].status == 422
                && is_code(&ops[0], "insufficient_funds"));
    assert_string_equal(ops[0].detail, "account A has insufficient funds");
    /* down to exactly -limit: applied, balance -50.00 */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].source_balance == -units("50", 2)
                && ops[1].source_version == 2);
    /* at -limit, one minor unit more: insufficient_funds */
    assert_true(is_code(&ops[2], "insufficient_funds"));
    /* a credit to an overdrawn account applies */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[3].destination_balance == -units("49.99", 2));
    /* ... and makes room for exactly that much again */
    assert_true(ops[4].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[4].source_balance == -units("50", 2));
    /* the overdrawn account's net update; its limit untouched */
    assert_true(a.delta == -units("60", 2) && a.changes == 3 && !a.limit_set
                && a.limit == units("50", 2) && a.version == 4);
    /* money is conserved */
    assert_true(a.balance + b.balance == units("10", 2));

    /* the available balance is balance - held (no holds yet, but the rule
     * is the judge's) */

    memset(recs, 0, sizeof(recs));
    account(&c, "C", "USD", 2, "10.00", 1);
    kind(&c, 0, "2", "2");
    c.held = units("3", 2);
    account(&b, "B", "USD", 2, "0", 1);

    transfer(&ops[0], &c, &b, &recs[0], "9.01", NULL, 0);
    transfer(&ops[1], &c, &b, &recs[1], "9", NULL, 0);
    transfer(&ops[2], &c, &b, &recs[2], "0.01", NULL, 0);
    ngx_rbcs_ledger_judge(ops, 3);

    /* held funds count: balance 10, held 3, limit 2 spends 9, not 9.01 */
    assert_true(is_code(&ops[0], "insufficient_funds")
                && ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].source_balance == units("1", 2)
                && is_code(&ops[2], "insufficient_funds"));

    /* the largest limit: down to the smallest balance, then
     * insufficient_funds (checked before balance_overflow) */

    memset(recs, 0, sizeof(recs));
    account(&e, "E", "ETH", 18, "0", 1);
    e.limit = NGX_RBCS_LEDGER_MAX;
    e.opening_limit = NGX_RBCS_LEDGER_MAX;
    account(&f, "F", "ETH", 18, "0", 1);

    transfer(&ops[0], &e, &f, &recs[0],
             "999999999999999999.999999999999999999", NULL, 0);
    transfer(&ops[1], &e, &f, &recs[1], "0.000000000000000001", NULL, 0);
    ngx_rbcs_ledger_judge(ops, 2);

    /* a STANDARD account with the largest limit reaches the smallest
     * balance */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].source_balance == -NGX_RBCS_LEDGER_MAX
                && ops[0].destination_balance == NGX_RBCS_LEDGER_MAX);
    /* ... and one unit more is insufficient_funds, not balance_overflow */
    assert_true(is_code(&ops[1], "insufficient_funds"));
}


static void
test_external(void **state)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[8];
    ngx_rbcs_ledger_account_t  x, y, a, e, f, g, h;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&x, "X", "USD", 2, "0", 1);
    kind(&x, 1, "0", "0");
    account(&y, "Y", NULL, 0, NULL, 0);
    account(&a, "A", "USD", 2, "0", 1);

    transfer(&ops[0], &x, &a, &recs[0], "100", NULL, 0);
    open_kind(&ops[1], &y, "USD", 2, "0", 1, "0");
    transfer(&ops[2], &y, &a, &recs[1], "5.25", NULL, 0);
    transfer(&ops[3], &a, &x, &recs[2], "105.26", NULL, 0);
    transfer(&ops[4], &a, &x, &recs[3], "105.25", NULL, 0);

    /* external: five outcomes recorded (the opening too) */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 5), 5);
    /* a deposit: an EXTERNAL source goes below zero from zero */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].source_balance == -units("100", 2)
                && ops[0].destination_balance == units("100", 2));
    /* an EXTERNAL account opened in the batch */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED && y.external
                && ops[1].source_limit == 0 && ops[1].source_held == 0);
    /* ... is debited below zero in the same batch */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[2].source_balance == -units("5.25", 2)
                && y.balance == -units("5.25", 2));
    /* a withdrawal is still bounded by the STANDARD source */
    assert_true(is_code(&ops[3], "insufficient_funds"));
    /* a withdrawal to an EXTERNAL account */
    assert_true(ops[4].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[4].destination_balance == units("5.25", 2));
    /* money is conserved, EXTERNAL accounts included */
    assert_true(x.balance + y.balance + a.balance == 0
                && x.delta == units("5.25", 2) && x.changes == 2
                && y.created && y.changes == 0);

    /* the smallest balance bounds an EXTERNAL debit */

    memset(recs, 0, sizeof(recs));
    account(&e, "E", "ETH", 18, "0", 1);
    kind(&e, 1, "0", "0");
    e.balance = -NGX_RBCS_LEDGER_MAX + 2;
    account(&f, "F", "ETH", 18, "0", 1);
    account(&g, "G", "ETH", 18, "0", 1);
    kind(&g, 1, "0", "0");
    account(&h, "H", "ETH", 18, "0", 1);

    transfer(&ops[0], &e, &f, &recs[0], "0.000000000000000003", NULL, 0);
    transfer(&ops[1], &e, &f, &recs[1], "0.000000000000000002", NULL, 0);
    transfer(&ops[2], &e, &f, &recs[2], "0.000000000000000001", NULL, 0);
    transfer(&ops[3], &g, &h, &recs[3],
             "999999999999999999.999999999999999999", NULL, 0);
    transfer(&ops[4], &g, &h, &recs[4], "0.000000000000000001", NULL, 0);
    ngx_rbcs_ledger_judge(ops, 5);

    /* an EXTERNAL debit one unit below -MAX: 422 balance_overflow */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_REJECTED
                && ops[0].status == 422
                && is_code(&ops[0], "balance_overflow"));
    assert_string_equal(ops[0].detail, "the debit would take account E beyond "
                                       "the smallest balance");
    /* down to -MAX exactly: applied */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].source_balance == -NGX_RBCS_LEDGER_MAX);
    /* at -MAX, any debit: balance_overflow */
    assert_true(is_code(&ops[2], "balance_overflow"));
    /* the largest amount from an EXTERNAL zero: -MAX and MAX */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[3].source_balance == -NGX_RBCS_LEDGER_MAX
                && ops[3].destination_balance == NGX_RBCS_LEDGER_MAX);
    /* both ends full: the debit is refused first, naming the source */
    assert_true(is_code(&ops[4], "balance_overflow")
                && strstr(ops[4].detail, "debit") != NULL
                && strstr(ops[4].detail, "account G") != NULL);
}


static void
test_open_kind(void **state)
{
    ngx_rbcs_ledger_op_t       ops[16];
    ngx_rbcs_ledger_account_t  n, m, x, p, q;

    (void) state;

    account(&n, "N", NULL, 0, NULL, 0);
    account(&m, "M", NULL, 0, NULL, 0);
    account(&x, "X", NULL, 0, NULL, 0);

    open_kind(&ops[0], &n, "USD", 2, "10", 0, "5");
    open_kind(&ops[1], &n, "USD", 2, "10.00", 0, "5.00");
    open_kind(&ops[2], &n, "USD", 2, "10", 0, "6");
    open_kind(&ops[3], &m, "USD", 2, "0", 0, "0");
    open_kind(&ops[4], &m, "USD", 2, "0", 1, "0");
    open_kind(&ops[5], &m, "USD", 2, "0", 0, "0");
    limit_op(&ops[6], &n, "7");
    open_kind(&ops[7], &n, "USD", 2, "10", 0, "5");
    open_kind(&ops[8], &n, "USD", 2, "10", 0, "7");
    open_kind(&ops[9], &x, "USD", 2, "1", 1, "0");
    open_kind(&ops[10], &x, "USD", 2, "1", 1, "0");
    open_kind(&ops[11], &x, "USD", 2, "1", 0, "0");

    /* openings: three accounts and one limit recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 12), 4);
    /* an opening with an overdraft limit */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].status == 201
                && ops[0].source_limit == units("5", 2)
                && ops[0].source_held == 0
                && n.opening_limit == units("5", 2) && !n.external);
    /* repeated with the same limit (by value): 200 */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_EXISTS
                && ops[1].source_limit == units("5", 2));
    /* repeated with another limit: 409 account_exists */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_CONFLICT
                && ops[2].status == 409 && is_code(&ops[2], "account_exists"));
    /* another kind: 409; the same kind again: 200 */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[4].outcome == NGX_RBCS_LEDGER_CONFLICT
                && is_code(&ops[4], "account_exists")
                && ops[5].outcome == NGX_RBCS_LEDGER_EXISTS);
    /* the limit changed after the opening */
    assert_true(ops[6].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[6].source_version == 2);
    /* a repeat compares the opening limit, answers the current one */
    assert_true(ops[7].outcome == NGX_RBCS_LEDGER_EXISTS
                && ops[7].source_limit == units("7", 2)
                && ops[7].source_version == 2);
    /* a repeat with the current (not the opening) limit: 409 */
    assert_true(is_code(&ops[8], "account_exists"));
    /* an EXTERNAL opening: repeated as EXTERNAL 200, as STANDARD 409 */
    assert_true(ops[9].outcome == NGX_RBCS_LEDGER_APPLIED && x.external
                && ops[10].outcome == NGX_RBCS_LEDGER_EXISTS
                && is_code(&ops[11], "account_exists"));
    /* an account opened by the batch keeps its opening limit apart */
    assert_true(n.created && !n.limit_set && n.changes == 0
                && n.limit == units("7", 2) && n.opening_limit == units("5", 2)
                && n.version == 2);

    /* accounts read from the database */

    account(&p, "P", "USD", 2, "1.00", 4);
    kind(&p, 0, "20", "5");
    account(&q, "Q", "USD", 2, "0", 1);
    kind(&q, 1, "0", "0");

    open_kind(&ops[0], &p, "USD", 2, "1", 0, "5");
    open_kind(&ops[1], &p, "USD", 2, "1", 0, "20");
    open_kind(&ops[2], &q, "USD", 2, "0", 0, "0");
    open_kind(&ops[3], &q, "USD", 2, "0", 1, "0");

    /* repeats record nothing */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 4), 0);
    /* an existing account: its opening limit is compared, its current one
     * answered */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_EXISTS
                && ops[0].source_limit == units("20", 2)
                && ops[0].source_version == 4
                && is_code(&ops[1], "account_exists"));
    /* an existing EXTERNAL account: only an EXTERNAL repeat matches */
    assert_true(is_code(&ops[2], "account_exists")
                && ops[3].outcome == NGX_RBCS_LEDGER_EXISTS
                && p.changes == 0 && q.changes == 0);
}


static void
test_limit_op(void **state)
{
    ngx_rbcs_ledger_op_t       ops[16];
    ngx_rbcs_ledger_account_t  a, j, x, m, n;

    (void) state;

    account(&a, "A", "USD", 2, "10.00", 3);
    account(&j, "J", "JPY", 0, "100", 1);
    account(&x, "X", "USD", 2, "0", 1);
    kind(&x, 1, "0", "0");
    account(&m, "M", NULL, 0, NULL, 0);

    limit_op(&ops[0], &m, "10");
    limit_op(&ops[1], &a, "0.001");
    limit_op(&ops[2], &j, "1.5");
    limit_op(&ops[3], &x, "10");
    limit_op(&ops[4], &x, "0.001");
    limit_op(&ops[5], &a, "0");
    limit_op(&ops[6], &a, "0.00");
    limit_op(&ops[7], &a, "25.5");
    limit_op(&ops[8], &a, "25.50");
    limit_op(&ops[9], &j, "0");
    limit_op(&ops[10], &a, "1000000000000000000");
    limit_op(&ops[11], &m, "0.001");

    /* limits: one change recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 12), 1);
    /* a missing account: 404 account_not_found */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_CONFLICT
                && ops[0].status == 404
                && is_code(&ops[0], "account_not_found"));
    assert_string_equal(ops[0].detail, "account M does not exist");
    /* more decimals than the account's scale: 400 invalid_amount */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_INVALID
                && ops[1].status == 400 && is_code(&ops[1], "invalid_amount"));
    assert_string_equal(ops[1].detail,
                        "overdraftLimit must be a non-negative decimal with "
                        "at most 2 fractional digits");
    /* a fraction at scale 0: 400 */
    assert_true(is_code(&ops[2], "invalid_amount") && ops[2].status == 400);
    /* an EXTERNAL account: 409 account_kind_conflict */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_CONFLICT
                && ops[3].status == 409
                && is_code(&ops[3], "account_kind_conflict"));
    /* order: 404, then the scale, then the kind */
    assert_true(is_code(&ops[4], "invalid_amount")
                && is_code(&ops[11], "account_not_found"));
    /* the same limit (zero, by value): 200, no version bump */
    assert_true(ops[5].outcome == NGX_RBCS_LEDGER_EXISTS && ops[5].status == 200
                && ops[5].code == NULL && ops[5].source_version == 3
                && ops[5].source_limit == 0 && ops[5].source_held == 0
                && ops[5].source_balance == units("10", 2)
                && ops[6].outcome == NGX_RBCS_LEDGER_EXISTS);
    /* another limit: 200, version + 1 */
    assert_true(ops[7].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[7].status == 200
                && ops[7].source_version == 4
                && ops[7].source_limit == units("25.5", 2)
                && ops[7].source_balance == units("10", 2));
    /* that limit again: 200, unchanged */
    assert_true(ops[8].outcome == NGX_RBCS_LEDGER_EXISTS
                && ops[8].source_version == 4);
    /* zero on a scale 0 account: the same, 200 */
    assert_true(ops[9].outcome == NGX_RBCS_LEDGER_EXISTS);
    /* 19 integer digits: invalid_amount */
    assert_true(is_code(&ops[10], "invalid_amount"));
    /* only the changed account is updated, without money moving */
    assert_true(a.limit == units("25.5", 2) && a.limit_set && a.changes == 1
                && a.delta == 0 && a.version == 4 && a.balance == units("10", 2)
                && !x.limit_set && x.changes == 0 && !j.limit_set
                && j.changes == 0 && !m.exists);

    /* the next batch reads the new limit; lowering to zero is a change */

    account(&a, "A", "USD", 2, "10.00", 4);
    kind(&a, 0, "25.5", "0");
    account(&n, "N", NULL, 0, NULL, 0);

    limit_op(&ops[0], &a, "0");
    open_kind(&ops[1], &n, "JPY", 0, "0", 0, "0");
    limit_op(&ops[2], &n, "3");

    /* three recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 3), 3);
    /* a limit lowered to zero */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED && a.limit == 0
                && a.version == 5 && a.limit_set && a.changes == 1);
    /* a limit of an account opened in the batch: inserted with it */
    assert_true(ops[2].outcome == NGX_RBCS_LEDGER_APPLIED && n.created
                && n.limit == units("3", 0) && n.opening_limit == 0
                && !n.limit_set && n.changes == 0 && n.version == 2);
}


static void
test_limit_lowered(void **state)
{
    ngx_rbcs_ledger_op_t       ops[10];
    ngx_rbcs_ledger_record_t   recs[10];
    ngx_rbcs_ledger_account_t  a, b;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "0", 1);
    kind(&a, 0, "100", "100");
    account(&b, "B", "USD", 2, "100", 1);

    transfer(&ops[0], &a, &b, &recs[0], "80", NULL, 0);
    limit_op(&ops[1], &a, "50");
    transfer(&ops[2], &a, &b, &recs[1], "0.01", NULL, 0);
    transfer(&ops[3], &b, &a, &recs[2], "10", NULL, 0);
    transfer(&ops[4], &a, &b, &recs[3], "0.01", NULL, 0);
    transfer(&ops[5], &b, &a, &recs[4], "30", NULL, 0);
    transfer(&ops[6], &a, &b, &recs[5], "10", NULL, 0);
    transfer(&ops[7], &a, &b, &recs[6], "0.01", NULL, 0);

    /* lowered: eight recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 8), 8);
    /* a debit into the overdraft */
    assert_true(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[0].source_balance == -units("80", 2));
    /* the limit lowered below what is used: set, no money moved */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[1].source_limit == units("50", 2)
                && ops[1].source_balance == -units("80", 2)
                && ops[1].source_version == 3);
    /* a later debit in the batch: insufficient_funds */
    assert_true(is_code(&ops[2], "insufficient_funds"));
    /* a credit still applies below the floor */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[3].destination_balance == -units("70", 2));
    /* still below the floor: refused */
    assert_true(is_code(&ops[4], "insufficient_funds"));
    /* back above the floor: debits down to the new -limit only */
    assert_true(ops[5].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[6].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[6].source_balance == -units("50", 2)
                && is_code(&ops[7], "insufficient_funds"));
    /* net update: balance, limit, five changes */
    assert_true(a.delta == -units("50", 2) && a.changes == 5 && a.version == 6
                && a.limit_set && a.limit == units("50", 2)
                && a.balance + b.balance == units("100", 2));
}


static void
test_limit_chain(void **state)
{
    ngx_rbcs_ledger_op_t       ops[12];
    ngx_rbcs_ledger_record_t   recs[8];
    ngx_rbcs_ledger_account_t  a, b, n;

    (void) state;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "USD", 2, "0", 1);
    account(&b, "B", "USD", 2, "0", 1);
    account(&n, "N", NULL, 0, NULL, 0);

    transfer(&ops[0], &a, &b, &recs[0], "10", NULL, 0);
    limit_op(&ops[1], &a, "10");
    transfer(&ops[2], &a, &b, &recs[1], "10", NULL, 0);
    transfer(&ops[3], &a, &b, &recs[0], "10.00", NULL, 0);
    limit_op(&ops[4], &a, "10.0");
    transfer(&ops[5], &a, &b, &recs[2], "0.01", NULL, 0);
    limit_op(&ops[6], &a, "10.01");
    transfer(&ops[7], &a, &b, &recs[3], "0.01", NULL, 0);
    open_kind(&ops[8], &n, "USD", 2, "0", 0, "0");
    limit_op(&ops[9], &n, "5");
    transfer(&ops[10], &n, &b, &recs[4], "5", NULL, 0);

    /* chain: nine recorded */
    assert_int_equal(ngx_rbcs_ledger_judge(ops, 11), 9);
    /* no limit: refused */
    assert_true(is_code(&ops[0], "insufficient_funds"));
    /* the limit raised, then a debit that needs it: applied */
    assert_true(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[2].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[2].source_balance == -units("10", 2)
                && ops[2].source_version == 3);
    /* the refused id replays its rejection after the raise */
    assert_true(ops[3].outcome == NGX_RBCS_LEDGER_REPLAY);
    /* the same limit: 200; one minor unit past it refused */
    assert_true(ops[4].outcome == NGX_RBCS_LEDGER_EXISTS
                && ops[4].source_version == 3
                && is_code(&ops[5], "insufficient_funds"));
    /* raised by a minor unit: that unit can be spent */
    assert_true(ops[6].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[6].source_version == 4
                && ops[7].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[7].source_balance == -units("10.01", 2)
                && ops[7].source_version == 5);
    /* open, raise the limit, overdraw: all in one batch */
    assert_true(ops[9].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[10].outcome == NGX_RBCS_LEDGER_APPLIED
                && ops[10].source_balance == -units("5", 2) && n.version == 3);
    /* net update of the chained account */
    assert_true(a.delta == -units("10.01", 2) && a.changes == 4 && a.limit_set
                && a.limit == units("10.01", 2)
                && a.balance + b.balance + n.balance == 0);
}


/* ------------------------------------------------- the reference model -- */

/*
 * The contract's rules, one operation at a time, on plain arrays; money
 * (balances, limits, held) in minor units at the account's scale.
 */

typedef struct {
    int                 exists;
    int                 external;
    int                 under;       /* below -limit since a lowering */
    const char         *currency;
    unsigned            scale;
    ngx_rbcs_int128_t   balance;
    ngx_rbcs_int128_t   initial;
    ngx_rbcs_int128_t   limit;
    ngx_rbcs_int128_t   opening_limit;
    ngx_rbcs_int128_t   held;
    uint64_t            version;
} m_account_t;

typedef struct {
    int                 found;
    int                 has_scale;
    int                 src, dst;
    char                key[64];
    const char         *currency;
    const char         *request_currency;
    int                 hold_state;  /* NGX_RBCS_LEDGER_PENDING ... */
    ngx_rbcs_int128_t   hold_amount; /* minor units */
    ngx_rbcs_int128_t   captured;
    int                 expires;     /* a time, 0: never */
} m_record_t;

typedef struct {
    unsigned            outcome;
    unsigned            status;
    const char         *code;
    ngx_rbcs_int128_t   src_balance, dst_balance;   /* minor units */
    uint64_t            src_version, dst_version;
    ngx_rbcs_int128_t   src_limit, src_held;        /* minor units */
    int                 src_external;
} m_result_t;

typedef struct {
    int                 kind;
    int                 src, dst, id;
    const char         *amount;      /* an opening's initial balance */
    const char         *currency;    /* NULL: none */
    unsigned            currency_scale;
    int                 external;    /* an opening's */
    const char         *limit;       /* an opening's */
    int                 hold;        /* a transfer that holds */
    int                 ttl;         /* its expiresIn, 0: never */
    int                 now;         /* the time it is judged at */
    const char         *cap;         /* a capture's amount, NULL: whole */
} m_op_t;


static const char  *m_names[T_MAX_ACCOUNTS] = {
    "A", "B", "C", "D", "E", "F", "acc-1", "ACC-1"
};

static const struct {
    const char  *code;
    unsigned     scale;
} m_currencies[] = { { "USD", 2 }, { "JPY", 0 }, { "BTC", 8 } };

static const char  *m_amounts[] = {
    "0", "1", "1.5", "0.01", "0.001", "10", "25.25", "100", "0.00000001",
    "1000000000000000000", "999999999999999999", "3", "7.00", "50",
    "500000000000000000"
};

static const char  *m_initials[] = {
    "0", "100", "5", "999999999999999999", "20"
};

/* opening limits: checked at the currency's scale before the judge, so
 * one invalid there ("2.5" in JPY) is replaced by "0" */
static const char  *m_open_limits[] = {
    "0", "0", "10", "100", "2.5", "999999999999999999"
};

/* limits set: some invalid at some scales, one out of range */
static const char  *m_set_limits[] = {
    "0", "10", "100", "0.001", "2.5", "50", "10.00", "0.00000001",
    "999999999999999999", "1000000000000000000"
};

#define T_NELTS(a)  (sizeof(a) / sizeof((a)[0]))


/* the model's own invariant breaches (a model or test bug, not a judge's) */
static int  m_bad;


/* how often the property test met each case: it must meet them all */

enum {
    C_OVERDRAWN = 0, C_INSUFFICIENT, C_EXTERNAL_NEGATIVE, C_DEBIT_OVERFLOW,
    C_CREDIT_OVERFLOW, C_LIMIT_404, C_LIMIT_400, C_LIMIT_409, C_LIMIT_SAME,
    C_LIMIT_SET, C_LIMIT_UNDER, C_OPEN_EXISTS, C_OPEN_CONFLICT,
    C_DB_FLOOR_CHECKED, C_DB_LOWERED, C_HOLD, C_HOLD_REFUSED,
    C_CAPTURE_WHOLE, C_CAPTURE_PART, C_RESOLVE_REPLAY, C_VOID, C_EXPIRE,
    C_NOT_DUE, C_DUE_REFUSED, C_EXCEEDS, C_NOT_PENDING, C_NOT_FOUND, C_N
};

static const char  *c_names[C_N] = {
    "overdrawn", "insufficient_funds", "EXTERNAL below zero",
    "debit balance_overflow", "credit balance_overflow", "limit 404",
    "limit 400", "limit 409", "limit same", "limit set",
    "limit set under use", "opening repeated", "opening 409",
    "floor checked in the db", "lowered in the batch", "hold",
    "hold refused", "capture whole", "capture part", "resolution replay",
    "void", "expiry", "expiry not due", "capture/void when due",
    "amount_exceeds_hold", "hold_not_pending", "resolve 404"
};

static unsigned long  c_seen[C_N];


static int
m_streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


static const char *
m_or(const char *a, const char *b)
{
    return a ? a : b;
}


static ngx_rbcs_int128_t
m_max(unsigned scale)
{
    ngx_rbcs_int128_t  m;
    unsigned           i;

    m = 1;

    for (i = 0; i < 18 + scale; i++) {
        m *= 10;
    }

    return m - 1;
}


static void
m_key(char *out, const char *amount)
{
    size_t  n;

    n = ngx_rbcs_amount_normalize((u_char *) out, (const u_char *) amount,
                                  strlen(amount));
    out[n] = '\0';
}


/* minor units at a scale, -1 when not valid there (zero allowed) */

static ngx_rbcs_int128_t
m_minor(const char *text, unsigned scale)
{
    ngx_rbcs_uint128_t  u;

    if (ngx_rbcs_amount_parse((const u_char *) text, strlen(text), scale, 1,
                              &u)
        != NGX_RBCS_AMOUNT_OK)
    {
        return -1;
    }

    return (ngx_rbcs_int128_t) u;
}


/* ledger units to signed minor units at a scale; a value that is not a
 * whole number of minor units gives one no model value can equal */

#define M_INEXACT  (-((ngx_rbcs_int128_t) 1 << 126))

static ngx_rbcs_int128_t
m_signed(ngx_rbcs_int128_t value, unsigned scale)
{
    int                 neg;
    ngx_rbcs_int128_t   u;

    u = (ngx_rbcs_int128_t) ngx_rbcs_ledger_to_units(value, scale, &neg);

    if (ngx_rbcs_ledger_from_units((ngx_rbcs_uint128_t) u, scale)
        != (neg ? -value : value))
    {
        return M_INEXACT;
    }

    return neg ? -u : u;
}


static void
m_account_result(m_account_t *s, m_result_t *res)
{
    res->src_balance = s->balance;
    res->src_version = s->version;
    res->src_limit = s->limit;
    res->src_held = s->held;
    res->src_external = s->external;
}


/*
 * After every operation: within DECIMAL(36,18), and no STANDARD account's
 * available balance below -limit unless a lowering of its limit left it
 * there (and no credit has lifted it back since).
 */

static void
m_check(m_account_t *acc, unsigned seed, int i)
{
    int           k;
    m_account_t  *a;

    for (k = 0; k < T_MAX_ACCOUNTS; k++) {
        a = &acc[k];

        if (!a->exists) {
            continue;
        }

        if (a->balance > m_max(a->scale) || a->balance < -m_max(a->scale)) {
            m_bad++;
            print_error("seed %u op %d: model: %s beyond DECIMAL(36,18)\n",
                        seed, i, m_names[k]);
        }

        if (a->external) {
            continue;
        }

        if (a->balance - a->held >= -a->limit) {
            a->under = 0;

        } else if (!a->under) {
            m_bad++;
            print_error("seed %u op %d: model: %s below -limit\n", seed, i,
                        m_names[k]);
        }
    }
}


static void m_resolve(m_account_t *acc, m_record_t *recs, m_op_t *op,
    m_result_t *res);


static void
m_step(m_account_t *acc, m_record_t *recs, m_op_t *op, m_result_t *res)
{
    int                  has_scale, same;
    char                 key[64];
    unsigned             scale;
    const char          *cur;
    m_account_t         *s, *d;
    m_record_t          *rec;
    ngx_rbcs_int128_t    v;
    ngx_rbcs_uint128_t   u;

    memset(res, 0, sizeof(*res));

    if (op->kind >= NGX_RBCS_LEDGER_CAPTURE) {
        m_resolve(acc, recs, op, res);
        return;
    }

    if (op->kind == NGX_RBCS_LEDGER_OPEN) {
        s = &acc[op->src];

        if (s->exists) {
            if (m_streq(s->currency, op->currency)
                && s->initial == units(op->amount, op->currency_scale)
                && s->external == op->external
                && s->opening_limit == m_minor(op->limit, op->currency_scale))
            {
                res->outcome = NGX_RBCS_LEDGER_EXISTS;
                res->status = 200;
                m_account_result(s, res);

            } else {
                res->outcome = NGX_RBCS_LEDGER_CONFLICT;
                res->status = 409;
                res->code = "account_exists";
            }

            return;
        }

        ngx_rbcs_amount_parse((const u_char *) op->amount,
                              strlen(op->amount), op->currency_scale, 1, &u);
        s->exists = 1;
        s->external = op->external;
        s->currency = op->currency;
        s->scale = op->currency_scale;
        s->balance = (ngx_rbcs_int128_t) u;
        s->initial = units(op->amount, op->currency_scale);
        s->limit = m_minor(op->limit, op->currency_scale);
        s->opening_limit = s->limit;
        s->held = 0;
        s->version = 1;
        res->outcome = NGX_RBCS_LEDGER_APPLIED;
        res->status = 201;
        m_account_result(s, res);
        return;
    }

    if (op->kind == NGX_RBCS_LEDGER_LIMIT) {
        s = &acc[op->src];

        if (!s->exists) {
            res->outcome = NGX_RBCS_LEDGER_CONFLICT;
            res->status = 404;
            res->code = "account_not_found";
            return;
        }

        v = m_minor(op->amount, s->scale);

        if (v < 0) {
            res->outcome = NGX_RBCS_LEDGER_INVALID;
            res->status = 400;
            res->code = "invalid_amount";
            return;
        }

        if (s->external) {
            res->outcome = NGX_RBCS_LEDGER_CONFLICT;
            res->status = 409;
            res->code = "account_kind_conflict";
            return;
        }

        res->status = 200;

        if (v == s->limit) {
            res->outcome = NGX_RBCS_LEDGER_EXISTS;

        } else {
            s->limit = v;
            s->version++;
            res->outcome = NGX_RBCS_LEDGER_APPLIED;

            /* the only way below the floor */
            if (s->balance - s->held < -s->limit) {
                s->under = 1;
                c_seen[C_LIMIT_UNDER]++;
            }
        }

        m_account_result(s, res);
        return;
    }

    s = &acc[op->src];
    d = &acc[op->dst];
    rec = &recs[op->id];
    m_key(key, op->amount);

    if (op->hold) {
        sprintf(key + strlen(key), op->ttl ? "|H%d" : "|H", op->ttl);
    }

    has_scale = 1;
    scale = s->exists ? s->scale : d->exists ? d->scale : op->currency_scale;
    if (!s->exists && !d->exists && op->currency == NULL) {
        has_scale = 0;
    }

    same = rec->found && rec->src == op->src && rec->dst == op->dst
           && strcmp(rec->key, key) == 0
           && m_streq(m_or(op->currency, rec->currency),
                      m_or(rec->request_currency, rec->currency));

    if (rec->found && !rec->has_scale && same) {
        res->outcome = NGX_RBCS_LEDGER_REPLAY;
        res->status = 200;
        return;
    }

    u = 0;

    if (has_scale
        && ngx_rbcs_amount_parse((const u_char *) op->amount,
                                 strlen(op->amount), scale, 0, &u)
           != NGX_RBCS_AMOUNT_OK)
    {
        res->outcome = NGX_RBCS_LEDGER_INVALID;
        res->status = 400;
        res->code = "invalid_amount";
        return;
    }

    if (op->src == op->dst) {
        res->outcome = NGX_RBCS_LEDGER_INVALID;
        res->status = 400;
        res->code = "same_account";
        return;
    }

    if (rec->found) {
        res->outcome = same ? NGX_RBCS_LEDGER_REPLAY
                            : NGX_RBCS_LEDGER_CONFLICT;
        res->status = same ? 200 : 409;
        res->code = same ? NULL : "transaction_id_conflict";
        return;
    }

    cur = s->exists ? s->currency : d->exists ? d->currency : op->currency;
    v = (ngx_rbcs_int128_t) u;
    res->outcome = NGX_RBCS_LEDGER_REJECTED;

    if (!s->exists || !d->exists) {
        res->status = 404;
        res->code = "account_not_found";

    } else if (!m_streq(s->currency, d->currency)
               || (op->currency && !m_streq(op->currency, s->currency)))
    {
        res->status = 422;
        res->code = "currency_mismatch";

    } else if (!s->external && s->balance - s->held - v < -s->limit) {
        res->status = 422;
        res->code = "insufficient_funds";

    } else if (s->balance - v < -m_max(s->scale)) {
        res->status = 422;
        res->code = "balance_overflow";

    } else if (d->balance + v > m_max(d->scale)) {
        res->status = 422;
        res->code = "balance_overflow";

    } else if (op->hold && (s->held + v > m_max(s->scale)
                            || s->balance - s->held - v < -m_max(s->scale)))
    {
        res->status = 422;
        res->code = "balance_overflow";

    } else if (op->hold) {
        s->held += v;
        s->version++;
        res->outcome = NGX_RBCS_LEDGER_APPLIED;
        res->status = 201;
        m_account_result(s, res);

    } else {
        s->balance -= v;
        d->balance += v;
        s->version++;
        d->version++;
        res->outcome = NGX_RBCS_LEDGER_APPLIED;
        res->status = 201;
        m_account_result(s, res);
        res->dst_balance = d->balance;
        res->dst_version = d->version;

        /* a debit never leaves a STANDARD source below -limit, and is
         * never taken from one that is already there */
        if (!s->external && s->balance - s->held < -s->limit) {
            m_bad++;
            print_error("model: a debit left %s below -limit\n",
                        m_names[op->src]);
        }
    }

    rec->found = 1;
    rec->has_scale = has_scale;
    rec->src = op->src;
    rec->dst = op->dst;
    strcpy(rec->key, key);
    rec->currency = cur;
    rec->request_currency = op->currency;
    rec->hold_state = (op->hold && res->outcome == NGX_RBCS_LEDGER_APPLIED)
                      ? NGX_RBCS_LEDGER_PENDING : NGX_RBCS_LEDGER_NOT_HOLD;
    rec->hold_amount = v;
    rec->captured = 0;
    rec->expires = op->ttl ? op->now + op->ttl : 0;
}


/* a hold's capture, void or expiry, by the contract's rules */

static void
m_resolve(m_account_t *acc, m_record_t *recs, m_op_t *op, m_result_t *res)
{
    int                  capture, due;
    m_account_t         *s, *d;
    m_record_t          *rec;
    ngx_rbcs_int128_t    v;

    s = &acc[op->src];
    d = &acc[op->dst];
    rec = &recs[op->id];
    capture = (op->kind == NGX_RBCS_LEDGER_CAPTURE);
    res->outcome = NGX_RBCS_LEDGER_CONFLICT;

    if (!rec->found) {
        res->status = 404;
        res->code = "transaction_not_found";
        return;
    }

    v = rec->hold_amount;

    if (capture && op->cap && s->exists) {
        v = m_minor(op->cap, s->scale);

        if (v <= 0) {
            res->outcome = NGX_RBCS_LEDGER_INVALID;
            res->status = 400;
            res->code = "invalid_amount";
            return;
        }
    }

    if (rec->hold_state == NGX_RBCS_LEDGER_NOT_HOLD || !s->exists
        || rec->src != op->src
        || (capture && (!d->exists || rec->dst != op->dst)))
    {
        res->status = 409;
        res->code = "hold_not_pending";
        return;
    }

    if (rec->hold_state != NGX_RBCS_LEDGER_PENDING) {
        if ((capture && rec->hold_state == NGX_RBCS_LEDGER_CAPTURED
             && rec->captured == v)
            || (op->kind == NGX_RBCS_LEDGER_VOID
                && rec->hold_state == NGX_RBCS_LEDGER_VOIDED))
        {
            res->outcome = NGX_RBCS_LEDGER_REPLAY;
            res->status = 200;
            return;
        }

        res->status = 409;
        res->code = "hold_not_pending";
        return;
    }

    due = rec->expires && op->now >= rec->expires;

    if (op->kind == NGX_RBCS_LEDGER_EXPIRE ? !due : due) {
        res->status = 409;
        res->code = "hold_not_pending";
        return;
    }

    if (capture) {
        if (v > rec->hold_amount) {
            res->status = 422;
            res->code = "amount_exceeds_hold";
            return;
        }

        if (s->balance - v < -m_max(s->scale)
            || d->balance + v > m_max(d->scale))
        {
            res->status = 422;
            res->code = "balance_overflow";
            return;
        }

        s->balance -= v;
        d->balance += v;
        d->version++;
        res->dst_balance = d->balance;
        res->dst_version = d->version;
        rec->captured = v;
    }

    s->held -= rec->hold_amount;
    s->version++;
    m_account_result(s, res);
    res->outcome = NGX_RBCS_LEDGER_APPLIED;
    res->status = 200;
    rec->hold_state = capture ? NGX_RBCS_LEDGER_CAPTURED
                      : op->kind == NGX_RBCS_LEDGER_VOID
                        ? NGX_RBCS_LEDGER_VOIDED : NGX_RBCS_LEDGER_EXPIRED;
}


/* ------------------------------------------------- the property test -- */

/* the database as the batches leave it (money in ledger units) */

typedef struct {
    m_account_t         acc[T_MAX_ACCOUNTS];
    ngx_rbcs_ledger_record_t  recs[T_MAX_IDS];
    char                keys[T_MAX_IDS][64];
} t_db_t;


static void
t_count(ngx_rbcs_ledger_op_t *op, m_result_t *w)
{
    switch (op->kind) {

    case NGX_RBCS_LEDGER_CAPTURE:
    case NGX_RBCS_LEDGER_VOID:
    case NGX_RBCS_LEDGER_EXPIRE:
        if (op->outcome == NGX_RBCS_LEDGER_APPLIED) {
            c_seen[op->kind == NGX_RBCS_LEDGER_VOID ? C_VOID
                   : op->kind == NGX_RBCS_LEDGER_EXPIRE ? C_EXPIRE
                   : op->value == op->released ? C_CAPTURE_WHOLE
                   : C_CAPTURE_PART]++;

        } else if (op->outcome == NGX_RBCS_LEDGER_REPLAY) {
            c_seen[C_RESOLVE_REPLAY]++;

        } else if (is_code(op, "amount_exceeds_hold")) {
            c_seen[C_EXCEEDS]++;

        } else if (is_code(op, "transaction_not_found")) {
            c_seen[C_NOT_FOUND]++;

        } else if (op->kind == NGX_RBCS_LEDGER_EXPIRE) {
            c_seen[C_NOT_DUE]++;

        } else if (strstr(op->detail, "expired")) {
            c_seen[C_DUE_REFUSED]++;

        } else if (is_code(op, "hold_not_pending")) {
            c_seen[C_NOT_PENDING]++;
        }

        break;

    case NGX_RBCS_LEDGER_TRANSFER:
        if (op->hold) {
            c_seen[op->outcome == NGX_RBCS_LEDGER_APPLIED ? C_HOLD
                   : op->outcome == NGX_RBCS_LEDGER_REJECTED ? C_HOLD_REFUSED
                   : C_HOLD]++;
        }

        if (op->outcome == NGX_RBCS_LEDGER_APPLIED && op->source_balance < 0) {
            c_seen[w->src_external ? C_EXTERNAL_NEGATIVE : C_OVERDRAWN]++;
        }

        if (is_code(op, "insufficient_funds")) {
            c_seen[C_INSUFFICIENT]++;
        }

        if (is_code(op, "balance_overflow")) {
            c_seen[strstr(op->detail, "debit") ? C_DEBIT_OVERFLOW
                                               : C_CREDIT_OVERFLOW]++;
        }

        break;

    case NGX_RBCS_LEDGER_LIMIT:
        c_seen[op->status == 404 ? C_LIMIT_404
               : op->status == 400 ? C_LIMIT_400
               : op->status == 409 ? C_LIMIT_409
               : op->outcome == NGX_RBCS_LEDGER_EXISTS ? C_LIMIT_SAME
               : C_LIMIT_SET]++;
        break;

    case NGX_RBCS_LEDGER_OPEN:
        if (op->outcome == NGX_RBCS_LEDGER_EXISTS) {
            c_seen[C_OPEN_EXISTS]++;

        } else if (op->outcome == NGX_RBCS_LEDGER_CONFLICT) {
            c_seen[C_OPEN_CONFLICT]++;
        }

        break;
    }
}


/*
 * The i-th random operation.  An opening is, half the time, a repeat of
 * the account's first one in the sequence (first[], kind 0 while none),
 * else mostly in the account's own currency (index % 3).  Half of the
 * transfers are wholly random (ids from a small set: conflicts), the other
 * half plausible: between two accounts of one own currency, a whole amount,
 * a fresh id, or an earlier transfer repeated.  So that money moves often
 * enough to reach the floors and the ends of the range.
 */

static const char  *m_plain_amounts[] = {
    "1", "3", "10", "50", "100", "500000000000000000", "999999999999999999"
};


static const char  *m_cap_amounts[] = {
    "1", "0.5", "3", "10", "50", "0.001", "100", "0"
};


/*
 * A third of the operations are about holds: holds (a fifth of them with
 * an expiry a few ticks on), and captures, voids and expiries of the id of
 * an earlier transfer or hold, at a time that moves on a tick or two per
 * operation.
 */

static void
m_generate(m_op_t *ops, int i, m_op_t *first, int *next_id)
{
    int           j, k;
    unsigned      cur_ix, r;
    m_op_t       *o;
    static int    now;

    if (i == 0) {
        now = 1;
    }

    now += rand() % 3;

    o = &ops[i];
    memset(o, 0, sizeof(*o));
    o->now = now;
    cur_ix = rand() % 3;
    r = rand() % 12;

    if (r >= 8) {
        for (k = 0; k < 8 && i > 0; k++) {
            j = rand() % i;

            /* mostly holds: their resolutions are the point */
            if (ops[j].kind != NGX_RBCS_LEDGER_TRANSFER
                || (!ops[j].hold && k < 6))
            {
                continue;
            }

            o->kind = (r <= 9) ? NGX_RBCS_LEDGER_CAPTURE
                      : (r == 10) ? NGX_RBCS_LEDGER_VOID
                      : NGX_RBCS_LEDGER_EXPIRE;
            o->src = ops[j].src;
            o->dst = ops[j].dst;
            o->id = ops[j].id;

            if (o->kind == NGX_RBCS_LEDGER_CAPTURE && rand() % 3) {
                o->cap = m_cap_amounts[rand() % T_NELTS(m_cap_amounts)];
            }

            return;
        }

        r = 3;
    }

    if (r == 0) {
        o->kind = NGX_RBCS_LEDGER_LIMIT;
        o->src = rand() % T_MAX_ACCOUNTS;
        o->amount = m_set_limits[rand() % T_NELTS(m_set_limits)];
        return;
    }

    if (r <= 2) {
        o->kind = NGX_RBCS_LEDGER_OPEN;
        o->src = rand() % T_MAX_ACCOUNTS;

        if (first[o->src].kind && rand() % 2 == 0) {
            *o = first[o->src];
            return;
        }

        if (rand() % 4 != 0) {
            cur_ix = o->src % 3;
        }

        o->amount = m_initials[rand() % T_NELTS(m_initials)];
        o->currency = m_currencies[cur_ix].code;
        o->currency_scale = m_currencies[cur_ix].scale;
        o->external = (rand() % 4 == 0);
        o->limit = m_open_limits[rand() % T_NELTS(m_open_limits)];

        /* an EXTERNAL opening with a limit, or a limit invalid at the
         * scale, is a 400 before the judge */
        if (o->external || m_minor(o->limit, o->currency_scale) < 0) {
            o->limit = "0";
        }

        if (first[o->src].kind == 0) {
            first[o->src] = *o;
        }

        return;
    }

    o->kind = NGX_RBCS_LEDGER_TRANSFER;

    if (rand() % 3 == 0) {
        o->hold = 1;
        o->ttl = (rand() % 5 == 0) ? 1 + rand() % 6 : 0;
    }

    if (rand() % 2 == 0) {
        o->src = rand() % T_MAX_ACCOUNTS;
        o->dst = (rand() % 8 == 0) ? o->src : rand() % T_MAX_ACCOUNTS;
        o->id = rand() % T_RANDOM_IDS;
        o->amount = m_amounts[rand() % T_NELTS(m_amounts)];

        if (rand() % 3 == 0) {
            o->currency = m_currencies[cur_ix].code;
            o->currency_scale = m_currencies[cur_ix].scale;
        }

        return;
    }

    if (i > 0 && rand() % 4 == 0) {
        j = rand() % i;

        if (ops[j].kind == NGX_RBCS_LEDGER_TRANSFER) {
            *o = ops[j];
            o->now = now;
            return;
        }
    }

    o->src = rand() % T_MAX_ACCOUNTS;

    do {
        o->dst = o->src % 3 + 3 * (rand() % 3);
    } while (o->dst >= T_MAX_ACCOUNTS || o->dst == o->src);

    o->id = (*next_id < T_MAX_IDS) ? (*next_id)++ : rand() % T_MAX_IDS;
    o->amount = m_plain_amounts[rand() % T_NELTS(m_plain_amounts)];
}


static int
property_round(unsigned seed, int nops, int *nbatches)
{
    int                         i, j, k, n, start, fails, want_recorded;
    int                         next_id;
    int                         lowered[T_MAX_ACCOUNTS];
    size_t                      recorded;
    m_op_t                      mops[T_MAX_OPS], first[T_MAX_ACCOUNTS];
    m_result_t                  want[T_MAX_OPS];
    m_account_t                 model[T_MAX_ACCOUNTS];
    m_record_t                  mrecs[T_MAX_IDS];
    ngx_rbcs_int128_t           sum, opened, bal;
    ngx_rbcs_int128_t           cur_limit[T_MAX_ACCOUNTS];
    static t_db_t               db;
    ngx_rbcs_ledger_op_t        ops[T_MAX_OPS];
    ngx_rbcs_ledger_record_t    recs[T_MAX_IDS];
    ngx_rbcs_ledger_account_t   slots[T_MAX_ACCOUNTS];
    static char                 rec_keys[T_MAX_IDS][64];
    static char                 rec_expires[T_MAX_IDS][16];
    static char                 times[T_MAX_OPS][16];
    static u_char               hold_keys[T_MAX_OPS][72];
    ngx_rbcs_int128_t           start_avail[T_MAX_ACCOUNTS], held;

    srand(seed);
    memset(&db, 0, sizeof(db));
    memset(model, 0, sizeof(model));
    memset(mrecs, 0, sizeof(mrecs));

    memset(first, 0, sizeof(first));
    next_id = T_RANDOM_IDS;

    for (i = 0; i < nops; i++) {
        m_generate(mops, i, first, &next_id);
    }

    m_bad = 0;

    for (i = 0; i < nops; i++) {
        m_step(model, mrecs, &mops[i], &want[i]);
        m_check(model, seed, i);
    }

    fails = m_bad;
    opened = 0;
    *nbatches = 0;

    for (start = 0; start < nops; start += n) {
        n = 1 + rand() % 16;
        if (start + n > nops) {
            n = nops - start;
        }

        (*nbatches)++;

        /* round trip 1: the batch reads its accounts and ids */

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            memset(&slots[k], 0, sizeof(slots[k]));
            slots[k].number = str(m_names[k]);

            if (db.acc[k].exists) {
                slots[k].exists = 1;
                slots[k].external = db.acc[k].external;
                slots[k].currency = str(db.acc[k].currency);
                slots[k].scale = db.acc[k].scale;
                slots[k].balance = db.acc[k].balance;
                slots[k].initial = db.acc[k].initial;
                slots[k].limit = db.acc[k].limit;
                slots[k].opening_limit = db.acc[k].opening_limit;
                slots[k].held = db.acc[k].held;
                slots[k].version = db.acc[k].version;
            }
        }

        memcpy(recs, db.recs, sizeof(recs));

        for (j = 0; j < n; j++) {
            m_op_t *o = &mops[start + j];

            if (o->kind == NGX_RBCS_LEDGER_OPEN) {
                open_kind(&ops[j], &slots[o->src], o->currency,
                          o->currency_scale, o->amount, o->external,
                          o->limit);

            } else if (o->kind == NGX_RBCS_LEDGER_LIMIT) {
                limit_op(&ops[j], &slots[o->src], o->amount);

            } else if (o->kind >= NGX_RBCS_LEDGER_CAPTURE) {
                sprintf(times[j], "%010d", o->now);
                resolve_op(&ops[j], o->kind, &slots[o->src],
                           &slots[o->dst], &recs[o->id], o->cap, times[j]);

            } else {
                transfer(&ops[j], &slots[o->src], &slots[o->dst],
                         &recs[o->id], o->amount, o->currency,
                         o->currency_scale);

                if (o->hold) {
                    size_t kl;

                    kl = ngx_rbcs_amount_normalize(hold_keys[j],
                             (const u_char *) o->amount, strlen(o->amount));
                    kl += sprintf((char *) hold_keys[j] + kl,
                                  o->ttl ? "|H%d" : "|H", o->ttl);
                    ops[j].amount_key.data = hold_keys[j];
                    ops[j].amount_key.len = kl;
                    ops[j].hold = 1;

                    if (o->ttl) {
                        sprintf(times[j], "%010d", o->now + o->ttl);
                        ops[j].expires = str(times[j]);
                    }
                }
            }
        }

        recorded = ngx_rbcs_ledger_judge(ops, n);

        /* the outcomes against the model's */

        want_recorded = 0;

        for (j = 0; j < n; j++) {
            ngx_rbcs_ledger_op_t *op = &ops[j];
            m_result_t *w = &want[start + j];
            m_op_t *o = &mops[start + j];
            unsigned sc = op->source->scale;

            if (w->outcome == NGX_RBCS_LEDGER_APPLIED
                || w->outcome == NGX_RBCS_LEDGER_REJECTED)
            {
                want_recorded++;
            }

            if (op->outcome != w->outcome || op->status != w->status
                || !m_streq(op->code, w->code))
            {
                fails++;
                print_error("seed %u op %d: outcome %u/%u code %s, model "
                            "%u/%u code %s\n", seed, start + j, op->outcome,
                            op->status, op->code ? op->code : "-", w->outcome,
                            w->status, w->code ? w->code : "-");
                continue;
            }

            t_count(op, w);

            if ((op->outcome == NGX_RBCS_LEDGER_APPLIED
                 || op->outcome == NGX_RBCS_LEDGER_EXISTS)
                && (m_signed(op->source_balance, sc) != w->src_balance
                    || op->source_version != w->src_version))
            {
                fails++;
                print_error("seed %u op %d: source balance or version "
                            "differs\n", seed, start + j);
            }

            if ((o->kind == NGX_RBCS_LEDGER_OPEN
                 || o->kind == NGX_RBCS_LEDGER_LIMIT)
                && (op->outcome == NGX_RBCS_LEDGER_APPLIED
                    || op->outcome == NGX_RBCS_LEDGER_EXISTS)
                && (m_signed(op->source_limit, sc) != w->src_limit
                    || m_signed(op->source_held, sc) != w->src_held))
            {
                fails++;
                print_error("seed %u op %d: source limit or held differs\n",
                            seed, start + j);
            }

            if (o->kind == NGX_RBCS_LEDGER_CAPTURE
                && op->outcome == NGX_RBCS_LEDGER_APPLIED
                && (m_signed(op->destination_balance, sc) != w->dst_balance
                    || op->destination_version != w->dst_version))
            {
                fails++;
                print_error("seed %u op %d: capture's destination differs\n",
                            seed, start + j);
            }

            if (o->kind == NGX_RBCS_LEDGER_TRANSFER
                && op->outcome == NGX_RBCS_LEDGER_APPLIED)
            {
                if (m_signed(op->destination_balance, sc) != w->dst_balance
                    || op->destination_version != w->dst_version)
                {
                    fails++;
                    print_error("seed %u op %d: destination balance differs\n",
                                seed, start + j);
                }

                /* the judge's own numbers: a debit stops at the floor
                 * that held when it was judged */
                if (op->source_balance
                    < (w->src_external
                       ? -NGX_RBCS_LEDGER_MAX
                       : -ngx_rbcs_ledger_from_units(
                             (ngx_rbcs_uint128_t) w->src_limit, sc))
                    || op->destination_balance > NGX_RBCS_LEDGER_MAX)
                {
                    fails++;
                    print_error("seed %u op %d: a debit went below the floor\n",
                                seed, start + j);
                }
            }
        }

        if ((int) recorded != want_recorded) {
            fails++;
            print_error("seed %u: %d recorded, the model says %d\n", seed,
                        (int) recorded, want_recorded);
        }

        /* which accounts had their limit lowered in the batch (only that
         * may leave one below -limit): the limits in batch order */

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            lowered[k] = 0;
            cur_limit[k] = db.acc[k].limit;
        }

        for (j = 0; j < n; j++) {
            if (ops[j].outcome != NGX_RBCS_LEDGER_APPLIED
                || (ops[j].kind != NGX_RBCS_LEDGER_OPEN
                    && ops[j].kind != NGX_RBCS_LEDGER_LIMIT))
            {
                continue;
            }

            k = mops[start + j].src;

            if (ops[j].kind == NGX_RBCS_LEDGER_LIMIT
                && ops[j].source_limit < cur_limit[k])
            {
                lowered[k] = 1;
            }

            cur_limit[k] = ops[j].source_limit;
        }

        /* round trip 2: openings inserted as they end, net updates */

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            start_avail[k] = db.acc[k].balance - db.acc[k].held;

            if (slots[k].created) {
                if (db.acc[k].exists || slots[k].limit_set
                    || slots[k].changes || slots[k].delta)
                {
                    fails++;
                    print_error("seed %u: %s opened with updates\n", seed,
                                m_names[k]);
                }

                db.acc[k].exists = 1;
                db.acc[k].external = slots[k].external;
                db.acc[k].currency = (const char *) slots[k].currency.data;
                db.acc[k].scale = slots[k].scale;
                db.acc[k].balance = slots[k].balance;
                db.acc[k].initial = slots[k].initial;
                db.acc[k].limit = slots[k].limit;
                db.acc[k].opening_limit = slots[k].opening_limit;
                db.acc[k].held = slots[k].held;
                db.acc[k].version = slots[k].version;
                opened += slots[k].initial;
                start_avail[k] = slots[k].initial;
                continue;
            }

            if (!db.acc[k].exists) {
                continue;
            }

            bal = db.acc[k].balance + slots[k].delta;

            if (bal != slots[k].balance
                || db.acc[k].version + slots[k].changes != slots[k].version)
            {
                fails++;
                print_error("seed %u: net update of %s differs from the "
                            "judged state\n", seed, m_names[k]);
            }

            if ((!slots[k].limit_set && slots[k].limit != db.acc[k].limit)
                || (slots[k].limit_set && slots[k].changes == 0)
                || slots[k].opening_limit != db.acc[k].opening_limit
                || slots[k].external != db.acc[k].external
                || slots[k].held != db.acc[k].held + slots[k].held_delta)
            {
                fails++;
                print_error("seed %u: the limit of %s changed without "
                            "limit_set, or its kind or opening limit did\n",
                            seed, m_names[k]);
            }

            db.acc[k].balance = bal;
            db.acc[k].version += slots[k].changes;
            db.acc[k].held += slots[k].held_delta;

            if (slots[k].limit_set) {
                db.acc[k].limit = slots[k].limit;
            }
        }

        for (k = 0; k < T_MAX_IDS; k++) {
            if (recs[k].found && !db.recs[k].found) {
                db.recs[k] = recs[k];
                db.recs[k].op = NULL;

                /* the record outlives the batch's strings */
                memcpy(rec_keys[k], recs[k].amount_key.data,
                       recs[k].amount_key.len);
                db.recs[k].amount_key.data = (u_char *) rec_keys[k];
            }

            /* a hold's row changes with its resolution */

            if (recs[k].found) {
                db.recs[k].hold_state = recs[k].hold_state;
                db.recs[k].hold_amount = recs[k].hold_amount;
                db.recs[k].captured = recs[k].captured;
                db.recs[k].expires = NONE;

                if (recs[k].expires.data) {
                    memcpy(rec_expires[k], recs[k].expires.data,
                           recs[k].expires.len);
                    db.recs[k].expires.data = (u_char *) rec_expires[k];
                    db.recs[k].expires.len = recs[k].expires.len;
                }
            }
        }

        /* every held balance is the sum of its account's pending holds,
         * and a capture never took more than its hold */

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            held = 0;

            for (j = 0; j < T_MAX_IDS; j++) {
                if (db.recs[j].found
                    && db.recs[j].hold_state == NGX_RBCS_LEDGER_PENDING
                    && db.recs[j].source.len == strlen(m_names[k])
                    && memcmp(db.recs[j].source.data, m_names[k],
                              db.recs[j].source.len) == 0)
                {
                    held += db.recs[j].hold_amount;
                }

                if (k == 0 && db.recs[j].found
                    && db.recs[j].hold_state == NGX_RBCS_LEDGER_CAPTURED
                    && (db.recs[j].captured > db.recs[j].hold_amount
                        || db.recs[j].captured <= 0))
                {
                    fails++;
                    print_error("seed %u: hold %d captured beyond its amount\n",
                                seed, j);
                }
            }

            if (db.acc[k].exists && db.acc[k].held != held) {
                fails++;
                print_error("seed %u batch %d: %s holds %s pending, held %s\n",
                            seed, *nbatches, m_names[k], "a sum", "another");
            }
        }

        /* money is conserved, EXTERNAL accounts included; every balance
         * within DECIMAL(36,18); a STANDARD account debited on balance in
         * the batch is not below -limit unless its limit was lowered */

        sum = 0;

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            m_account_t *a = &db.acc[k];

            if (!a->exists) {
                continue;
            }

            sum += a->balance;

            if (a->balance > NGX_RBCS_LEDGER_MAX
                || a->balance < -NGX_RBCS_LEDGER_MAX)
            {
                fails++;
                print_error("seed %u: %s beyond DECIMAL(36,18)\n", seed,
                            m_names[k]);
            }

            if (a->external || a->balance - a->held >= start_avail[k]) {
                continue;
            }

            if (lowered[k]) {
                c_seen[C_DB_LOWERED]++;
                continue;
            }

            if (a->balance < 0) {
                c_seen[C_DB_FLOOR_CHECKED]++;
            }

            if (a->balance - a->held < -a->limit) {
                fails++;
                print_error("seed %u batch %d: %s below -limit\n", seed,
                            *nbatches, m_names[k]);
            }
        }

        if (sum != opened) {
            fails++;
            print_error("seed %u: money not conserved\n", seed);
        }
    }

    return fails;
}


static void
test_property(void **state)
{
    int        r, fails, batches, total;
    unsigned  *args, seed, rounds;

    args = *state;
    seed = args[0];
    rounds = args[1];

    fails = 0;
    total = 0;

    for (r = 0; r < (int) rounds && fails == 0; r++) {
        fails += property_round(seed + r, T_MAX_OPS, &batches);
        total += batches;
    }

    for (r = 0, batches = 0; r < C_N; r++) {
        print_message("# property: %-26s %lu\n", c_names[r], c_seen[r]);
        batches += (c_seen[r] == 0);
    }

    /*
     * random sequences of T_MAX_OPS operations (openings of both kinds with
     * overdraft limits, limits set, holds, captures, voids, expiries),
     * judged in batches, agree with the model one operation at a time;
     * money conserved, no debit or hold below the floor, held balances the
     * sum of pending holds
     */

    if (fails) {
        fail_msg("property: sequence %d of %u (%d batches) disagrees with "
                 "the model (seed %u)", r, rounds, total, seed);
    }

    if (rounds >= 1000 && batches) {
        fail_msg("property: %d cases never met (see the counts)", batches);
    }
}


int
main(int argc, char **argv)
{
    unsigned  args[2];

    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_recorded),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_overdraft),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_open_kind),
        cmocka_unit_test(test_limit_op),
        cmocka_unit_test(test_limit_lowered),
        cmocka_unit_test(test_limit_chain),
        cmocka_unit_test(test_holds),
        cmocka_unit_test_prestate(test_property, args),
    };

    args[0] = argc > 1 ? (unsigned) strtoul(argv[1], NULL, 10) : 20261203;
    args[1] = argc > 2 ? (unsigned) strtoul(argv[2], NULL, 10) : 3000;

    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
