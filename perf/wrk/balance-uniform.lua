-- scenario: balance-uniform
-- GET /accounts/{n}/balance, n uniform over PREFIX-000001 .. PREFIX-<ACCOUNTS>.
--   ACCOUNTS=10000 wrk -t2 -c32 -d10s -s perf/wrk/balance-uniform.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("balance-uniform", function()
    return rbcs.balance(rbcs.uniform())
end)
