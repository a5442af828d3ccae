-- scenario: hold
-- POST /accounts/transactions with "hold":true: every request a new hold of
-- AMOUNT (0.01) between a uniform random pair (as transfer-uniform), ids
-- <RUN_ID>-<thread>-<counter>.  A hold moves nothing: it adds AMOUNT to the
-- source's heldBalance (201, "status":"PENDING").  req/s = holds/s.
--   ACCOUNTS=10000 RUN_ID=t5 wrk -t2 -c32 -d10s -s perf/wrk/hold.lua http://127.0.0.1:18190
--
-- No expiresIn by default (HOLD_EXPIRES_IN=0): the holds stay PENDING.  A
-- full perf/run-all.sh leaves a hundred thousand or more (its three 10 s
-- runs at a few thousand a second), 0.01 each: well under 1.00 held per
-- account of the 10k, harmless (they hold 1000.00 each), and they
-- cost nothing while they wait (their rows sit in the holds table, as the
-- transfers' rows stay in transactions).  With an expiry they would not
-- pile up, but the service would release them all an hour (or whatever
-- expiresIn says) later, for minutes (each pod's expiry scan takes a few
-- hundred a second: src/ngx_rbcs_transfer.c, NGX_RBCS_EXPIRY_*), through
-- the same write path as transfers: that work would land inside
-- some later measurement, unannounced, and inside nginx and mariadbd,
-- where the benchmark's watch for a busy machine cannot see it.  Holds with
-- an expiry are measured by the card scenario (a week, only the last
-- authorisation of each connection is left pending); HOLD_EXPIRES_IN=3600
-- gives these one too.
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("hold", function()
    return (rbcs.hold(rbcs.uniform_pair()))
end)
