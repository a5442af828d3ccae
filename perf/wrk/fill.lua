-- fill: not a load scenario.  Reads every account's balance once, in order
-- (thread t of T reads accounts t, t+T, t+2T, ... up to ACCOUNTS);
-- perf/run-all.sh uses it to fill the twin's cache zone before measuring
-- the shared memory per cached account.  Once a thread has sent its share
-- it sends GET /healthz (no cache effect) until an answer has come for each
-- of its accounts, then writes "fill-done ..." to stderr and stops.  wrk
-- itself still waits for the whole duration (-d), so the caller interrupts
-- it (SIGINT: wrk then prints its summary) once every thread has said so.
--
-- wrk calls request() once in the first thread to check the request before
-- any is sent; so the first call does not advance (the first account is
-- asked twice, which is harmless), and completion is counted by the
-- distinct account numbers in the answers.
--   ACCOUNTS=10000 THREADS=2 wrk -t2 -c16 -d60s -s perf/wrk/fill.lua http://127.0.0.1:18190
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local rbcs = dofile(dir .. "common.lua")

local nthreads = tonumber(rbcs.env("THREADS", "1"))
local next_i, share, seen, nseen, finished = nil, 0, {}, 0, false

rbcs.scenario("fill", function()
    if next_i == nil then
        next_i = rbcs.tid
        share = math.floor((rbcs.accounts - rbcs.tid) / nthreads) + 1
        return rbcs.balance(next_i)       -- peek: see above
    end
    if next_i > rbcs.accounts then
        return wrk.format("GET", "/healthz")
    end
    local i = next_i
    next_i = next_i + nthreads
    return rbcs.balance(i)
end)

local count = response
function response(status, headers, body)
    count(status, headers, body)
    local acc = status == 200 and body and body:match('"accountNumber":"([^"]+)"')
    if acc and not seen[acc] then
        seen[acc] = true
        nseen = nseen + 1
    end
    if not finished and nseen >= share and share > 0 then
        finished = true
        io.stderr:write(string.format("fill-done thread %d: %d balances\n",
                                      rbcs.tid, nseen))
        wrk.thread:stop()
    end
end
