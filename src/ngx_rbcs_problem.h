
/*
 * RBCS: the problem codes of the HTTP contract, listed once.
 *
 * Each line gives a code (the "code" member and the tail of the "type"
 * URI of a problem+json answer) and its title.  The codes a transfer can
 * end with are also the outcome labels of rbcs_transfers_total, in the
 * order they are rendered; dashboards and alert rules match those labels,
 * so a code keeps its spelling once released.
 */


#ifndef _NGX_RBCS_PROBLEM_H_INCLUDED_
#define _NGX_RBCS_PROBLEM_H_INCLUDED_


/* codes a transfer can answer with: each is a transfer outcome label */
#define NGX_RBCS_PROBLEMS_TRANSFER(X)                                        \
    X(invalid_request,          "Invalid request")                          \
    X(unsupported_currency,     "Unsupported currency")                     \
    X(invalid_amount,           "Invalid amount")                           \
    X(same_account,             "Same account")                             \
    X(account_not_found,        "Account not found")                        \
    X(currency_mismatch,        "Currency mismatch")                        \
    X(insufficient_funds,       "Insufficient funds")                       \
    X(balance_overflow,         "Balance overflow")                         \
    X(transaction_id_conflict,  "Transaction id conflict")                  \
    X(unauthorized,             "Unauthorized")                             \
    X(forbidden,                "Forbidden")                                \
    X(unsupported_media_type,   "Unsupported media type")                   \
    X(payload_too_large,        "Payload too large")                        \
    X(rate_limited,             "Too many requests")                        \
    X(unavailable,              "Service unavailable")                      \
    X(method_not_allowed,       "Method not allowed")

/* codes of the other routes only */
#define NGX_RBCS_PROBLEMS_OTHER(X)                                           \
    X(transaction_not_found,    "Transaction not found")                    \
    X(not_found,                "Not found")                                \
    X(account_exists,           "Account exists")                           \
    X(account_kind_conflict,    "Account kind conflict")                    \
    X(hold_not_pending,         "Hold not pending")                         \
    X(amount_exceeds_hold,      "Amount exceeds hold")                      \
    X(internal_error,           "Internal error")

#define NGX_RBCS_PROBLEMS(X)                                                 \
    NGX_RBCS_PROBLEMS_TRANSFER(X)                                            \
    NGX_RBCS_PROBLEMS_OTHER(X)


#endif /* _NGX_RBCS_PROBLEM_H_INCLUDED_ */
