
/*
 * RBCS: strict JSON request body parsing (yajl 2).
 *
 * This header is self-contained and does not depend on nginx headers,
 * so that the unit tests can be built without nginx.
 */


#ifndef _NGX_RBCS_JSON_H_INCLUDED_
#define _NGX_RBCS_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define NGX_RBCS_JSON_OK          0
#define NGX_RBCS_JSON_EINVALID   -1   /* body rejected, see err */
#define NGX_RBCS_JSON_ENOMEM     -2   /* the allocator returned NULL */

/* the top-level object is level 1; arrays count as levels too */
#define NGX_RBCS_JSON_MAX_DEPTH  32


typedef void *(*ngx_rbcs_json_alloc_pt)(void *ctx, size_t size);


typedef enum {
    NGX_RBCS_JSON_STRING = 1,
    NGX_RBCS_JSON_NUMBER,
    NGX_RBCS_JSON_TRUE,
    NGX_RBCS_JSON_FALSE,
    NGX_RBCS_JSON_NULL,
    NGX_RBCS_JSON_OBJECT,
    NGX_RBCS_JSON_ARRAY
} ngx_rbcs_json_type_e;


typedef struct {
    const u_char  *key;        /* unescaped UTF-8, not NUL-terminated */
    size_t         key_len;
    int            type;       /* ngx_rbcs_json_type_e */
    const u_char  *value;      /* STRING: unescaped UTF-8 (never NULL, may
                                  contain NUL bytes from "\u0000");
                                  NUMBER: raw text as written ("10.50",
                                  "-0", "1e5"); others: NULL */
    size_t         value_len;
} ngx_rbcs_json_field_t;


/*
 * Parses body[0..len) as exactly one JSON object.
 *
 * On NGX_RBCS_JSON_OK the top-level members are returned in order of
 * appearance in *fields (*nfields entries; *fields is NULL for "{}").
 * All returned keys and values are copies living in memory obtained from
 * alloc(ctx, size) (at most one call per parse), so they stay valid as
 * long as that memory does, independently of body.  Nested objects and
 * arrays are fully validated but only reported by type.
 *
 * On error *fields is NULL, *nfields is 0 and, when err is not NULL,
 * *err points to a short static English reason suitable for logs
 * (on success *err is set to NULL).
 *
 * Besides alloc(), yajl allocates its parser state with malloc() and
 * qsort() may take a temporary buffer (the duplicate member check); both
 * are released before returning.
 */
int ngx_rbcs_json_parse_object(const u_char *body, size_t len,
    ngx_rbcs_json_alloc_pt alloc, void *ctx,
    ngx_rbcs_json_field_t **fields, size_t *nfields, const char **err);


#endif /* _NGX_RBCS_JSON_H_INCLUDED_ */
