/*
 * perf/dbclient.c - the database ceiling of transfers, without batching.
 *
 * A benchmark client, not part of the service: T threads, each with its own
 * blocking MariaDB Connector/C connection, each sending transfers one after
 * the other for a fixed duration, with exactly the SQL the module sends for
 * one transfer (src/ngx_rbcs_transfer.c), one transfer per database
 * transaction, in one multi-statement round trip:
 *
 *   START TRANSACTION;CALL rbcs_transfer('<id>','<src>','<dst>',<amount>,
 *       '<amount text>','<amount normalised>',<int digits>,<frac digits>,
 *       0,NULL,NULL,NULL,...);COMMIT
 *
 * (no currency, no timestamp: what a request with only transactionId,
 * source, destination and amount produces; the parameters after the ninth
 * are all NULL, and how many there are is read from information_schema at
 * start, so the client follows conf/schema.sql; the statement is printed
 * to stderr).  Sessions are set up as the module's pool sets them up:
 * utf8mb4, READ COMMITTED, innodb_lock_wait_timeout 2,
 * CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS, over TCP.  Like the
 * module, a deadlock (1213) or lock wait timeout (1205) is rolled back and
 * retried (counted as "retries"); the latency of a transfer includes its
 * retries.
 *
 * Accounts: PREFIX-<at least 6 digits> (perf/gen-accounts.sh).  Modes:
 *   uniform  random distinct source and destination among 1..N
 *   hot      the pair 1 and 2, alternating direction per thread
 *
 *   build/perf/dbclient -t 8 -d 10 -m uniform -n 10000 -r run1
 *
 * Output (stdout), one line:
 *   DBCLIENT mode=uniform threads=8 seconds=10.00 transfers=12345
 *   tps=1234.5 p50_ms=1.234 p99_ms=5.678 max_ms=9.9 retries=0 errors=0
 *   rejected=0
 * where rejected counts transfers that the procedure answered with
 * something other than 201 (e.g. 422 insufficient_funds), errors counts
 * failed round trips other than retried ones.
 *
 * Build: make -C perf dbclient (perf/Makefile), needs libmariadb-dev.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>


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
    int          threads;
    double       seconds;
    long         accounts;
    int          hot;
    long         hot_a;
    long         hot_b;
} config_t;


typedef struct {
    int          id;
    pthread_t    thread;
    uint32_t    *lat_us;          /* one latency per completed transfer */
    size_t       nlat;
    size_t       cap;
    uint64_t     retries;
    uint64_t     errors;
    uint64_t     rejected;
    int          failed;          /* could not connect */
    char         err[256];
} worker_t;


static config_t          cfg;
static double            t_start, t_end;
static pthread_barrier_t connected, go;

/* the amount's description, as the module computes it */
static char   amount_key[64];
/* ",NULL" for every parameter after p_is_zero */
static char   tail[256];
static int    amount_int_digits, amount_frac_digits;


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


/*
 * ngx_rbcs_amount_check_grammar + ngx_rbcs_amount_normalize for a valid
 * amount: digits before and after the dot, trailing zeros of the fraction
 * (and a dangling dot) removed.
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

    amount_int_digits = dot ? (int) (dot - a) : (int) n;
    amount_frac_digits = dot ? (int) (n - (dot - a) - 1) : 0;

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


static MYSQL *
connect_db(worker_t *w)
{
    MYSQL  *m;

    m = mysql_init(NULL);
    if (m == NULL) {
        snprintf(w->err, sizeof(w->err), "mysql_init failed");
        return NULL;
    }

    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
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


/*
 * One round trip: send the statements, read every result.  Returns 0 and
 * sets *status to the procedure's http_status (the second column of its
 * first result row), or the server's error number.
 */
static unsigned
run_transfer(MYSQL *m, const char *q, size_t len, int *status)
{
    int          rc;
    MYSQL_RES   *res;
    MYSQL_ROW    row;

    *status = 0;

    if (mysql_real_query(m, q, (unsigned long) len) != 0) {
        return mysql_errno(m);
    }

    for ( ;; ) {
        res = mysql_store_result(m);

        if (res != NULL) {
            if (*status == 0 && mysql_num_fields(res) >= 2
                && (row = mysql_fetch_row(res)) != NULL && row[1] != NULL)
            {
                *status = atoi(row[1]);
            }
            mysql_free_result(res);

        } else if (mysql_field_count(m) != 0) {
            return mysql_errno(m);
        }

        rc = mysql_next_result(m);

        if (rc == -1) {
            return 0;            /* no more results */
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


static void *
worker_main(void *arg)
{
    worker_t   *w = arg;
    MYSQL      *m;
    uint64_t    seed, counter;
    long        s, d;
    double      t0, t1;
    char        src[80], dst[80], q[1024];
    int         len, status;
    unsigned    err;

    m = connect_db(w);
    if (m == NULL) {
        w->failed = 1;
    }

    pthread_barrier_wait(&connected);   /* every thread has connected */
    pthread_barrier_wait(&go);          /* main has set t_start, t_end */

    if (m == NULL) {
        return NULL;
    }

    seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t) w->id * 0x100000001b3ULL)
           ^ (uint64_t) getpid();
    if (seed == 0) {
        seed = 1;
    }
    counter = 0;

    while (now_s() < t_end) {

        counter++;

        if (cfg.hot) {
            if (counter % 2) {
                s = cfg.hot_a; d = cfg.hot_b;
            } else {
                s = cfg.hot_b; d = cfg.hot_a;
            }

        } else {
            s = 1 + (long) (xorshift(&seed) % (uint64_t) cfg.accounts);
            d = 1 + (long) (xorshift(&seed) % (uint64_t) (cfg.accounts - 1));
            if (d >= s) {
                d++;
            }
        }

        account(src, sizeof(src), s);
        account(dst, sizeof(dst), d);

        len = snprintf(q, sizeof(q),
                       "START TRANSACTION;CALL rbcs_transfer('%s-%d-%" PRIu64
                       "','%s','%s',%s,'%s','%s',%d,%d,0%s);COMMIT",
                       cfg.run, w->id, counter, src, dst, cfg.amount,
                       cfg.amount, amount_key, amount_int_digits,
                       amount_frac_digits, tail);

        t0 = now_s();

        for ( ;; ) {
            err = run_transfer(m, q, (size_t) len, &status);

            if (err == 1213 || err == 1205) {
                w->retries++;
                (void) mysql_query(m, "ROLLBACK");
                continue;
            }

            break;
        }

        t1 = now_s();

        if (err != 0) {
            w->errors++;
            if (w->err[0] == '\0') {
                snprintf(w->err, sizeof(w->err), "error %u: %s", err,
                         mysql_error(m));
            }
            if (mysql_ping(m) != 0) {
                mysql_close(m);
                m = connect_db(w);
                if (m == NULL) {
                    return NULL;
                }
            }
            continue;
        }

        if (status != 201) {
            w->rejected++;
        }

        record(w, (uint32_t) ((t1 - t0) * 1e6));
    }

    mysql_close(m);
    mysql_thread_end();
    return NULL;
}


/*
 * The procedure's parameters after p_is_zero (currency, currency scale,
 * client timestamp, and whatever the schema adds at the end, e.g. the
 * audit actor) are all NULL in a request with only transactionId, source,
 * destination and amount, as the module sends them: count them in the
 * database, so that the client follows conf/schema.sql.
 */
static int
detect_tail(void)
{
    worker_t    w;
    MYSQL      *m;
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    long        n, i;
    size_t      off;

    memset(&w, 0, sizeof(w));
    m = connect_db(&w);
    if (m == NULL) {
        fprintf(stderr, "%s\n", w.err);
        return -1;
    }

    if (mysql_query(m, "SELECT COUNT(*) FROM information_schema.PARAMETERS "
                       "WHERE SPECIFIC_SCHEMA = DATABASE() "
                       "AND SPECIFIC_NAME = 'rbcs_transfer' "
                       "AND ROUTINE_TYPE = 'PROCEDURE'") != 0
        || (res = mysql_store_result(m)) == NULL)
    {
        fprintf(stderr, "reading rbcs_transfer's parameters: %s\n",
                mysql_error(m));
        mysql_close(m);
        return -1;
    }

    row = mysql_fetch_row(res);
    n = (row && row[0]) ? atol(row[0]) : 0;
    mysql_free_result(res);
    mysql_close(m);

    if (n < 9 || n > 9 + 40) {
        fprintf(stderr, "rbcs_transfer has %ld parameters: not the procedure"
                " this client knows (conf/schema.sql)\n", n);
        return -1;
    }

    for (off = 0, i = 9; i < n; i++) {
        off += (size_t) snprintf(tail + off, sizeof(tail) - off, ",NULL");
    }

    return 0;
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
        "usage: %s [-h host] [-P port] [-S socket] [-u user] [-p password]\n"
        "          [-D database] [-t threads] [-d seconds] [-m uniform|hot]\n"
        "          [-n accounts] [-x prefix] [-a amount] [-r run-id]\n"
        "defaults: -h 127.0.0.1 -P 3306 -u rbcs -p rbcs -D rbcs -t 1 -d 10\n"
        "          -m uniform -n 10000 -x P -a 0.01 -r db<time>\n", me);
    exit(2);
}


int
main(int argc, char **argv)
{
    int         opt, i;
    uint64_t    total, retries, errors, rejected;
    size_t      n;
    uint32_t   *all;
    worker_t   *w;
    double      elapsed;
    static char run[64];

    cfg.host = "127.0.0.1";
    cfg.port = 3306;
    cfg.user = "rbcs";
    cfg.password = "rbcs";
    cfg.database = "rbcs";
    cfg.prefix = "P";
    cfg.amount = "0.01";
    cfg.threads = 1;
    cfg.seconds = 10;
    cfg.accounts = 10000;
    cfg.hot_a = 1;
    cfg.hot_b = 2;
    snprintf(run, sizeof(run), "db%ld", (long) time(NULL));
    cfg.run = run;

    while ((opt = getopt(argc, argv, "h:P:S:u:p:D:t:d:m:n:x:a:r:")) != -1) {
        switch (opt) {
        case 'h': cfg.host = optarg; break;
        case 'P': cfg.port = (unsigned) atoi(optarg); break;
        case 'S': cfg.socket = optarg; break;
        case 'u': cfg.user = optarg; break;
        case 'p': cfg.password = optarg; break;
        case 'D': cfg.database = optarg; break;
        case 't': cfg.threads = atoi(optarg); break;
        case 'd': cfg.seconds = atof(optarg); break;
        case 'm':
            if (strcmp(optarg, "hot") == 0) {
                cfg.hot = 1;
            } else if (strcmp(optarg, "uniform") == 0) {
                cfg.hot = 0;
            } else {
                usage(argv[0]);
            }
            break;
        case 'n': cfg.accounts = atol(optarg); break;
        case 'x': cfg.prefix = optarg; break;
        case 'a': cfg.amount = optarg; break;
        case 'r': cfg.run = optarg; break;
        default: usage(argv[0]);
        }
    }

    if (cfg.threads < 1 || cfg.threads > 1024 || cfg.seconds <= 0
        || cfg.accounts < 2 || strlen(cfg.run) > 40 || strlen(cfg.prefix) > 50
        || describe_amount(cfg.amount) != 0)
    {
        usage(argv[0]);
    }

    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "mysql_library_init failed\n");
        return 1;
    }

    if (detect_tail() != 0) {
        return 1;
    }

    fprintf(stderr, "SQL: START TRANSACTION;CALL rbcs_transfer("
            "'%s-<thread>-<n>',"
            "'<src>','<dst>',%s,'%s','%s',%d,%d,0%s);COMMIT\n", cfg.run,
            cfg.amount, cfg.amount, amount_key, amount_int_digits,
            amount_frac_digits, tail);

    w = calloc((size_t) cfg.threads, sizeof(worker_t));
    if (w == NULL) {
        return 1;
    }

    pthread_barrier_init(&connected, NULL, (unsigned) cfg.threads + 1);
    pthread_barrier_init(&go, NULL, (unsigned) cfg.threads + 1);

    for (i = 0; i < cfg.threads; i++) {
        w[i].id = i + 1;
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(errno));
            return 1;
        }
    }

    /* the clock starts once every thread is connected */
    pthread_barrier_wait(&connected);
    t_start = now_s();
    t_end = t_start + cfg.seconds;
    pthread_barrier_wait(&go);

    total = retries = errors = rejected = 0;

    for (i = 0; i < cfg.threads; i++) {
        pthread_join(w[i].thread, NULL);
        if (w[i].failed || w[i].err[0]) {
            fprintf(stderr, "thread %d: %s\n", w[i].id, w[i].err);
        }
        total += w[i].nlat;
        retries += w[i].retries;
        errors += w[i].errors + (uint64_t) w[i].failed;
        rejected += w[i].rejected;
    }

    elapsed = now_s() - t_start;

    all = malloc((total ? total : 1) * sizeof(uint32_t));
    if (all == NULL) {
        return 1;
    }

    for (n = 0, i = 0; i < cfg.threads; i++) {
        memcpy(all + n, w[i].lat_us, w[i].nlat * sizeof(uint32_t));
        n += w[i].nlat;
        free(w[i].lat_us);
    }

    qsort(all, n, sizeof(uint32_t), cmp_u32);

#define PCT(p)                                                              \
    (n ? all[(size_t) ((double) (n - 1) * (p) / 100.0 + 0.5)] / 1000.0 : 0.0)

    printf("DBCLIENT mode=%s threads=%d seconds=%.2f transfers=%" PRIu64
           " tps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f retries=%" PRIu64
           " errors=%" PRIu64 " rejected=%" PRIu64 "\n",
           cfg.hot ? "hot" : "uniform", cfg.threads, elapsed, total,
           elapsed > 0 ? total / elapsed : 0.0, PCT(50), PCT(99),
           n ? all[n - 1] / 1000.0 : 0.0, retries, errors, rejected);

    free(all);
    free(w);
    mysql_library_end();

    return errors && total == 0 ? 1 : 0;
}
