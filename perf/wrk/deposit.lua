-- scenario: deposit
-- POST /accounts/transactions of AMOUNT (0.01) from the EXTERNAL account
-- PREFIX-EXT (money from outside the ledger: its balance goes below zero
-- without limit; perf/run-all.sh opens it) into a uniform random account,
-- ids <RUN_ID>-<thread>-<counter>.  A plain transfer: req/s = deposits/s.
-- Every deposit locks PREFIX-EXT's row, so deposits are applied one
-- database transaction at a time, like transfer-hot's pair: what the
-- module's batches are for.
--   ACCOUNTS=10000 RUN_ID=t7 wrk -t2 -c32 -d10s -s perf/wrk/deposit.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("deposit", function()
    return rbcs.deposit(rbcs.uniform())
end)
