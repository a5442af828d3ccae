
/*
 * RBCS: the content handler.  Routes by path, then by method; GET routes
 * go straight to their handler, POST routes after the body is read.
 */


#include "ngx_rbcs_router.h"
#include "ngx_rbcs_http.h"
#include "ngx_rbcs_account.h"
#include "ngx_rbcs_transfer.h"
#include "ngx_rbcs_balance.h"
#include "ngx_rbcs_auth.h"
#include "ngx_rbcs_metrics.h"

#include <time.h>


/* the routes are the metrics' route labels */


typedef struct {
    ngx_uint_t                 route;
    ngx_str_t                  id;
} ngx_rbcs_route_t;


static void ngx_rbcs_router_match(ngx_http_request_t *r,
    ngx_rbcs_route_t *rt);
static void ngx_rbcs_router_discard(ngx_http_request_t *r);
static ngx_int_t ngx_rbcs_router_get(ngx_http_request_t *r,
    ngx_rbcs_route_t *rt);
static void ngx_rbcs_router_body(ngx_http_request_t *r);


static void
ngx_rbcs_router_match(ngx_http_request_t *r, ngx_rbcs_route_t *rt)
{
    u_char      *p, *last, *s;
    ngx_str_t    seg[4];
    ngx_uint_t   n;

    rt->route = NGX_RBCS_MR_NONE;
    ngx_str_null(&rt->id);

    p = r->uri.data;
    last = p + r->uri.len;

    if (p == last || *p != '/') {
        return;
    }

    n = 0;

    while (p < last) {
        if (n == 4) {
            return;
        }

        p++;                                         /* the '/' */
        s = p;

        while (p < last && *p != '/') {
            p++;
        }

        seg[n].data = s;
        seg[n].len = p - s;
        n++;
    }

    if (n == 1) {
        if (ngx_rbcs_str_is(&seg[0], "healthz")) {
            rt->route = NGX_RBCS_MR_HEALTHZ;

        } else if (ngx_rbcs_str_is(&seg[0], "readyz")) {
            rt->route = NGX_RBCS_MR_READYZ;

        } else if (ngx_rbcs_str_is(&seg[0], "metrics")) {
            rt->route = NGX_RBCS_MR_METRICS;

        } else if (ngx_rbcs_str_is(&seg[0], "accounts")) {
            rt->route = NGX_RBCS_MR_OPEN;
        }

        return;
    }

    if (!ngx_rbcs_str_is(&seg[0], "accounts") || seg[1].len == 0) {
        return;
    }

    if (ngx_rbcs_str_is(&seg[1], "transactions")) {
        if (n == 2) {
            rt->route = NGX_RBCS_MR_TRANSFER;

        } else if (seg[2].len) {
            rt->id = seg[2];

            if (n == 3) {
                rt->route = NGX_RBCS_MR_TRANSACTION;

            } else if (ngx_rbcs_str_is(&seg[3], "capture")) {
                rt->route = NGX_RBCS_MR_CAPTURE;

            } else if (ngx_rbcs_str_is(&seg[3], "void")) {
                rt->route = NGX_RBCS_MR_VOID;
            }
        }

        return;
    }

    rt->id = seg[1];

    if (n == 2) {
        rt->route = NGX_RBCS_MR_ACCOUNT;

    } else if (n == 3 && ngx_rbcs_str_is(&seg[2], "balance")) {
        rt->route = NGX_RBCS_MR_BALANCE;

    } else if (n == 3 && ngx_rbcs_str_is(&seg[2], "transactions")) {
        rt->route = NGX_RBCS_MR_HISTORY;

    } else if (n == 3 && ngx_rbcs_str_is(&seg[2], "holds")) {
        rt->route = NGX_RBCS_MR_HOLDS;
    }
}


ngx_int_t
ngx_rbcs_router_handler(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_uint_t        post;
    ngx_rbcs_ctx_t   *ctx;
    ngx_rbcs_route_t  rt;

    ngx_rbcs_router_match(r, &rt);

    ctx = ngx_rbcs_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->route = rt.route;

    if (rt.route == NGX_RBCS_MR_NONE) {
        ngx_rbcs_router_discard(r);

        return ngx_rbcs_http_problem(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such route");
    }

    post = (rt.route == NGX_RBCS_MR_OPEN
            || rt.route == NGX_RBCS_MR_TRANSFER
            || rt.route == NGX_RBCS_MR_CAPTURE
            || rt.route == NGX_RBCS_MR_VOID);

    if (post || (rt.route == NGX_RBCS_MR_ACCOUNT
                 && r->method == NGX_HTTP_PATCH))
    {
        if (post && r->method != NGX_HTTP_POST) {
            ngx_rbcs_router_discard(r);
            return ngx_rbcs_http_not_allowed(r, "POST");
        }

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_rbcs_router_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_rbcs_router_discard(r);

        return ngx_rbcs_http_not_allowed(r,
                                         rt.route == NGX_RBCS_MR_ACCOUNT
                                         ? "GET, HEAD, PATCH" : "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* after the 405; operations routes are open to probes and scrapers */

    if (rt.route != NGX_RBCS_MR_HEALTHZ
        && rt.route != NGX_RBCS_MR_READYZ
        && rt.route != NGX_RBCS_MR_METRICS)
    {
        rc = ngx_rbcs_auth_check(r, NGX_RBCS_AUTH_READ, NULL, 0);
        if (rc != NGX_OK) {
            return ngx_rbcs_auth_problem(r, rc);
        }
    }

    return ngx_rbcs_router_get(r, &rt);
}


/* a refused request's body is thrown away, or its connection not kept */

static void
ngx_rbcs_router_discard(ngx_http_request_t *r)
{
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
}


/* answers a read route; NGX_DONE: the database answers later */

static ngx_int_t
ngx_rbcs_router_get(ngx_http_request_t *r, ngx_rbcs_route_t *rt)
{
    ngx_int_t  rc;

    switch (rt->route) {

    case NGX_RBCS_MR_HEALTHZ:
        return ngx_rbcs_http_send_json(r, "{\"status\":\"ok\"}");

    case NGX_RBCS_MR_READYZ:
        rc = ngx_rbcs_account_ready(r);
        break;

    case NGX_RBCS_MR_METRICS:
        return ngx_rbcs_metrics_handler(r);

    case NGX_RBCS_MR_ACCOUNT:
        rc = ngx_rbcs_account_get(r, &rt->id);
        break;

    case NGX_RBCS_MR_BALANCE:
        rc = ngx_rbcs_balance_get(r, &rt->id);
        break;

    case NGX_RBCS_MR_HISTORY:
        rc = ngx_rbcs_account_history(r, &rt->id);
        break;

    case NGX_RBCS_MR_HOLDS:
        rc = ngx_rbcs_account_holds(r, &rt->id);
        break;

    default: /* NGX_RBCS_MR_TRANSACTION */
        rc = ngx_rbcs_transfer_get(r, &rt->id);
        break;
    }

    if (rc == NGX_DONE) {
        /* the database answers later, in ngx_rbcs_http_done() */
        r->main->count++;
    }

    return rc;
}


static void
ngx_rbcs_router_body(ngx_http_request_t *r)
{
    size_t                  nfields;
    ngx_int_t               rc;
    ngx_uint_t              route;
    ngx_rbcs_route_t        rt;
    ngx_rbcs_json_field_t  *fields;

    ngx_rbcs_router_match(r, &rt);
    route = rt.route;

    /* before the media type and the JSON: 401/403 win over 415/400 */

    rc = ngx_rbcs_auth_check_body(r, (route == NGX_RBCS_MR_TRANSFER
                                      || route == NGX_RBCS_MR_CAPTURE
                                      || route == NGX_RBCS_MR_VOID)
                                     ? NGX_RBCS_AUTH_TRANSFER
                                     : NGX_RBCS_AUTH_ADMIN);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_rbcs_auth_problem(r, rc));
        return;
    }

    if (ngx_rbcs_http_body(r, &fields, &nfields, &rc) == NGX_OK) {
        if (route == NGX_RBCS_MR_OPEN) {
            rc = ngx_rbcs_account_open(r, fields, nfields);

        } else if (route == NGX_RBCS_MR_ACCOUNT) {
            rc = ngx_rbcs_account_patch(r, &rt.id, fields, nfields);

        } else if (route == NGX_RBCS_MR_CAPTURE
                   || route == NGX_RBCS_MR_VOID)
        {
            rc = ngx_rbcs_transfer_resolve(r, &rt.id,
                                           route == NGX_RBCS_MR_CAPTURE,
                                           fields, nfields);

        } else {
            rc = ngx_rbcs_transfer_post(r, fields, nfields);
        }
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


ngx_int_t
ngx_rbcs_problem_handler(ngx_http_request_t *r)
{
    ngx_rbcs_ctx_t    *ctx;
    ngx_rbcs_route_t   rt;

    /*
     * An error nginx raised (413, 429) comes here by an internal redirect
     * that forgot the request's context: the route is found again from
     * the URI, so that a transfer refused by a limit is counted as one.
     */

    ngx_rbcs_router_match(r, &rt);

    ctx = ngx_rbcs_ctx(r);
    if (ctx) {
        ctx->route = rt.route != NGX_RBCS_MR_NONE ? rt.route
                                                     : NGX_RBCS_MR_PROBLEM;
    }

    return ngx_rbcs_http_problem_handler(r);
}
