-- scenario: mix
-- READ_PCT (90) % balance reads uniform over the ACCOUNTS accounts, the rest
-- transfers of AMOUNT between a uniform random pair (as balance-uniform and
-- transfer-uniform), chosen at random per request.
--   ACCOUNTS=10000 RUN_ID=t3 wrk -t2 -c32 -d10s -s perf/wrk/mix.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("mix", function()
    if math.random() * 100 < rbcs.read_pct then
        return rbcs.balance(rbcs.uniform())
    end
    return rbcs.transfer(rbcs.uniform_pair())
end)
