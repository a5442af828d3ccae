-- scenario: transfer-hot
-- POST /accounts/transactions of AMOUNT (0.01) between the hot pair HOT_A
-- and HOT_B (accounts 1 and 2), alternating direction (each thread's even
-- requests go A -> B, odd ones B -> A) so that neither account runs dry.
-- Every transfer locks the same two rows: they are applied one at a time.
--   RUN_ID=t2 wrk -t2 -c32 -d10s -s perf/wrk/transfer-hot.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("transfer-hot", function()
    return rbcs.hot_transfer()
end)
