-- scenario: card
-- A card-like flow, authorise then settle, in pairs on every connection
-- (M.two_phase in perf/wrk/common.lua, as capture.lua): an authorisation is
-- a hold of CARD_AMOUNT (0.02) from a uniform random cardholder to a
-- uniform random other account (the merchant) expiring in CARD_EXPIRES_IN
-- seconds (a week); once the service answered it PENDING, the next request
-- settles it: CARD_VOID_PCT (10) % are voided (the purchase cancelled),
-- CARD_PARTIAL_PCT (20) % captured for AMOUNT (0.01) only, the rest of the
-- hold released (a final amount below the authorised one), the others
-- captured whole.  Authorisations left pending when the run ends (at most
-- one per connection) expire a week later.
--
-- What the figures mean: req/s counts authorisations and settlements
-- alike (half each); op_hold_*, op_capture_*, op_void_* in RBCS-STATS (the
-- "Holds, captures, deposits" table of results.md) give each kind's count
-- and latency.
--   ACCOUNTS=10000 RUN_ID=t8 wrk -t2 -c32 -d10s -s perf/wrk/card.lua http://127.0.0.1:18190
-- Parameters and output: perf/wrk/common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

rbcs.scenario("card", rbcs.two_phase(
    function()
        local s, d = rbcs.uniform_pair()
        return rbcs.hold(s, d, rbcs.card_amount, rbcs.card_expires_in)
    end,
    function(id)
        local r = math.random() * 100
        if r < rbcs.card_void_pct then
            return rbcs.void(id)
        end
        if r < rbcs.card_void_pct + rbcs.card_partial_pct then
            return rbcs.capture(id, rbcs.amount)
        end
        return rbcs.capture(id)
    end))
