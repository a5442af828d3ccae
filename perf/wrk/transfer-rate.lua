-- scenario: transfer-rate
-- transfer-uniform at a constant rate: RATE requests/s in total (default
-- 100), spread over the threads on a fixed schedule through delay()
-- (perf/wrk/common.lua).  perf/run-all.sh aims it at half of the peak
-- transfer throughput and reports its p99.  CONNS and THREADS must be
-- wrk's -c and -t.
--   RATE=300 CONNS=32 THREADS=2 RUN_ID=t4 wrk -t2 -c32 -d20s -s perf/wrk/transfer-rate.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.rate = tonumber(rbcs.env("RATE", "100"))

rbcs.scenario("transfer-rate", function()
    return rbcs.transfer(rbcs.uniform_pair())
end)
