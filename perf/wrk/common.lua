-- perf/wrk/common.lua - shared code of the wrk scenarios (not a scenario).
--
-- A scenario file loads it with
--
--   local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   package.path = dir .. "?.lua;" .. package.path
--   local rbcs = require("common")
--   rbcs.scenario("balance-uniform", function() return rbcs.balance(rbcs.uniform()) end)
--
-- Parameters, all from the environment (os.getenv) with these defaults
-- (perf/check-jmx.pl checks that perf/jmeter/rbcs.jmx uses the same ones):
--
--   ACCOUNTS   10000   accounts PREFIX-000001 .. PREFIX-<ACCOUNTS> (perf/gen-accounts.sh)
--   PREFIX     P       account number prefix
--   HOT_KEYS   1       balance-hot: reads spread over the first HOT_KEYS accounts
--   HOT_A      1       transfer-hot: the pair of accounts (numbers)
--   HOT_B      2
--   AMOUNT     0.01    amount of every transfer
--   READ_PCT   90      mix: percentage of balance reads (the rest: transfers)
--   RATE       100     transfer-rate only: total requests/s to aim at (delay())
--   CONNS, THREADS 1   wrk's -c and -t, which a script cannot see (transfer-rate, fill)
--   RUN_ID     r<time> prefix of transaction ids: <RUN_ID>-<thread>-<counter>
--   BASE       ""      path prefix: "/static" sends the same requests to the
--                      twin's static `return 200` locations (the HTTP ceiling)
--
-- done() prints the per-status counts and one machine-readable line:
--   RBCS-STATS scenario=... requests=... seconds=... rps=... p50_us=...
--   p90_us=... p99_us=... p999_us=... max_us=... non2xx=... socket_errors=...
--   status_<code>=<count>...

local M = {}

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == "" then
        return default
    end
    return v
end

M.env = env

M.accounts = tonumber(env("ACCOUNTS", "10000"))
M.prefix   = env("PREFIX", "P")
M.hot_keys = tonumber(env("HOT_KEYS", "1"))
M.hot_a    = tonumber(env("HOT_A", "1"))
M.hot_b    = tonumber(env("HOT_B", "2"))
M.amount   = env("AMOUNT", "0.01")
M.read_pct = tonumber(env("READ_PCT", "90"))
M.rate     = 0        -- set by a throttled scenario (transfer-rate.lua)
M.run_id   = env("RUN_ID", "r" .. os.time())
M.base     = env("BASE", "")

M.json_headers = { ["Content-Type"] = "application/json" }

function M.account(i)
    return string.format("%s-%06d", M.prefix, i)
end

function M.uniform()
    return math.random(1, M.accounts)
end

function M.hot()
    return math.random(1, M.hot_keys)
end

-- distinct source and destination, both uniform over 1..ACCOUNTS
function M.uniform_pair()
    local s = math.random(1, M.accounts)
    local d = math.random(1, M.accounts - 1)
    if d >= s then
        d = d + 1
    end
    return s, d
end

-- ------------------------------------------------------------- requests --

function M.balance(i)
    return wrk.format("GET", M.base .. "/accounts/" .. M.account(i) .. "/balance")
end

local counter = 0

-- a transfer of AMOUNT from account number s to d, with a fresh id
function M.transfer(s, d)
    counter = counter + 1
    local body = string.format(
        '{"transactionId":"%s-%d-%d","sourceAccountNumber":"%s",' ..
        '"destinationAccountNumber":"%s","amount":"%s"}',
        M.run_id, M.tid or 0, counter, M.account(s), M.account(d), M.amount)
    return wrk.format("POST", M.base .. "/accounts/transactions",
                      M.json_headers, body)
end

-- the hot pair, alternating direction so that neither account runs dry
function M.hot_transfer()
    if counter % 2 == 0 then
        return M.transfer(M.hot_a, M.hot_b)
    end
    return M.transfer(M.hot_b, M.hot_a)
end

-- --------------------------------------------------------- wrk callbacks --

local threads = {}

-- scenario(name, make_request): installs wrk's global callbacks
function M.scenario(name, make_request)
    M.name = name

    -- main state: one call per thread, before init
    function setup(thread)
        thread:set("tid", #threads + 1)
        table.insert(threads, thread)
    end

    -- thread state
    function init(args)
        M.tid = _G.tid or 0
        _G.statuses = {}   -- read by done() through thread:get
        math.randomseed(os.time() * 1000 + M.tid * 7919)
        for _ = 1, 10 do math.random() end
        if M.rate > 0 then
            M.install_delay()
        end
    end

    request = make_request

    function response(status, headers, body)
        local s = _G.statuses
        s[status] = (s[status] or 0) + 1
    end

    function done(summary, latency, requests)
        local total = {}
        for _, t in ipairs(threads) do
            local s = t:get("statuses")
            if s then
                for code, n in pairs(s) do
                    total[code] = (total[code] or 0) + n
                end
            end
        end
        local e = summary.errors
        local socket = e.connect + e.read + e.write + e.timeout
        local secs = summary.duration / 1e6
        local codes, line = {}, {}
        for code in pairs(total) do table.insert(codes, code) end
        table.sort(codes)
        io.write(string.format("scenario %s: status counts:", name))
        for _, code in ipairs(codes) do
            io.write(string.format(" %d=%d", code, total[code]))
            table.insert(line, string.format("status_%d=%d", code, total[code]))
        end
        io.write(string.format("; socket errors: connect %d, read %d, write %d, timeout %d\n",
                               e.connect, e.read, e.write, e.timeout))
        io.write(string.format(
            "RBCS-STATS scenario=%s requests=%d seconds=%.3f rps=%.1f " ..
            "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
            "non2xx=%d socket_errors=%d %s\n",
            name, summary.requests, secs, summary.requests / secs,
            latency:percentile(50), latency:percentile(90),
            latency:percentile(99), latency:percentile(99.9), latency.max,
            e.status, socket, table.concat(line, " ")))
    end
end

-- ------------------------------------------------------------ throttling --
--
-- M.rate > 0 (transfer-rate.lua: RATE, with CONNS and THREADS: wrk's -c and
-- -t, which the script cannot see): each thread sends RATE / THREADS
-- requests/s on a fixed schedule (one slot every THREADS / RATE s), like
-- wrk2's constant throughput, except that latency is measured from the
-- actual send (wrk's clock), not from the scheduled one: if the server
-- falls behind, the schedule catches up by sending at once (delay 0) and
-- latency does not include the time the request waited to be sent (no
-- coordinated-omission correction).  Needs LuaJIT's ffi (wrk is built
-- with LuaJIT); without it a fixed delay of one interval is used, which
-- undershoots the rate by the response time.

function M.install_delay()
    local conns = tonumber(env("CONNS", "1"))
    local nthreads = tonumber(env("THREADS", "1"))
    local per_conn = M.rate / conns             -- requests/s per connection
    local interval = 1000 / per_conn            -- ms
    local per_thread = conns / nthreads          -- connections of this thread
    local ok, ffi = pcall(require, "ffi")
    local now_ms
    if ok then
        pcall(ffi.cdef, [[
            typedef struct { long tv_sec; long tv_nsec; } rbcs_timespec;
            int clock_gettime(int clk_id, rbcs_timespec *tp);
        ]])
        local ts = ffi.new("rbcs_timespec")
        now_ms = function()
            ffi.C.clock_gettime(1, ts)          -- CLOCK_MONOTONIC
            return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
        end
    end
    -- delay() is called before every request of any connection of this
    -- thread; each call books the next free slot of the thread's schedule
    -- (one slot every interval / per_thread ms), so the thread sends
    -- per_thread * per_conn requests/s whichever connection asks, and all
    -- threads together RATE.
    local slot = interval / per_thread
    local next_at = nil
    function delay()
        if not now_ms then
            return math.floor(interval)
        end
        local now = now_ms()
        if next_at == nil or next_at < now - interval then
            next_at = now        -- start, or no burst after a long stall
        end
        local at = next_at
        next_at = next_at + slot
        if at <= now then
            return 0
        end
        return math.floor(at - now + 0.5)
    end
end

return M
