-- scenario: balance-hot
-- GET /accounts/{n}/balance, n uniform over the first HOT_KEYS accounts
-- (default 1: every request reads PREFIX-000001).
--   HOT_KEYS=1 wrk -t2 -c32 -d10s -s perf/wrk/balance-hot.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("balance-hot", function()
    return rbcs.balance(rbcs.hot())
end)
