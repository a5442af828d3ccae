-- scenario: transfer-uniform
-- POST /accounts/transactions of AMOUNT (0.01) between a random source and a
-- random other destination, both uniform over the ACCOUNTS accounts; ids
-- <RUN_ID>-<thread>-<counter>, unique per run.
--   ACCOUNTS=10000 RUN_ID=t1 wrk -t2 -c32 -d10s -s perf/wrk/transfer-uniform.lua http://127.0.0.1:18190
-- The same at a constant rate: perf/wrk/transfer-rate.lua.
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("transfer-uniform", function()
    return rbcs.transfer(rbcs.uniform_pair())
end)
