
/*
 * RBCS: strict JSON request body parsing (yajl 2) and JSON string escaping.
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
 * The library itself never calls malloc(); yajl internally allocates
 * its parser state with its default malloc()/free(), which is always
 * released before returning.
 */
int ngx_rbcs_json_parse_object(const u_char *body, size_t len,
    ngx_rbcs_json_alloc_pt alloc, void *ctx,
    ngx_rbcs_json_field_t **fields, size_t *nfields, const char **err);

/*
 * JSON string escaping (without the surrounding quotes): '"' and '\\'
 * are escaped, control characters become \b, \f, \n, \r, \t or \u00XX,
 * valid UTF-8 is copied as is, and every byte that is not part of a valid
 * UTF-8 sequence is replaced with "\ufffd", so the output is always valid
 * JSON string content.
 *
 * ngx_rbcs_json_escape_len() returns the exact number of bytes that
 * ngx_rbcs_json_escape() writes; ngx_rbcs_json_escape() returns the
 * pointer past the last byte written.
 */
size_t ngx_rbcs_json_escape_len(const u_char *src, size_t len);
u_char *ngx_rbcs_json_escape(u_char *dst, const u_char *src, size_t len);

/*
 * Returns the length (1..4) of the strictly valid UTF-8 sequence at
 * p[0..n), n > 0, or 0 when it is invalid or truncated.
 */
size_t ngx_rbcs_json_utf8_len(const u_char *p, size_t n);


#endif /* _NGX_RBCS_JSON_H_INCLUDED_ */
