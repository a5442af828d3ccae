/*
 * perf/dbclient.c - what the database alone does with transfers: the
 * baselines the service is measured against.
 *
 * A benchmark client, not part of the service: T threads, each with its own
 * blocking MariaDB Connector/C connection, each sending transfers for a
 * fixed duration.  Two modes:
 *
 *   --mode lean     the write baseline the project is judged against:
 *                   one call of a lean stored procedure per transfer, in a
 *                   database of its own (perf/baseline.sql, default
 *                   -D rbcs_baseline; perf/gen-accounts.sh --baseline N
 *                   creates it), one transfer per transaction, one round
 *                   trip:
 *
 *       CALL lean_transfer('<id>','<src>','<dst>',<amount>,NULL,NULL)
 *
 *   --mode batch    exactly the module's write path (src/ngx_rbcs_batch.c)
 *                   on the project's schema (default -D rbcs): each thread
 *                   takes B transfers at a time (--batch B) and writes them
 *                   in one database transaction, in two round trips:
 *
 *       1. START TRANSACTION;SELECT 'now',UTC_TIMESTAMP(3),NULL...
 *          UNION ALL (SELECT 'account',<account columns>,NULL... FROM
 *          accounts WHERE account_number IN (<every account of the batch,
 *          sorted>) ORDER BY account_number FOR UPDATE) UNION ALL SELECT
 *          <transaction columns> FROM transactions WHERE transaction_id
 *          IN (<the batch's ids, sorted>)
 *          -- one result set, so the server answers in one packet
 *       2. BEGIN NOT ATOMIC INSERT INTO transactions ... VALUES (one row
 *          per transfer);INSERT INTO entries ... VALUES (two rows per
 *          applied transfer);INSERT INTO audit_log ... VALUES (one row
 *          per transfer);UPDATE accounts SET balance = balance + CASE
 *          account_number WHEN ... END, version = version + CASE ... END,
 *          updated_at = <now> WHERE account_number IN (...);COMMIT;END
 *          -- one compound statement, so the server answers once
 *
 *                   Between the two, the client judges the batch as the
 *                   module does (src/ngx_rbcs_ledger.c), in arrival order:
 *                   404 for a missing account, 422 for currencies that
 *                   differ or insufficient funds, balances chained through
 *                   the batch, exact integers in minor units of the
 *                   account's scale (no floating point on money).  B = 1
 *                   is one transfer per transaction on the project's
 *                   schema.
 *
 * Sessions are set up as the module's pool sets them up: ascii, READ
 * COMMITTED, innodb_lock_wait_timeout 2, CLIENT_MULTI_STATEMENTS |
 * CLIENT_MULTI_RESULTS, over TCP, autocommit on.  A deadlock (1213), a lock
 * wait timeout (1205) or a duplicate key (1062) is rolled back and the
 * transfer (lean) or the whole batch (batch: read and judged again) is
 * retried, counted as "retries"; the latency of a transfer runs from the
 * first try of its transfer or batch to its commit.  The SQL of the first
 * transfer or batch of thread 1 is printed to stderr (statements cut at
 * 600 characters).
 *
 * Accounts: PREFIX-<at least 6 digits> (perf/gen-accounts.sh).  Pairs:
 *   uniform  random distinct source and destination among 1..N
 *   hot      the pair 1 and 2, alternating direction per thread
 *
 *   build/perf/dbclient --mode lean -t 32 -d 10 -m uniform -n 10000
 *   build/perf/dbclient --mode batch --batch 16 -t 16 -d 10 -m hot
 *
 * --cpu-pid PID (mariadbd's): the CPU time (user + system) of that process
 * over the timed run alone, from /proc/PID/stat, printed as db_cpu_s (the
 * money checks and connecting are outside it).
 *
 * Money check: before and after the run, the sum of every balance in the
 * database (exact, compared as the server's DECIMAL text) and the number of
 * negative balances; money=ok when the sum did not change and none is
 * negative (exit status 3 otherwise).  On the project's schema (batch
 * mode) "negative" is a STANDARD account below its floor (balance - held
 * < -overdraft limit, conf/schema.sql's accounts_within_limit): EXTERNAL
 * accounts have none (the deposit scenario's PREFIX-EXT is below zero).
 *
 * Output (stdout), one line:
 *   DBCLIENT mode=batch batch=16 pairs=uniform threads=8 seconds=10.00
 *   transfers=12345 tps=1234.5 p50_ms=1.234 p99_ms=5.678 max_ms=9.9
 *   retries=0 errors=0 rejected=0 commits=772 money=ok negative=0
 *   total=10000000.000000000000000000 [db_cpu_s=4.321]
 * where transfers counts recorded outcomes (applied or rejected), rejected
 * those other than 201 (e.g. 422 insufficient_funds), commits the
 * database transactions committed, errors failed transfers or batches
 * other than retried ones.
 *
 * Build: make -C perf dbclient (perf/Makefile), needs libmariadb-dev.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>


#define MODE_LEAN        0           /* pick(): "lean" 0, "batch" 1 */
#define MODE_BATCH       1

#define BATCH_MAX        1024
#define NUMBER_LEN       80
#define ID_LEN           80
#define DETAIL_LEN       160
#define MONEY_SCALE      18          /* DECIMAL(36,18): the stored scale */
#define RETRIES_MAX      100
#define SQL_SHOWN        600

/* what the module reads in round trip 1 (src/ngx_rbcs_batch.h) */
#define ACC_FIELDS                                                           \
    "account_number, currency, scale, balance, version, created_at, "         \
    "updated_at, initial_balance, kind, CAST(overdraft_limit AS CHAR), "      \
    "held_balance, CAST(opening_limit AS CHAR)"
#define ACC_NUMBER       1
#define ACC_CURRENCY     2
#define ACC_SCALE        3
#define ACC_BALANCE      4
#define ACC_VERSION      5
#define ACC_FIELDS_N     12          /* the columns of ACC_FIELDS */

#define TX_COLUMNS                                                           \
    "'found', http_status, code, detail, transaction_id, source_account, "   \
    "destination_account, amount, amount_text, currency, scale, status, "    \
    "client_ts, created_at, source_balance, destination_balance, "           \
    "source_version, destination_version, fingerprint, request_currency, "   \
    "hold, expires_at, captured_amount, source_available, "                  \
    "resolved_source_balance, resolved_source_version, "                     \
    "resolved_source_available"
#define TX_ID            4
#define TX_N             27

/* an error of our own: the server's answer was not what was asked for */
#define ERR_ROWS         99999


__extension__ typedef __int128           money_t;
__extension__ typedef unsigned __int128  umoney_t;


typedef struct {
    const char  *host;
    unsigned     port;
    const char  *socket;
    const char  *user;
    const char  *password;
    const char  *database;
    const char  *prefix;
    const char  *amount;
    const char  *run;
    int          mode;
    int          batch;
    int          threads;
    double       seconds;
    long         accounts;
    int          hot;
    long         cpu_pid;
} config_t;


/* growable text: the statements of a round trip */
typedef struct {
    char        *data;
    size_t       len;
    size_t       cap;
} buf_t;


/* an account of the batch, as round trip 1 read it and the judge left it */
typedef struct {
    char         number[NUMBER_LEN];
    char         currency[16];
    unsigned     scale;
    int          exists;
    money_t      balance;            /* minor units of scale */
    uint64_t     version;
    money_t      delta;              /* what the batch did to it */
    uint64_t     changes;
} account_t;


typedef struct {
    char         id[ID_LEN];
    char         src[NUMBER_LEN];
    char         dst[NUMBER_LEN];

    /* the judgement */
    int          replay;             /* its id is recorded already */
    int          invalid;            /* 400, not recorded */
    int          status;             /* 201, 404, 422 */
    const char  *code;
    char         detail[DETAIL_LEN];
    const char  *currency;           /* recorded currency, NULL: none */
    int          has_scale;
    unsigned     scale;
    money_t      value;
    money_t      sbal;
    money_t      dbal;
    uint64_t     sver;
    uint64_t     dver;
} op_t;


typedef struct {
    int          id;
    pthread_t    thread;
    uint32_t    *lat_us;             /* one latency per recorded transfer */
    size_t       nlat;
    size_t       cap;
    uint64_t     retries;
    uint64_t     errors;
    uint64_t     rejected;
    uint64_t     commits;
    uint64_t     counter;
    uint64_t     seed;
    int          failed;             /* could not connect */
    char         err[256];

    /* the batch (lean mode: of one) */
    op_t        *ops;
    int          nops;
    account_t   *acc;
    int          nacc;
    char       **ids;                /* the batch's ids, sorted */
    char         now[32];
    buf_t        sql;

    /* thread 1: the SQL of its first transfer or batch, for the record */
    char        *shown1;
    char        *shown2;
} worker_t;


static config_t          cfg;
static double            t_start, t_end;
static pthread_barrier_t connected, go;

/* the amount's normalized text (the module's fingerprint uses it) */
static char   amount_key[64];


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static uint64_t
xorshift(uint64_t *s)
{
    uint64_t  x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}


static void
account(char *buf, size_t size, long i)
{
    snprintf(buf, size, "%s-%06ld", cfg.prefix, i);
}


/* the next source and destination of a thread */
static void
next_pair(worker_t *w, long *s, long *d)
{
    w->counter++;

    /* accounts 1 and 2, in alternating directions */
    if (cfg.hot) {
        *s = 2 - (long) (w->counter % 2);
        *d = 3 - *s;
        return;
    }

    *s = 1 + (long) (xorshift(&w->seed) % (uint64_t) cfg.accounts);
    *d = 1 + (long) (xorshift(&w->seed) % (uint64_t) (cfg.accounts - 1));
    if (*d >= *s) {
        (*d)++;
    }
}


/*
 * A valid amount (digits, one dot inside) and its normalized text: trailing
 * zeros of the fraction (and a dangling dot) removed, as the module
 * normalizes it for the fingerprint.
 */
static int
describe_amount(const char *a)
{
    const char  *dot;
    size_t       n, i;

    for (i = 0; a[i]; i++) {
        if (!((a[i] >= '0' && a[i] <= '9') || a[i] == '.')) {
            return -1;
        }
    }

    dot = strchr(a, '.');
    n = strlen(a);

    if (n == 0 || n >= sizeof(amount_key) || a[0] == '.' || a[n - 1] == '.'
        || (dot && strchr(dot + 1, '.'))
        || (a[0] == '0' && n > 1 && a[1] != '.'))
    {
        return -1;
    }

    memcpy(amount_key, a, n + 1);

    if (dot) {
        while (n > (size_t) (dot - a) + 1 && amount_key[n - 1] == '0') {
            amount_key[--n] = '\0';
        }
        if (n == (size_t) (dot - a) + 1) {
            amount_key[--n] = '\0';
        }
    }

    return 0;
}


/* ------------------------------------------------------------ money -- */

/*
 * A decimal text ("-12.340000000000000000", as the server writes a
 * DECIMAL(36,18), or an amount "0.01") in minor units of scale.  Digits
 * below the unit must be zeros: a value the currency cannot hold is an
 * error, never rounded.
 */
static int
money_parse(const char *s, size_t len, unsigned scale, money_t *v)
{
    int       neg, dot;
    size_t    i;
    unsigned  frac, digits;
    umoney_t  u;

    neg = 0;
    dot = 0;
    frac = 0;
    digits = 0;
    u = 0;
    i = 0;

    if (len && s[0] == '-') {
        neg = 1;
        i = 1;
    }

    for ( /* void */ ; i < len; i++) {
        if (s[i] == '.') {
            if (dot) {
                return -1;
            }
            dot = 1;
            continue;
        }

        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (dot && frac == scale) {
            if (s[i] != '0') {
                return -1;
            }
            continue;
        }

        /* 19 integer digits at most (DECIMAL(36,18) has 18) */
        if (!dot && ++digits > 19) {
            return -1;
        }

        u = u * 10 + (unsigned) (s[i] - '0');

        if (dot) {
            frac++;
        }
    }

    if (len == (size_t) neg || scale > MONEY_SCALE) {
        return -1;
    }

    for ( /* void */ ; frac < scale; frac++) {
        u *= 10;
    }

    *v = neg ? -(money_t) u : (money_t) u;

    return 0;
}


/* the largest balance the schema holds, in minor units of scale */
static money_t
money_max(unsigned scale)
{
    unsigned  i;
    money_t   m;

    m = 1;

    for (i = 0; i < MONEY_SCALE + scale; i++) {
        m *= 10;
    }

    return m - 1;
}


/* ------------------------------------------------------------- text -- */

static void buf_add(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
buf_add(buf_t *b, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);

        if (n < 0) {
            abort();
        }

        if ((size_t) n < b->cap - b->len) {
            b->len += (size_t) n;
            return;
        }

        cap = b->cap * 2 + (size_t) n + 1;
        p = realloc(b->data, cap);
        if (p == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }

        b->data = p;
        b->cap = cap;
    }
}


/*
 * Minor units of scale as a DECIMAL(36,18) text, as the module writes
 * every amount and balance: "-0.010000000000000000".
 */
static void
buf_money(buf_t *b, money_t v, unsigned scale)
{
    char      tmp[64], *p;
    unsigned  n;
    umoney_t  u;

    u = v < 0 ? -(umoney_t) v : (umoney_t) v;

    p = tmp + sizeof(tmp);
    *--p = '\0';

    for (n = scale; n < MONEY_SCALE; n++) {
        *--p = '0';
    }

    for (n = 0; n < scale; n++) {
        *--p = (char) ('0' + (unsigned) (u % 10));
        u /= 10;
    }

    *--p = '.';

    do {
        *--p = (char) ('0' + (unsigned) (u % 10));
        u /= 10;
    } while (u);

    if (v < 0) {
        *--p = '-';
    }

    buf_add(b, "%s", p);
}


/* a copy of a round trip's statements, each cut at SQL_SHOWN characters */
static char *
sql_shown(const char *q, size_t len)
{
    buf_t        b;
    size_t       n;
    const char  *p, *end, *semi;

    b.cap = len + 256;
    b.len = 0;
    b.data = malloc(b.cap);
    if (b.data == NULL) {
        return NULL;
    }
    b.data[0] = '\0';

    p = q;
    end = q + len;

    while (p < end) {
        semi = memchr(p, ';', (size_t) (end - p));
        n = semi ? (size_t) (semi - p) : (size_t) (end - p);

        if (n > SQL_SHOWN) {
            buf_add(&b, "%.*s ...(%zu characters in all)%s", SQL_SHOWN, p, n,
                    semi ? ";" : "");
        } else {
            buf_add(&b, "%.*s%s", (int) n, p, semi ? ";" : "");
        }

        p += n + (semi ? 1 : 0);
    }

    return b.data;
}


/* ------------------------------------------------------- connection -- */

static MYSQL *
connect_db(worker_t *w)
{
    MYSQL  *m;

    m = mysql_init(NULL);
    if (m == NULL) {
        snprintf(w->err, sizeof(w->err), "mysql_init failed");
        return NULL;
    }

    mysql_options(m, MYSQL_SET_CHARSET_NAME, "ascii");
    mysql_options(m, MYSQL_INIT_COMMAND,
                  "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    mysql_options(m, MYSQL_INIT_COMMAND,
                  "SET SESSION innodb_lock_wait_timeout = 2");

    if (mysql_real_connect(m, cfg.host, cfg.user, cfg.password, cfg.database,
                           cfg.socket ? 0 : cfg.port, cfg.socket,
                           CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS)
        == NULL)
    {
        snprintf(w->err, sizeof(w->err), "connect: %s", mysql_error(m));
        mysql_close(m);
        return NULL;
    }

    return m;
}


static int
retryable(unsigned err)
{
    return err == 1213 || err == 1205 || err == 1062;
}


/*
 * Send one round trip and read every result.  Each result set is handed to
 * rows (when not NULL) with its index among the result sets; a non-zero
 * return of rows stops reading it (ERR_ROWS).  Returns 0 or an error
 * number; the connection is ready for the next query either way.
 */
typedef unsigned (*rows_pt)(worker_t *w, unsigned k, MYSQL_RES *res);

static unsigned
round_trip(worker_t *w, MYSQL *m, const char *q, size_t len, rows_pt rows)
{
    int          rc;
    unsigned     k, bad;
    MYSQL_RES   *res;

    if (mysql_real_query(m, q, (unsigned long) len) != 0) {
        return mysql_errno(m);
    }

    k = 0;
    bad = 0;

    for ( ;; ) {
        res = mysql_store_result(m);

        if (res != NULL) {
            if (bad == 0 && rows != NULL) {
                bad = rows(w, k, res);
            }
            k++;
            mysql_free_result(res);

        } else if (mysql_field_count(m) != 0) {
            return mysql_errno(m);
        }

        rc = mysql_next_result(m);

        if (rc == -1) {
            return bad;          /* no more results */
        }

        if (rc > 0) {
            return mysql_errno(m);
        }
    }
}


static void
record(worker_t *w, uint32_t us)
{
    uint32_t  *p;

    if (w->nlat == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 65536;
        p = realloc(w->lat_us, w->cap * sizeof(uint32_t));
        if (p == NULL) {
            return;
        }
        w->lat_us = p;
    }

    w->lat_us[w->nlat++] = us;
}


/* the first error of a thread, for the record */
static void
note(worker_t *w, MYSQL *m, unsigned err)
{
    if (w->err[0] == '\0') {
        snprintf(w->err, sizeof(w->err), "error %u: %s", err,
                 err == ERR_ROWS ? "unexpected rows" : mysql_error(m));
    }
}


/* ------------------------------------------------------------- lean -- */

static unsigned
lean_rows(worker_t *w, unsigned k, MYSQL_RES *res)
{
    MYSQL_ROW  row;

    /* status, http_status, code, source_balance, destination_balance */

    if (k == 0 && mysql_num_fields(res) >= 2
        && (row = mysql_fetch_row(res)) != NULL && row[1] != NULL)
    {
        w->ops[0].status = atoi(row[1]);
    }

    return 0;
}


/* one try of the transfer: batch_fill drew it as a batch of one */
static unsigned
lean_try(worker_t *w, MYSQL *m)
{
    unsigned  err;

    w->ops[0].status = 0;
    err = round_trip(w, m, w->sql.data, w->sql.len, lean_rows);

    if (err == 0 && w->id == 1 && w->shown1 == NULL) {
        w->shown1 = sql_shown(w->sql.data, w->sql.len);
    }

    return err;
}


/* ------------------------------------------------------------ batch -- */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static int
cmp_account(const void *key, const void *elt)
{
    return strcmp(key, ((const account_t *) elt)->number);
}


static account_t *
batch_account(worker_t *w, const char *number)
{
    return bsearch(number, w->acc, (size_t) w->nacc, sizeof(account_t),
                   cmp_account);
}


/*
 * The next B transfers with fresh ids; every account they touch, once, in
 * byte order (the order round trip 1 locks in, as every batch locks, so
 * that batches never wait for each other crosswise); their ids, sorted.
 * In lean mode B is 1, and the transfer's CALL is made here, once for all
 * its tries.
 */
static void
batch_fill(worker_t *w)
{
    int     i, n;
    long    s, d;
    op_t   *op;
    char   *numbers[2 * BATCH_MAX];

    w->nops = cfg.batch;

    for (i = 0; i < w->nops; i++) {
        op = &w->ops[i];
        next_pair(w, &s, &d);
        snprintf(op->id, sizeof(op->id), "%s-%d-%" PRIu64, cfg.run, w->id,
                 w->counter);
        account(op->src, sizeof(op->src), s);
        account(op->dst, sizeof(op->dst), d);
        numbers[2 * i] = op->src;
        numbers[2 * i + 1] = op->dst;
        w->ids[i] = op->id;
    }

    /* ascii_bin compares bytes, as strcmp does */

    qsort(numbers, 2 * (size_t) w->nops, sizeof(char *), cmp_str);
    qsort(w->ids, (size_t) w->nops, sizeof(char *), cmp_str);

    n = 0;

    for (i = 0; i < 2 * w->nops; i++) {
        if (i > 0 && strcmp(numbers[i], numbers[i - 1]) == 0) {
            continue;
        }
        snprintf(w->acc[n++].number, NUMBER_LEN, "%s", numbers[i]);
    }

    w->nacc = n;

    if (cfg.mode == MODE_LEAN) {
        op = &w->ops[0];
        w->sql.len = 0;
        buf_add(&w->sql, "CALL lean_transfer('%s','%s','%s',%s,NULL,NULL)",
                op->id, op->src, op->dst, cfg.amount);
    }
}


static void
batch_round1_sql(worker_t *w)
{
    int     i;
    buf_t  *b = &w->sql;

    b->len = 0;

    buf_add(b, "START TRANSACTION;SELECT 'now',UTC_TIMESTAMP(3)");

    for (i = 2; i < TX_N; i++) {
        buf_add(b, ",NULL");
    }

    buf_add(b, " UNION ALL (SELECT 'account'," ACC_FIELDS);

    for (i = ACC_FIELDS_N + 1; i < TX_N; i++) {
        buf_add(b, ",NULL");
    }

    buf_add(b, " FROM accounts WHERE account_number IN (");

    for (i = 0; i < w->nacc; i++) {
        buf_add(b, "%s'%s'", i ? "," : "", w->acc[i].number);
    }

    buf_add(b, ") ORDER BY account_number FOR UPDATE) UNION ALL (SELECT "
            TX_COLUMNS " FROM transactions WHERE transaction_id IN (");

    for (i = 0; i < w->nops; i++) {
        buf_add(b, "%s'%s'", i ? "," : "", w->ids[i]);
    }

    buf_add(b, "))");
}


/* round trip 1's rows: the time, the locked accounts, the recorded ids */
static unsigned
batch_rows(worker_t *w, unsigned k, MYSQL_RES *res)
{
    int             i;
    char          **p;
    unsigned long  *len;
    MYSQL_ROW       row;
    account_t      *a;

    if (k != 0 || mysql_num_fields(res) != TX_N) {
        return ERR_ROWS;
    }

    while ((row = mysql_fetch_row(res)) != NULL) {
        len = mysql_fetch_lengths(res);

        if (row[0] == NULL) {
            return ERR_ROWS;
        }

        if (strcmp(row[0], "now") == 0) {
            if (row[1] == NULL) {
                return ERR_ROWS;
            }
            snprintf(w->now, sizeof(w->now), "%s", row[1]);
            continue;
        }

        if (strcmp(row[0], "account") == 0) {
            a = row[ACC_NUMBER] ? batch_account(w, row[ACC_NUMBER]) : NULL;

            if (a == NULL || row[ACC_CURRENCY] == NULL
                || row[ACC_SCALE] == NULL || row[ACC_VERSION] == NULL
                || row[ACC_BALANCE] == NULL)
            {
                return ERR_ROWS;
            }

            a->exists = 1;
            a->scale = (unsigned) atoi(row[ACC_SCALE]);
            snprintf(a->currency, sizeof(a->currency), "%s",
                     row[ACC_CURRENCY]);
            a->version = strtoull(row[ACC_VERSION], NULL, 10);

            if (money_parse(row[ACC_BALANCE], len[ACC_BALANCE], a->scale,
                            &a->balance)
                != 0)
            {
                return ERR_ROWS;
            }

            continue;
        }

        /*
         * Recorded already: only after a commit whose answer was lost
         * (the ids are fresh).  A replay moves no money again.
         */

        if (row[TX_ID] == NULL) {
            return ERR_ROWS;
        }

        p = bsearch(&row[TX_ID], w->ids, (size_t) w->nops, sizeof(char *),
                    cmp_str);
        if (p == NULL) {
            return ERR_ROWS;
        }

        for (i = 0; i < w->nops; i++) {
            if (w->ops[i].id == *p) {
                w->ops[i].replay = 1;
            }
        }
    }

    return 0;                /* batch_try checks that the time came */
}


static void
batch_reject(op_t *op, int status, const char *code, const char *detail,
    const char *number)
{
    op->status = status;
    op->code = code;
    snprintf(op->detail, sizeof(op->detail), detail, number);
}


/*
 * The module's judge (src/ngx_rbcs_ledger.c) for the transfers this client
 * sends (no requested currency, distinct accounts, fresh ids): in arrival
 * order, each against the accounts as the ones before it left them.
 */
static void
batch_judge(worker_t *w)
{
    int         i;
    op_t       *op;
    account_t  *s, *d;

    for (i = 0; i < w->nops; i++) {
        op = &w->ops[i];

        s = batch_account(w, op->src);
        d = batch_account(w, op->dst);
        op->invalid = 0;
        op->status = 0;
        op->code = NULL;
        op->detail[0] = '\0';
        op->currency = NULL;
        op->has_scale = 0;

        if (op->replay) {
            continue;
        }

        /* the amount's scale: the source's, else the destination's */

        if (s->exists || d->exists) {
            op->scale = s->exists ? s->scale : d->scale;
            op->has_scale = 1;

            if (money_parse(cfg.amount, strlen(cfg.amount), op->scale,
                            &op->value)
                != 0 || op->value <= 0)
            {
                op->invalid = 1;    /* 400 invalid_amount: not recorded */
                continue;
            }

            op->currency = s->exists ? s->currency : d->currency;
        }

        if (!s->exists || !d->exists) {
            batch_reject(op, 404, "account_not_found",
                         "account %s does not exist",
                         s->exists ? d->number : s->number);

        } else if (strcmp(s->currency, d->currency) != 0
                   || s->scale != d->scale)
        {
            batch_reject(op, 422, "currency_mismatch", "the accounts and the "
                         "transfer must have one currency", NULL);

        } else if (s->balance < op->value) {
            batch_reject(op, 422, "insufficient_funds",
                         "account %s has insufficient funds", s->number);

        } else if (d->balance > money_max(d->scale) - op->value) {
            batch_reject(op, 422, "balance_overflow", "the credit would take "
                         "account %s beyond the largest balance", d->number);

        } else {
            s->balance -= op->value;
            d->balance += op->value;
            s->version++;
            d->version++;
            s->delta -= op->value;
            d->delta += op->value;
            s->changes++;
            d->changes++;

            op->sbal = s->balance;
            op->dbal = d->balance;
            op->sver = s->version;
            op->dver = d->version;
            op->status = 201;
        }
    }
}


/* a recorded outcome: a row of transactions */
static void
batch_tx_row(worker_t *w, buf_t *b, op_t *op)
{
    buf_add(b, "('%s','%s','%s',", op->id, op->src, op->dst);

    /*
     * amount, amount_text, fingerprint, currency, request_currency (none
     * asked), scale: a recorded transfer has a currency and a scale when
     * either account exists
     */

    if (op->has_scale) {
        buf_money(b, op->value, op->scale);
        buf_add(b, ",'%s','%s|%s|%s','%s',NULL,%u,", cfg.amount, op->src,
                op->dst, amount_key, op->currency, op->scale);
    } else {
        buf_add(b, "NULL,'%s','%s|%s|%s',NULL,NULL,NULL,", cfg.amount,
                op->src, op->dst, amount_key);
    }

    /* status, http_status, code, detail, client_ts (none sent), balances */

    if (op->status == 201) {
        buf_add(b, "'COMPLETED',201,NULL,NULL,NULL,");
        buf_money(b, op->sbal, op->scale);
        buf_add(b, ",");
        buf_money(b, op->dbal, op->scale);
        buf_add(b, ",%" PRIu64 ",%" PRIu64 ",", op->sver, op->dver);
    } else {
        buf_add(b, "'REJECTED',%d,'%s','%s',NULL,NULL,NULL,NULL,NULL,",
                op->status, op->code, op->detail);
    }

    buf_add(b, "'%s')", w->now);
}


/* the history of an applied transfer: two rows of entries */
static void
batch_entry_rows(worker_t *w, buf_t *b, op_t *op)
{
    buf_add(b, "('%s',%" PRIu64 ",'TRANSFER','%s','%s',", op->src,
            op->sver, op->id, op->dst);
    buf_money(b, -op->value, op->scale);
    buf_add(b, ",");
    buf_money(b, op->sbal, op->scale);
    buf_add(b, ",'%s'),('%s',%" PRIu64 ",'TRANSFER','%s','%s',", w->now,
            op->dst, op->dver, op->id, op->src);
    buf_money(b, op->value, op->scale);
    buf_add(b, ",");
    buf_money(b, op->dbal, op->scale);
    buf_add(b, ",'%s')", w->now);
}


/* who changed what: a row of audit_log (no API key: actor NULL) */
static void
batch_audit_row(worker_t *w, buf_t *b, op_t *op)
{
    if (op->status == 201) {
        buf_add(b, "('%s',NULL,'transfer','%s','completed',201,"
                "'%s %s from %s to %s')", w->now, op->id, cfg.amount,
                op->currency, op->src, op->dst);
    } else {
        buf_add(b, "('%s',NULL,'transfer','%s','%s',%d,'%s')", w->now,
                op->id, op->code, op->status, op->detail);
    }
}


typedef void (*row_pt)(worker_t *w, buf_t *b, op_t *op);

/*
 * One multi-row INSERT: its head, then a row (or two) per recorded
 * transfer, or per applied one; nothing when there is none.
 */
static void
batch_insert(worker_t *w, const char *head, int applied, row_pt row)
{
    int    i, n;
    op_t  *op;

    n = 0;

    for (i = 0; i < w->nops; i++) {
        op = &w->ops[i];

        if (op->replay || op->invalid || (applied && op->status != 201)) {
            continue;
        }

        buf_add(&w->sql, "%s", n++ == 0 ? head : ",");
        row(w, &w->sql, op);
    }

    if (n) {
        buf_add(&w->sql, ";");
    }
}


/*
 * What the judge decided, in the statements the module sends: the
 * recorded outcomes, the history entries, the audit rows, one net update
 * of the accounts; COMMIT.
 */
static void
batch_round2_sql(worker_t *w)
{
    int         i, n;
    buf_t      *b = &w->sql;
    account_t  *changed[2 * BATCH_MAX];

    b->len = 0;

    buf_add(b, "BEGIN NOT ATOMIC ");

    batch_insert(w, "INSERT INTO transactions (transaction_id,"
                 " source_account, destination_account, amount,"
                 " amount_text, fingerprint, currency, request_currency,"
                 " scale, status, http_status, code, detail, client_ts,"
                 " source_balance, destination_balance, source_version,"
                 " destination_version, created_at) VALUES ", 0,
                 batch_tx_row);

    batch_insert(w, "INSERT INTO entries (account_number, version, type,"
                 " transaction_id, counterparty, amount, balance_after,"
                 " created_at) VALUES ", 1, batch_entry_rows);

    batch_insert(w, "INSERT INTO audit_log (at, actor, action, subject,"
                 " outcome, http_status, detail) VALUES ", 0,
                 batch_audit_row);

    /*
     * One net update of the accounts: the server does the arithmetic on
     * the locked rows, and the schema's CHECK refuses a negative balance
     * whatever the judge decided.
     */

    n = 0;

    for (i = 0; i < w->nacc; i++) {
        if (w->acc[i].changes) {
            changed[n++] = &w->acc[i];
        }
    }

    if (n) {
        buf_add(b, "UPDATE accounts SET balance = balance + CASE"
                " account_number");

        for (i = 0; i < n; i++) {
            buf_add(b, " WHEN '%s' THEN ", changed[i]->number);
            buf_money(b, changed[i]->delta, changed[i]->scale);
        }

        buf_add(b, " END, version = version + CASE account_number");

        for (i = 0; i < n; i++) {
            buf_add(b, " WHEN '%s' THEN %" PRIu64, changed[i]->number,
                    changed[i]->changes);
        }

        buf_add(b, " END, updated_at = '%s' WHERE account_number IN (",
                w->now);

        for (i = 0; i < n; i++) {
            buf_add(b, "%s'%s'", i ? "," : "", changed[i]->number);
        }

        buf_add(b, ");");
    }

    buf_add(b, "COMMIT;END");
}


/* one try of the batch: read and lock, judge, write and commit */
static unsigned
batch_try(worker_t *w, MYSQL *m)
{
    int        i;
    unsigned   err;
    char      *shown;

    for (i = 0; i < w->nacc; i++) {
        w->acc[i].exists = 0;
        w->acc[i].delta = 0;
        w->acc[i].changes = 0;
    }

    for (i = 0; i < w->nops; i++) {
        w->ops[i].replay = 0;
    }

    w->now[0] = '\0';

    batch_round1_sql(w);
    shown = (w->id == 1 && w->shown1 == NULL)
            ? sql_shown(w->sql.data, w->sql.len) : NULL;

    err = round_trip(w, m, w->sql.data, w->sql.len, batch_rows);

    if (err == 0 && w->now[0] == '\0') {
        err = ERR_ROWS;
    }

    if (err == 0) {
        batch_judge(w);
        batch_round2_sql(w);
        err = round_trip(w, m, w->sql.data, w->sql.len, NULL);
    }

    if (err == 0 && shown != NULL) {
        w->shown1 = shown;
        w->shown2 = sql_shown(w->sql.data, w->sql.len);
        shown = NULL;
    }

    free(shown);

    return err;
}


/* ------------------------------------------------------------- loop -- */

/*
 * Transfers until the time is up, one batch at a time (a batch of one in
 * lean mode), retried whole on a deadlock, a lock wait timeout or a
 * duplicate key.
 */
static void
transfer_loop(worker_t *w, MYSQL *m)
{
    int        i, retry;
    double     t0, t1;
    unsigned   err, tries;
    op_t      *op;

    while (now_s() < t_end) {

        batch_fill(w);

        t0 = now_s();

        for (tries = 0; ; tries++) {
            err = cfg.mode == MODE_LEAN ? lean_try(w, m) : batch_try(w, m);

            if (err == 0) {
                break;
            }

            retry = retryable(err) && tries < RETRIES_MAX;

            if (retry) {
                w->retries++;
            } else {
                w->errors++;
                note(w, m, err);
            }

            /*
             * Whatever failed, nothing of the batch may stay: a lock wait
             * timeout rolls back only its statement.  The procedure rolled
             * back before it re-raised.
             */

            if (cfg.mode == MODE_BATCH) {
                (void) mysql_query(m, "ROLLBACK");
            }

            if (!retry) {
                break;
            }
        }

        t1 = now_s();

        /* an error that is not retried: the connection checked */

        if (err != 0) {
            if (mysql_ping(m) != 0) {
                mysql_close(m);
                m = connect_db(w);
                if (m == NULL) {
                    return;
                }
            }
            continue;
        }

        w->commits++;

        for (i = 0; i < w->nops; i++) {
            op = &w->ops[i];

            if (op->replay || op->invalid) {
                continue;
            }

            if (op->status != 201) {
                w->rejected++;
            }

            record(w, (uint32_t) ((t1 - t0) * 1e6));
        }
    }

    mysql_close(m);
}


/* ------------------------------------------------------------ main -- */

static void *
worker_main(void *arg)
{
    worker_t   *w = arg;
    MYSQL      *m;

    m = connect_db(w);
    if (m == NULL) {
        w->failed = 1;
    }

    pthread_barrier_wait(&connected);   /* every thread has connected */
    pthread_barrier_wait(&go);          /* main has set t_start, t_end */

    if (m == NULL) {
        return NULL;
    }

    w->seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t) w->id * 0x100000001b3ULL)
              ^ (uint64_t) getpid();
    if (w->seed == 0) {
        w->seed = 1;
    }

    transfer_loop(w, m);

    mysql_thread_end();
    return NULL;
}


/*
 * Before and after the run: the sum of every balance and the number of
 * negative ones, as the server computes them (exact DECIMAL text); before,
 * also that the first and the last account exist and, in lean mode, that
 * the procedure does.
 */
static int
money_check(int before, char *total, size_t size, long *negative)
{
    worker_t    w;
    MYSQL      *m;
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    char        q[1024], first[NUMBER_LEN], last[NUMBER_LEN];
    long        present, procs;
    const char *negative_sql;

    memset(&w, 0, sizeof(w));
    m = connect_db(&w);
    if (m == NULL) {
        fprintf(stderr, "%s\n", w.err);
        return -1;
    }

    /*
     * After a run in batch mode, which changed balances behind the
     * module's back: the module's caches must learn it as they learn a
     * change that was not published (docs/architecture.md, "Cache trust").
     */

    if (!before && cfg.mode == MODE_BATCH
        && mysql_query(m, "INSERT INTO cache_generation (publisher,"
                       " generation) VALUES ('dbclient', 1) ON DUPLICATE KEY"
                       " UPDATE generation = generation + 1")
           != 0)
    {
        fprintf(stderr, "moving the cache generation of database %s: %s\n",
                cfg.database, mysql_error(m));
        mysql_close(m);
        return -1;
    }

    account(first, sizeof(first), 1);
    account(last, sizeof(last), cfg.accounts);

    /* the baseline's schema has no account kinds, no holds, no limits */
    negative_sql = cfg.mode == MODE_LEAN
        ? "balance < 0"
        : "kind = 'STANDARD' AND balance - held_balance"
          " < -(overdraft_limit + overdraft_excess)";

    snprintf(q, sizeof(q),
             "SELECT COALESCE(SUM(balance), 0), COALESCE(SUM(%s), 0),"
             " (SELECT COUNT(*) FROM accounts WHERE account_number IN"
             " ('%s','%s')), (SELECT COUNT(*) FROM information_schema.ROUTINES"
             " WHERE ROUTINE_SCHEMA = DATABASE()"
             " AND ROUTINE_NAME = 'lean_transfer') FROM accounts", negative_sql,
             first, last);

    res = NULL;
    row = NULL;

    if (mysql_query(m, q) == 0 && (res = mysql_store_result(m)) != NULL) {
        row = mysql_fetch_row(res);
    }

    if (row == NULL || row[0] == NULL || row[1] == NULL || row[2] == NULL
        || row[3] == NULL)
    {
        fprintf(stderr, "money check in database %s: %s\n", cfg.database,
                res ? "no answer" : mysql_error(m));
        mysql_free_result(res);
        mysql_close(m);
        return -1;
    }

    snprintf(total, size, "%s", row[0]);
    *negative = atol(row[1]);
    present = atol(row[2]);
    procs = atol(row[3]);

    mysql_free_result(res);
    mysql_close(m);

    if (before && present != 2) {
        fprintf(stderr, "database %s has no accounts %s .. %s: run "
                "perf/gen-accounts.sh %s%ld %s\n", cfg.database, first, last,
                cfg.mode == MODE_LEAN ? "--baseline " : "", cfg.accounts,
                cfg.prefix);
        return -1;
    }

    if (before && cfg.mode == MODE_LEAN && procs != 1) {
        fprintf(stderr, "database %s has no procedure lean_transfer: run "
                "perf/gen-accounts.sh --baseline %ld %s\n", cfg.database,
                cfg.accounts, cfg.prefix);
        return -1;
    }

    return 0;
}


/* user + system time of a process, in seconds; -1 when it cannot be read */
static double
process_cpu_s(long pid)
{
    int                 n;
    FILE               *f;
    char                path[64], buf[1024], *p;
    unsigned long long  utime, stime;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);

    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }

    n = (int) fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);

    if (n <= 0) {
        return -1;
    }

    buf[n] = '\0';

    /* fields 14 and 15, counted after the command name's ')' */

    p = strrchr(buf, ')');
    if (p == NULL
        || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u"
                  " %llu %llu", &utime, &stime) != 2)
    {
        return -1;
    }

    return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}


static int
cmp_u32(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}


static void
usage(const char *me)
{
    fprintf(stderr,
        "usage: %s [--mode lean|batch] [--batch B] [-h host]\n"
        "          [-P port] [-S socket] [-u user] [-p password]\n"
        "          [-D database] [-t threads] [-d seconds]\n"
        "          [-m uniform|hot] [-n accounts] [-x prefix] [-a amount]\n"
        "          [-r run-id] [--cpu-pid pid]\n"
        "  -M, --mode lean    the write baseline: CALL lean_transfer(...)\n"
        "                     per transfer, database rbcs_baseline\n"
        "                     (perf/baseline.sql; perf/gen-accounts.sh\n"
        "                     --baseline N)\n"
        "  -M, --mode batch   the module's two round trips on the\n"
        "                     project's schema, database rbcs; B transfers\n"
        "                     per database transaction\n"
        "                     (-b, --batch B, 1..%d)\n"
        "  -m uniform|hot     random distinct pairs among 1..N, or\n"
        "                     accounts 1 and 2 in alternating directions\n"
        "  --cpu-pid pid      report that process's CPU time over the run\n"
        "                     (db_cpu_s; give mariadbd's pid)\n"
        "defaults: --mode lean --batch 1 -h 127.0.0.1 -P 3306\n"
        "          -u/-p/-D rbcs_baseline/rbcs_baseline/rbcs_baseline (lean)\n"
        "          or rbcs/rbcs/rbcs (batch) -t 1\n"
        "          -d 10 -m uniform -n 10000 -x P -a 0.01 -r db<time>\n"
        "prints one line: DBCLIENT mode=... batch=... pairs=...\n"
        "  threads=... transfers=... tps=... p50_ms=... p99_ms=...\n"
        "  money=ok|FAIL ...\n",
        me, BATCH_MAX);
    exit(2);
}


/* optarg, one of two words: 0 for the first, 1 for the second */
static int
pick(const char *me, const char *first, const char *second)
{
    if (strcmp(optarg, first) != 0 && strcmp(optarg, second) != 0) {
        usage(me);
    }

    return strcmp(optarg, second) == 0;
}


/* the options, checked; the user, password and database by default */
static void
options(int argc, char **argv)
{
    int          opt;
    const char  *name;
    static char  run[64];

    static const struct option  longopts[] = {
        { "mode",  required_argument, NULL, 'M' },
        { "batch", required_argument, NULL, 'b' },
        { "cpu-pid", required_argument, NULL, 'C' },
        { "help",  no_argument,       NULL, '?' },
        { NULL, 0, NULL, 0 }
    };

    cfg.host = "127.0.0.1";
    cfg.port = 3306;
    cfg.prefix = "P";
    cfg.amount = "0.01";
    cfg.mode = MODE_LEAN;
    cfg.batch = 1;
    cfg.threads = 1;
    cfg.seconds = 10;
    cfg.accounts = 10000;
    snprintf(run, sizeof(run), "db%ld", (long) time(NULL));
    cfg.run = run;

    /* -? asks for the usage: no complaint about it */
    opterr = 0;

    while ((opt = getopt_long(argc, argv, "M:b:C:h:P:S:u:p:D:t:d:m:n:x:a:r:",
                              longopts, NULL))
           != -1)
    {
        switch (opt) {
        case 'M': cfg.mode = pick(argv[0], "lean", "batch"); break;
        case 'b': cfg.batch = atoi(optarg); break;
        case 'C': cfg.cpu_pid = atol(optarg); break;
        case 'h': cfg.host = optarg; break;
        case 'P': cfg.port = (unsigned) atoi(optarg); break;
        case 'S': cfg.socket = optarg; break;
        case 'u': cfg.user = optarg; break;
        case 'p': cfg.password = optarg; break;
        case 'D': cfg.database = optarg; break;
        case 't': cfg.threads = atoi(optarg); break;
        case 'd': cfg.seconds = atof(optarg); break;
        case 'm': cfg.hot = pick(argv[0], "uniform", "hot"); break;
        case 'n': cfg.accounts = atol(optarg); break;
        case 'x': cfg.prefix = optarg; break;
        case 'a': cfg.amount = optarg; break;
        case 'r': cfg.run = optarg; break;
        default:
            if (optopt != 0 && optopt != '?') {
                fprintf(stderr, "%s: bad option or no value: -%c\n", argv[0],
                        optopt);
            } else if (optopt == 0 && strcmp(argv[optind - 1], "--help")) {
                fprintf(stderr, "%s: bad option: %s\n", argv[0],
                        argv[optind - 1]);
            }
            usage(argv[0]);
        }
    }

    if (optind != argc || cfg.threads < 1 || cfg.threads > 1024
        || cfg.seconds <= 0 || cfg.accounts < 2 || strlen(cfg.run) > 40
        || strlen(cfg.prefix) > 50 || cfg.batch < 1 || cfg.batch > BATCH_MAX
        || cfg.cpu_pid < 0
        || (cfg.mode == MODE_LEAN && cfg.batch != 1)
        || describe_amount(cfg.amount) != 0)
    {
        usage(argv[0]);
    }

    /*
     * the baseline's own user (perf/gen-accounts.sh --baseline), or the
     * service's: each may do what its side needs and no more
     */
    name = cfg.mode == MODE_LEAN ? "rbcs_baseline" : "rbcs";
    cfg.user = cfg.user ? cfg.user : name;
    cfg.password = cfg.password ? cfg.password : name;
    cfg.database = cfg.database ? cfg.database : name;
}


/* the threads, started, each with room for a batch and its SQL */
static worker_t *
workers(void)
{
    int        i;
    worker_t  *w;

    w = calloc((size_t) cfg.threads, sizeof(worker_t));
    if (w == NULL) {
        return NULL;
    }

    for (i = 0; i < cfg.threads; i++) {
        w[i].id = i + 1;

        w[i].ops = calloc((size_t) cfg.batch, sizeof(op_t));
        w[i].acc = calloc(2 * (size_t) cfg.batch, sizeof(account_t));
        w[i].ids = calloc((size_t) cfg.batch, sizeof(char *));
        w[i].sql.cap = 4096 + (size_t) cfg.batch * 2048;
        w[i].sql.data = malloc(w[i].sql.cap);

        if (w[i].ops == NULL || w[i].acc == NULL || w[i].ids == NULL
            || w[i].sql.data == NULL)
        {
            fprintf(stderr, "out of memory\n");
            return NULL;
        }
    }

    pthread_barrier_init(&connected, NULL, (unsigned) cfg.threads + 1);
    pthread_barrier_init(&go, NULL, (unsigned) cfg.threads + 1);

    for (i = 0; i < cfg.threads; i++) {
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(errno));
            return NULL;
        }
    }

    return w;
}


/* every latency, sorted; the threads' other memory freed */
static uint32_t *
latencies(worker_t *w, size_t total)
{
    int        i;
    size_t     n;
    uint32_t  *all;

    all = malloc((total ? total : 1) * sizeof(uint32_t));
    if (all == NULL) {
        return NULL;
    }

    for (n = 0, i = 0; i < cfg.threads; i++) {
        memcpy(all + n, w[i].lat_us, w[i].nlat * sizeof(uint32_t));
        n += w[i].nlat;
        free(w[i].lat_us);
        free(w[i].ops);
        free(w[i].acc);
        free(w[i].ids);
        free(w[i].sql.data);
        free(w[i].shown1);
        free(w[i].shown2);
    }

    qsort(all, n, sizeof(uint32_t), cmp_u32);

    return all;
}


int
main(int argc, char **argv)
{
    int          i, money_ok;
    long         neg0, neg1;
    uint64_t     total, retries, errors, rejected, commits;
    size_t       n;
    uint32_t    *all;
    worker_t    *w;
    double       elapsed, cpu0, cpu1;
    char         sum0[96], sum1[96];

    options(argc, argv);
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "mysql_library_init failed\n");
        return 1;
    }

    if (money_check(1, sum0, sizeof(sum0), &neg0) != 0) {
        return 1;
    }

    w = workers();
    if (w == NULL) {
        return 1;
    }

    /* the clock starts once every thread is connected */
    pthread_barrier_wait(&connected);
    cpu0 = cfg.cpu_pid ? process_cpu_s(cfg.cpu_pid) : -1;
    t_start = now_s();
    t_end = t_start + cfg.seconds;
    pthread_barrier_wait(&go);

    total = retries = errors = rejected = commits = 0;

    for (i = 0; i < cfg.threads; i++) {
        pthread_join(w[i].thread, NULL);
        if (w[i].failed || w[i].err[0]) {
            fprintf(stderr, "thread %d: %s\n", w[i].id, w[i].err);
        }
        total += w[i].nlat;
        retries += w[i].retries;
        errors += w[i].errors + (uint64_t) w[i].failed;
        rejected += w[i].rejected;
        commits += w[i].commits;
    }

    elapsed = now_s() - t_start;
    cpu1 = cfg.cpu_pid ? process_cpu_s(cfg.cpu_pid) : -1;

    /* what was sent, for the record: thread 1's first transfer or batch */

    if (w[0].shown1) {
        fprintf(stderr, "SQL (%s, thread 1's first %s):\n  %s\n",
                cfg.mode == MODE_LEAN ? "lean procedure, one round trip"
                                      : "batch, round trip 1",
                cfg.mode == MODE_LEAN ? "transfer" : "batch", w[0].shown1);
    }

    if (w[0].shown2) {
        fprintf(stderr, "SQL (batch, round trip 2):\n  %s\n", w[0].shown2);
    }

    if (money_check(0, sum1, sizeof(sum1), &neg1) != 0) {
        return 1;
    }

    money_ok = (strcmp(sum0, sum1) == 0 && neg1 == 0);

    n = (size_t) total;
    all = latencies(w, n);
    if (all == NULL) {
        return 1;
    }

#define PCT(p)                                                              \
    (n ? all[(size_t) ((double) (n - 1) * (p) / 100.0 + 0.5)] / 1000.0 : 0.0)

    printf("DBCLIENT mode=%s batch=%d pairs=%s threads=%d seconds=%.2f"
           " transfers=%" PRIu64 " tps=%.1f p50_ms=%.3f p99_ms=%.3f"
           " max_ms=%.3f retries=%" PRIu64 " errors=%" PRIu64
           " rejected=%" PRIu64 " commits=%" PRIu64 " money=%s negative=%ld"
           " total=%s",
           cfg.mode == MODE_LEAN ? "lean" : "batch", cfg.batch,
           cfg.hot ? "hot" : "uniform", cfg.threads, elapsed, total,
           elapsed > 0 ? total / elapsed : 0.0, PCT(50), PCT(99),
           n ? all[n - 1] / 1000.0 : 0.0, retries, errors, rejected, commits,
           money_ok ? "ok" : "FAIL", neg1, sum1);

    if (cpu0 >= 0 && cpu1 >= 0) {
        printf(" db_cpu_s=%.3f", cpu1 - cpu0);
    }

    printf("\n");

    if (!money_ok) {
        fprintf(stderr, "money check FAILED: sum of balances %s before, %s "
                "after; %ld negative\n", sum0, sum1, neg1);
    }

    free(all);
    free(w);
    mysql_library_end();

    if (!money_ok) {
        return 3;
    }

    return errors && total == 0 ? 1 : 0;
}
