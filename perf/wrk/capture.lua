-- scenario: capture
-- Two-phase transfers, hold then capture: on every connection the requests
-- alternate a new hold of AMOUNT (0.01) between a uniform random pair
-- (POST /accounts/transactions with "hold":true, 201 PENDING; expiresIn as
-- HOLD_EXPIRES_IN, none by default: see hold.lua) and the capture of the
-- whole of a hold the service just answered PENDING (POST
-- /accounts/transactions/{id}/capture with {}, 200 COMPLETED: AMOUNT moves
-- from source to destination and the hold is released).  How holds and
-- captures are paired: M.two_phase in perf/wrk/common.lua.
--
-- What the figures mean: req/s counts both halves, so completed two-phase
-- transfers per second are half of it (exactly: op_capture_n / seconds,
-- the 200 answers); wrk's p50/p99 mix holds and captures; the per-kind
-- latency (op_hold_*, op_capture_* in RBCS-STATS, the "Holds, captures,
-- deposits" table of results.md) separates them.
--   ACCOUNTS=10000 RUN_ID=t6 wrk -t2 -c32 -d10s -s perf/wrk/capture.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("capture", rbcs.two_phase(
    function()
        local s, d = rbcs.uniform_pair()
        return rbcs.hold(s, d)
    end,
    function(id)
        return rbcs.capture(id)
    end))
