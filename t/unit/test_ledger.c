
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
 * judge in 10^-18 units: the two do their arithmetic differently.
 *
 *     build/unit/test_ledger [SEED [ROUNDS]]
 */


#include <stdlib.h>

#include "ngx_rbcs_ledger.h"
#include "tap.h"


#define S(s)  ((ngx_rbcs_ledger_str_t) { (const u_char *) (s), sizeof(s) - 1 })
#define NONE  ((ngx_rbcs_ledger_str_t) { NULL, 0 })

#define T_MAX_OPS       64
#define T_MAX_ACCOUNTS  8
#define T_MAX_IDS       24


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
test_basics(void)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[4];
    ngx_rbcs_ledger_account_t  a, b, c, x;

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

    tap_is_int(ngx_rbcs_ledger_judge(ops, 7), 4,
               "four outcomes recorded");

    tap_ok(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED && ops[0].status == 201,
           "a transfer applies");
    tap_ok(ops[0].source_balance == units("89.50", 2)
           && ops[0].destination_balance == units("15.50", 2)
           && ops[0].source_version == 2 && ops[0].destination_version == 4,
           "... leaving both balances and versions");
    tap_ok(ops[1].outcome == NGX_RBCS_LEDGER_REPLAY && ops[1].status == 200,
           "the same id and fields in the same batch: a replay "
           "(amount by value, currency given = the accounts')");
    tap_ok(ops[2].outcome == NGX_RBCS_LEDGER_CONFLICT
           && is_code(&ops[2], "transaction_id_conflict"),
           "the same id with another amount: 409");
    tap_ok(ops[3].outcome == NGX_RBCS_LEDGER_REJECTED
           && is_code(&ops[3], "insufficient_funds")
           && strcmp(ops[3].detail, "account A has insufficient funds") == 0,
           "one unit more than the chained balance: 422 (%s)",
           ops[3].detail);
    tap_ok(ops[4].outcome == NGX_RBCS_LEDGER_APPLIED
           && ops[4].source_balance == 0 && ops[4].source_version == 3,
           "exactly the chained balance: applied, down to zero");
    tap_ok(ops[5].outcome == NGX_RBCS_LEDGER_REJECTED
           && is_code(&ops[5], "currency_mismatch"),
           "accounts of two currencies: 422 currency_mismatch");
    tap_ok(ops[6].outcome == NGX_RBCS_LEDGER_CONFLICT,
           "an id recorded as a rejection in the batch: other fields 409");

    tap_ok(a.delta == -units("100.00", 2) && a.changes == 2
           && b.delta == units("100.00", 2) && b.changes == 2
           && c.changes == 0,
           "net changes per account: one update each");
    tap_ok(a.balance + b.balance == units("105.00", 2),
           "money is conserved");
}


static void
test_order(void)
{
    ngx_rbcs_ledger_op_t       ops[8];
    ngx_rbcs_ledger_record_t   recs[8];
    ngx_rbcs_ledger_account_t  a, b, x, y;

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

    tap_is_int(ngx_rbcs_ledger_judge(ops, 7), 3, "three recorded");

    tap_ok(is_code(&ops[0], "invalid_amount") && ops[0].status == 400
           && strcmp(ops[0].detail, "amount must be a positive decimal with "
                     "at most 2 fractional digits") == 0,
           "invalid_amount at the account's scale before same_account");
    tap_ok(is_code(&ops[1], "same_account") && ops[1].status == 400,
           "then same_account");
    tap_ok(ops[2].outcome == NGX_RBCS_LEDGER_REJECTED
           && is_code(&ops[2], "account_not_found") && !ops[2].has_scale
           && strcmp(ops[2].detail, "account X does not exist") == 0,
           "no scale known: only the grammar, then 404 (zero allowed)");
    tap_ok(is_code(&ops[3], "invalid_amount"),
           "the requested currency gives the scale when no account does");
    tap_ok(is_code(&ops[4], "account_not_found") && ops[4].has_scale
           && ops[4].record_currency.len == 3,
           "missing source: 404, recorded with the destination's currency");
    tap_ok(is_code(&ops[5], "account_not_found")
           && strcmp(ops[5].detail, "account Y does not exist") == 0,
           "missing destination: 404 naming it");
    tap_ok(is_code(&ops[6], "invalid_amount"), "zero: invalid_amount");
    tap_ok(!recs[0].found && !recs[1].found && !recs[6].found,
           "400s are not recorded: their ids stay free");
}


static void
test_recorded(void)
{
    ngx_rbcs_ledger_op_t       ops[4];
    ngx_rbcs_ledger_record_t   rec;
    ngx_rbcs_ledger_account_t  a, b;

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

    tap_ok(ops[0].outcome == NGX_RBCS_LEDGER_REPLAY,
           "a rejection recorded without scale is replayed as recorded");
    tap_ok(is_code(&ops[1], "invalid_amount"),
           "... but not with another currency: the checks apply");

    rec.has_scale = 1;
    rec.currency = S("USD");
    rec.request_currency = S("USD");
    rec.amount_key = S("1");

    transfer(&ops[0], &a, &b, &rec, "1.00", NULL, 0);
    transfer(&ops[1], &a, &b, &rec, "1", "EUR", 2);
    ngx_rbcs_ledger_judge(ops, 2);
    tap_ok(ops[0].outcome == NGX_RBCS_LEDGER_REPLAY,
           "an omitted currency equals a recorded one");
    tap_ok(ops[1].outcome == NGX_RBCS_LEDGER_CONFLICT,
           "another currency conflicts");
}


static void
test_limits(void)
{
    ngx_rbcs_ledger_op_t       ops[4];
    ngx_rbcs_ledger_record_t   recs[4];
    ngx_rbcs_ledger_account_t  a, b;

    memset(recs, 0, sizeof(recs));
    account(&a, "A", "ETH", 18, "999999999999999999.999999999999999999", 1);
    account(&b, "B", "ETH", 18, "999999999999999999.999999999999999998", 1);

    transfer(&ops[0], &a, &b, &recs[0], "0.000000000000000002", NULL, 0);
    transfer(&ops[1], &a, &b, &recs[1], "0.000000000000000001", NULL, 0);
    transfer(&ops[2], &a, &b, &recs[2], "1000000000000000000", NULL, 0);
    ngx_rbcs_ledger_judge(ops, 3);

    tap_ok(is_code(&ops[0], "balance_overflow")
           && strcmp(ops[0].detail, "the credit would take account B beyond "
                     "the largest balance") == 0,
           "one unit past the largest balance: balance_overflow");
    tap_ok(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED
           && ops[1].destination_balance == NGX_RBCS_LEDGER_MAX,
           "up to the largest balance exactly");
    tap_ok(is_code(&ops[2], "invalid_amount"),
           "19 integer digits: invalid_amount");
}


static void
test_open(void)
{
    ngx_rbcs_ledger_op_t       ops[6];
    ngx_rbcs_ledger_record_t   recs[2];
    ngx_rbcs_ledger_account_t  n, m;

    memset(recs, 0, sizeof(recs));
    account(&n, "N", NULL, 0, NULL, 0);
    account(&m, "M", "USD", 2, "7.00", 1);

    open_op(&ops[0], &n, "USD", 2, "10");
    transfer(&ops[1], &n, &m, &recs[0], "4", NULL, 0);
    open_op(&ops[2], &n, "USD", 2, "10.00");
    open_op(&ops[3], &n, "USD", 2, "11");
    open_op(&ops[4], &m, "EUR", 2, "7");

    tap_is_int(ngx_rbcs_ledger_judge(ops, 5), 2, "two recorded");
    tap_ok(ops[0].outcome == NGX_RBCS_LEDGER_APPLIED && ops[0].status == 201
           && ops[0].source_version == 1, "an opening creates the account");
    tap_ok(ops[1].outcome == NGX_RBCS_LEDGER_APPLIED,
           "a transfer later in the batch uses it");
    tap_ok(ops[2].outcome == NGX_RBCS_LEDGER_EXISTS && ops[2].status == 200
           && ops[2].source_balance == units("6", 2)
           && ops[2].source_version == 2,
           "the same opening again: the account as it is then");
    tap_ok(is_code(&ops[3], "account_exists") && ops[3].status == 409,
           "another initial balance: 409");
    tap_ok(is_code(&ops[4], "account_exists"),
           "another currency: 409");
    tap_ok(n.created && n.changes == 0 && n.balance == units("6", 2)
           && m.delta == units("4", 2) && m.changes == 1,
           "an account opened by the batch is inserted as it ends");
}


/* ------------------------------------------------- the reference model -- */

/*
 * The contract's rules, one operation at a time, on plain arrays; money in
 * minor units at the account's scale.
 */

typedef struct {
    int                 exists;
    const char         *currency;
    unsigned            scale;
    ngx_rbcs_int128_t   balance;
    ngx_rbcs_int128_t   initial;
    uint64_t            version;
} m_account_t;

typedef struct {
    int                 found;
    int                 has_scale;
    int                 src, dst;
    char                key[64];
    const char         *currency;
    const char         *request_currency;
} m_record_t;

typedef struct {
    unsigned            outcome;
    unsigned            status;
    const char         *code;
    ngx_rbcs_int128_t   src_balance, dst_balance;   /* minor units */
    uint64_t            src_version, dst_version;
} m_result_t;

typedef struct {
    int                 kind;
    int                 src, dst, id;
    const char         *amount;
    const char         *currency;    /* NULL: none */
    unsigned            currency_scale;
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
    "1000000000000000000", "999999999999999999", "3", "7.00", "50"
};

static const char  *m_initials[] = {
    "0", "100", "5", "999999999999999999", "20"
};


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


static void
m_step(m_account_t *acc, m_record_t *recs, m_op_t *op, m_result_t *res)
{
    int                  has_scale, same;
    char                 key[64];
    unsigned             scale;
    const char          *cur;
    m_account_t         *s, *d;
    m_record_t          *rec;
    ngx_rbcs_uint128_t   u;

    memset(res, 0, sizeof(*res));

    if (op->kind == NGX_RBCS_LEDGER_OPEN) {
        s = &acc[op->src];

        if (s->exists) {
            if (m_streq(s->currency, op->currency)
                && s->initial == units(op->amount, op->currency_scale))
            {
                res->outcome = NGX_RBCS_LEDGER_EXISTS;
                res->status = 200;
                res->src_balance = s->balance;
                res->src_version = s->version;

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
        s->currency = op->currency;
        s->scale = op->currency_scale;
        s->balance = (ngx_rbcs_int128_t) u;
        s->initial = units(op->amount, op->currency_scale);
        s->version = 1;
        res->outcome = NGX_RBCS_LEDGER_APPLIED;
        res->status = 201;
        res->src_balance = s->balance;
        res->src_version = 1;
        return;
    }

    s = &acc[op->src];
    d = &acc[op->dst];
    rec = &recs[op->id];
    m_key(key, op->amount);

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
    res->outcome = NGX_RBCS_LEDGER_REJECTED;

    if (!s->exists || !d->exists) {
        res->status = 404;
        res->code = "account_not_found";

    } else if (!m_streq(s->currency, d->currency)
               || (op->currency && !m_streq(op->currency, s->currency)))
    {
        res->status = 422;
        res->code = "currency_mismatch";

    } else if (s->balance < (ngx_rbcs_int128_t) u) {
        res->status = 422;
        res->code = "insufficient_funds";

    } else if (d->balance + (ngx_rbcs_int128_t) u > m_max(d->scale)) {
        res->status = 422;
        res->code = "balance_overflow";

    } else {
        s->balance -= u;
        d->balance += u;
        s->version++;
        d->version++;
        res->outcome = NGX_RBCS_LEDGER_APPLIED;
        res->status = 201;
        res->src_balance = s->balance;
        res->dst_balance = d->balance;
        res->src_version = s->version;
        res->dst_version = d->version;
    }

    rec->found = 1;
    rec->has_scale = has_scale;
    rec->src = op->src;
    rec->dst = op->dst;
    strcpy(rec->key, key);
    rec->currency = cur;
    rec->request_currency = op->currency;
}


/* ------------------------------------------------- the property test -- */

/* the database as the batches leave it */

typedef struct {
    m_account_t         acc[T_MAX_ACCOUNTS];
    ngx_rbcs_ledger_record_t  recs[T_MAX_IDS];
    char                keys[T_MAX_IDS][64];
} t_db_t;


static int
property_round(unsigned seed, int nops, int *nbatches)
{
    int                         i, j, k, n, start, fails;
    unsigned                    cur_ix;
    m_op_t                      mops[T_MAX_OPS];
    m_result_t                  want[T_MAX_OPS];
    m_account_t                 model[T_MAX_ACCOUNTS];
    m_record_t                  mrecs[T_MAX_IDS];
    ngx_rbcs_int128_t           sum, opened, bal;
    static t_db_t               db;
    ngx_rbcs_ledger_op_t        ops[T_MAX_OPS];
    ngx_rbcs_ledger_record_t    recs[T_MAX_IDS];
    ngx_rbcs_ledger_account_t   slots[T_MAX_ACCOUNTS];
    static char                 rec_keys[T_MAX_IDS][64];

    srand(seed);
    memset(&db, 0, sizeof(db));
    memset(model, 0, sizeof(model));
    memset(mrecs, 0, sizeof(mrecs));

    for (i = 0; i < nops; i++) {
        m_op_t *o = &mops[i];

        memset(o, 0, sizeof(*o));
        cur_ix = rand() % 3;

        if (rand() % 4 == 0) {
            o->kind = NGX_RBCS_LEDGER_OPEN;
            o->src = rand() % T_MAX_ACCOUNTS;
            o->amount = m_initials[rand() % 5];
            o->currency = m_currencies[cur_ix].code;
            o->currency_scale = m_currencies[cur_ix].scale;
            continue;
        }

        o->kind = NGX_RBCS_LEDGER_TRANSFER;
        o->src = rand() % T_MAX_ACCOUNTS;
        o->dst = (rand() % 8 == 0) ? o->src : rand() % T_MAX_ACCOUNTS;
        o->id = rand() % T_MAX_IDS;
        o->amount = m_amounts[rand() % (sizeof(m_amounts) / sizeof(char *))];

        if (rand() % 3 == 0) {
            o->currency = m_currencies[cur_ix].code;
            o->currency_scale = m_currencies[cur_ix].scale;
        }
    }

    for (i = 0; i < nops; i++) {
        m_step(model, mrecs, &mops[i], &want[i]);
    }

    fails = 0;
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
                slots[k].currency = str(db.acc[k].currency);
                slots[k].scale = db.acc[k].scale;
                slots[k].balance = db.acc[k].balance;
                slots[k].initial = db.acc[k].initial;
                slots[k].version = db.acc[k].version;
            }
        }

        memcpy(recs, db.recs, sizeof(recs));

        for (j = 0; j < n; j++) {
            m_op_t *o = &mops[start + j];

            if (o->kind == NGX_RBCS_LEDGER_OPEN) {
                open_op(&ops[j], &slots[o->src], o->currency,
                        o->currency_scale, o->amount);
            } else {
                transfer(&ops[j], &slots[o->src], &slots[o->dst],
                         &recs[o->id], o->amount, o->currency,
                         o->currency_scale);
            }
        }

        ngx_rbcs_ledger_judge(ops, n);

        /* the outcomes against the model's */

        for (j = 0; j < n; j++) {
            ngx_rbcs_ledger_op_t *op = &ops[j];
            m_result_t *w = &want[start + j];
            m_op_t *o = &mops[start + j];
            unsigned sc = op->source->scale;
            int neg;

            if (op->outcome != w->outcome || op->status != w->status
                || !m_streq(op->code, w->code))
            {
                fails++;
                tap_diag("seed %u op %d: outcome %u/%u code %s, model "
                         "%u/%u code %s", seed, start + j, op->outcome,
                         op->status, op->code ? op->code : "-", w->outcome,
                         w->status, w->code ? w->code : "-");
                continue;
            }

            if ((op->outcome == NGX_RBCS_LEDGER_APPLIED
                 || op->outcome == NGX_RBCS_LEDGER_EXISTS)
                && ((ngx_rbcs_int128_t)
                        ngx_rbcs_ledger_to_units(op->source_balance, sc,
                                                 &neg)
                    != w->src_balance
                    || op->source_version != w->src_version))
            {
                fails++;
                tap_diag("seed %u op %d: source balance or version differs",
                         seed, start + j);
            }

            if (o->kind == NGX_RBCS_LEDGER_TRANSFER
                && op->outcome == NGX_RBCS_LEDGER_APPLIED
                && ((ngx_rbcs_int128_t)
                        ngx_rbcs_ledger_to_units(op->destination_balance, sc,
                                                 &neg)
                    != w->dst_balance
                    || op->destination_version != w->dst_version))
            {
                fails++;
                tap_diag("seed %u op %d: destination balance differs",
                         seed, start + j);
            }
        }

        /* round trip 2: openings inserted as they end, net updates */

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            if (slots[k].created) {
                db.acc[k].exists = 1;
                db.acc[k].currency = (const char *) slots[k].currency.data;
                db.acc[k].scale = slots[k].scale;
                db.acc[k].balance = slots[k].balance;
                db.acc[k].initial = slots[k].initial;
                db.acc[k].version = slots[k].version;
                opened += slots[k].initial;
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
                tap_diag("seed %u: net update of %s differs from the "
                         "judged state", seed, m_names[k]);
            }

            db.acc[k].balance = bal;
            db.acc[k].version += slots[k].changes;
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
        }

        /* money is conserved, nothing below zero */

        sum = 0;

        for (k = 0; k < T_MAX_ACCOUNTS; k++) {
            if (db.acc[k].exists) {
                sum += db.acc[k].balance;

                if (db.acc[k].balance < 0) {
                    fails++;
                    tap_diag("seed %u: %s below zero", seed, m_names[k]);
                }
            }
        }

        if (sum != opened) {
            fails++;
            tap_diag("seed %u: money not conserved", seed);
        }
    }

    return fails;
}


int
main(int argc, char **argv)
{
    int       r, fails, batches, total;
    unsigned  seed, rounds;

    seed = argc > 1 ? (unsigned) strtoul(argv[1], NULL, 10) : 20261203;
    rounds = argc > 2 ? (unsigned) strtoul(argv[2], NULL, 10) : 3000;

    test_basics();
    test_order();
    test_recorded();
    test_limits();
    test_open();

    fails = 0;
    total = 0;

    for (r = 0; r < (int) rounds && fails == 0; r++) {
        fails += property_round(seed + r, T_MAX_OPS, &batches);
        total += batches;
    }

    tap_ok(fails == 0, "property: %u random sequences of %d operations "
           "(%d batches), judged in batches, agree with the model one "
           "operation at a time (seed %u)", rounds, T_MAX_OPS, total, seed);

    return tap_done();
}
