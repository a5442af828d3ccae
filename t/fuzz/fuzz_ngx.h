
/*
 * Copyright (C) RBCS
 */


/*
 * What the harnesses of code built on nginx share: the process state an
 * nginx worker has when the module's parsers run (page size, cached time,
 * module indexes, a cycle with a log and the module's main configuration)
 * and a fake request.  The harnesses link nginx's own objects (those of
 * build/static/nginx-src, see t/fuzz/Makefile); the log writes to /dev/null
 * at level info, so every log line's formatting runs too.
 */


#ifndef _FUZZ_NGX_H_INCLUDED_
#define _FUZZ_NGX_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <stdlib.h>

#include "ngx_rbcs.h"


static ngx_open_file_t        fuzz_log_file;
static ngx_log_t              fuzz_log;
static ngx_cycle_t            fuzz_cycle;
static ngx_connection_t       fuzz_connection;
static ngx_http_conf_ctx_t    fuzz_http_ctx;
static void                  *fuzz_main_conf[1];
static ngx_rbcs_main_conf_t   fuzz_rmcf;


/* the currencies of the test configuration: USD 2, JPY 0, BTC 8 */

static void
fuzz_currencies(ngx_pool_t *pool)
{
    ngx_rbcs_currency_t  *c;

    fuzz_rmcf.currencies = ngx_array_create(pool, 3,
                                            sizeof(ngx_rbcs_currency_t));
    if (fuzz_rmcf.currencies == NULL) {
        abort();
    }

    c = ngx_array_push_n(fuzz_rmcf.currencies, 3);
    if (c == NULL) {
        abort();
    }

    ngx_str_set(&c[0].code, "USD");
    c[0].scale = 2;
    ngx_str_set(&c[1].code, "JPY");
    c[1].scale = 0;
    ngx_str_set(&c[2].code, "BTC");
    c[2].scale = 8;

    ngx_str_set(&fuzz_rmcf.default_currency, "USD");
}


static void
fuzz_ngx_init(void)
{
    ngx_uint_t  n;

    ngx_pid = getpid();
    ngx_pagesize = getpagesize();
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    for (n = ngx_pagesize; n >>= 1; ngx_pagesize_shift++) { /* void */ }

    ngx_use_stderr = 0;
    ngx_time_init();

    fuzz_log_file.fd = open("/dev/null", O_WRONLY);
    if (fuzz_log_file.fd == -1) {
        abort();
    }

    fuzz_log.file = &fuzz_log_file;
    fuzz_log.log_level = NGX_LOG_INFO;

    ngx_str_set(&fuzz_cycle.prefix, "/");
    ngx_str_set(&fuzz_cycle.conf_prefix, "/");
    ngx_str_set(&fuzz_cycle.hostname, "fuzz-host");
    fuzz_cycle.log = &fuzz_log;
    fuzz_cycle.pool = ngx_create_pool(NGX_CYCLE_POOL_SIZE, &fuzz_log);
    if (fuzz_cycle.pool == NULL) {
        abort();
    }

    ngx_cycle = &fuzz_cycle;

    /* module indexes as nginx sets them; the module's context index 0 */

    if (ngx_preinit_modules() != NGX_OK) {
        abort();
    }

    ngx_rbcs_module.ctx_index = 0;

    fuzz_cycle.conf_ctx = ngx_pcalloc(fuzz_cycle.pool,
                                      ngx_max_module * sizeof(void *));
    if (fuzz_cycle.conf_ctx == NULL) {
        abort();
    }

    fuzz_main_conf[0] = &fuzz_rmcf;
    fuzz_http_ctx.main_conf = fuzz_main_conf;
    fuzz_cycle.conf_ctx[ngx_http_module.index] = (void *) &fuzz_http_ctx;

    fuzz_currencies(fuzz_cycle.pool);
    fuzz_rmcf.auth_window = 300000;

    fuzz_connection.log = &fuzz_log;
    fuzz_connection.fd = (ngx_socket_t) -1;
}


/* a request as the module's handlers see it: pool, log, configuration */

static ngx_http_request_t *
fuzz_request(ngx_pool_t *pool)
{
    ngx_http_request_t  *r;

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    if (r == NULL) {
        return NULL;
    }

    r->pool = pool;
    r->connection = &fuzz_connection;
    r->main_conf = fuzz_main_conf;
    r->ctx = ngx_pcalloc(pool, sizeof(void *));
    if (r->ctx == NULL) {
        return NULL;
    }

    if (ngx_list_init(&r->headers_in.headers, pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NULL;
    }

    return r;
}


#endif /* _FUZZ_NGX_H_INCLUDED_ */
