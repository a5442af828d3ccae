-- perf/wrk/common.lua - shared code of the wrk scenarios (not a scenario).
--
-- A scenario file loads it from its own directory with
--
--   local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   local rbcs = dofile(dir .. "common.lua")
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
--   HOLD_EXPIRES_IN 0  hold, capture: expiresIn of every hold in seconds; 0: none
--                      (hold.lua says why none by default)
--   CARD_AMOUNT 0.02   card: the amount authorised (held); partial captures
--                      take AMOUNT of it, which must be smaller
--   CARD_EXPIRES_IN 604800  card: expiresIn of every authorisation (a week)
--   CARD_VOID_PCT 10   card: percentage of authorisations voided (cancelled)
--   CARD_PARTIAL_PCT 20  card: percentage captured for AMOUNT only (the rest
--                      released); the others are captured whole
--   CONNS, THREADS 1   wrk's -c and -t, which a script cannot see (transfer-rate, fill)
--   RUN_ID     r<time> prefix of transaction ids: <RUN_ID>-<thread>-<counter>
--   BASE       ""      path prefix: "/static" sends the same requests to the
--                      twin's static `return 200` locations (the HTTP ceiling)
--
-- The EXTERNAL account of deposit.lua is PREFIX-EXT (perf/run-all.sh opens
-- it).
--
-- done() prints the per-status counts and one machine-readable line:
--   RBCS-STATS scenario=... requests=... seconds=... rps=... p50_us=...
--   p90_us=... p99_us=... p999_us=... max_us=... non2xx=... socket_errors=...
--   status_<code>=<count>...
-- followed, for the two-phase scenarios (capture, card: M.two_phase), by
-- op_<hold|capture|void>_n, _p50_us, _p99_us: answers and latency of each
-- kind of request, told apart by the answer's transactionId and status.

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
M.hold_expires_in  = tonumber(env("HOLD_EXPIRES_IN", "0"))
M.card_amount      = env("CARD_AMOUNT", "0.02")
M.card_expires_in  = tonumber(env("CARD_EXPIRES_IN", "604800"))
M.card_void_pct    = tonumber(env("CARD_VOID_PCT", "10"))
M.card_partial_pct = tonumber(env("CARD_PARTIAL_PCT", "20"))
M.external = M.prefix .. "-EXT"   -- deposit: the EXTERNAL account

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

local function new_id()
    counter = counter + 1
    return string.format("%s-%d-%d", M.run_id, M.tid or 0, counter)
end

-- POST /accounts/transactions of amount from src to dst (account numbers as
-- text); hold: a hold, with "expiresIn" when expires_in > 0
local function post_transaction(id, src, dst, amount, hold, expires_in)
    local body = string.format(
        '{"transactionId":"%s","sourceAccountNumber":"%s",' ..
        '"destinationAccountNumber":"%s","amount":"%s"',
        id, src, dst, amount)
    if hold then
        body = body .. ',"hold":true'
        if expires_in and expires_in > 0 then
            body = body .. string.format(',"expiresIn":%d', expires_in)
        end
    end
    return wrk.format("POST", M.base .. "/accounts/transactions",
                      M.json_headers, body .. "}")
end

-- a transfer of AMOUNT from account number s to d, with a fresh id
function M.transfer(s, d)
    return post_transaction(new_id(), M.account(s), M.account(d), M.amount)
end

-- the hot pair, alternating direction so that neither account runs dry
function M.hot_transfer()
    if counter % 2 == 0 then
        return M.transfer(M.hot_a, M.hot_b)
    end
    return M.transfer(M.hot_b, M.hot_a)
end

-- ------------------------------------------ deposits, holds, resolutions --

-- a deposit: a plain transfer of AMOUNT from the EXTERNAL account
-- PREFIX-EXT to account number d
function M.deposit(d)
    return post_transaction(new_id(), M.external, M.account(d), M.amount)
end

local track          -- per-op latency (M.two_phase): id .. op -> sent at

-- a hold of amount (default AMOUNT) from account number s to d, expiring
-- after expires_in seconds (default HOLD_EXPIRES_IN; 0: never); returns the
-- request and its id
function M.hold(s, d, amount, expires_in)
    local id = new_id()
    if track then track.sent(id, "hold") end
    return post_transaction(id, M.account(s), M.account(d), amount or M.amount,
                            true, expires_in or M.hold_expires_in), id
end

-- capture of the hold id: the whole held amount ({}), or amount of it
function M.capture(id, amount)
    if track then track.sent(id, "capture") end
    local body = "{}"
    if amount then
        body = string.format('{"amount":"%s"}', amount)
    end
    return wrk.format("POST", M.base .. "/accounts/transactions/" .. id .. "/capture",
                      M.json_headers, body)
end

-- void of the hold id: releases it
function M.void(id)
    if track then track.sent(id, "void") end
    return wrk.format("POST", M.base .. "/accounts/transactions/" .. id .. "/void",
                      M.json_headers, "{}")
end

-- ---------------------------------------------------- two-phase transfers --
--
-- M.two_phase(make_hold, resolve): the request function of capture.lua and
-- card.lua.  make_hold() returns a new hold request and its id; resolve(id)
-- the capture or void of a pending hold.  Each wrk thread keeps the ids of
-- the holds the service answered "status":"PENDING" (201) in arrival order;
-- its next request resolves the oldest of them, and when there is none it
-- is a new hold.  So every hold that succeeded is resolved once, by the
-- thread that made it, right after its answer (each connection has one
-- request in flight): the requests alternate hold, resolution, hold ...
-- on every connection, half of each (a hold that failed is not resolved,
-- the connection makes another).  Against the static twin (BASE set), which
-- never answers PENDING, a hold counts as pending once sent: the same
-- alternation of requests.
--
-- Latency of each kind: wrk's own figures mix holds and resolutions, so the
-- thread also notes when each request was built (request() runs right
-- before wrk starts its clock) under its id and kind, and when its answer
-- comes, the time since, by kind (status PENDING: a hold, COMPLETED: a
-- capture, VOIDED: a void); done() adds op_<kind>_n/_p50_us/_p99_us to the
-- RBCS-STATS line.  Needs LuaJIT's ffi (wrk's Lua) for a clock; without it
-- only the counts.  Not against the static twin, whose answers are all one
-- transfer's.

local function clock_us()
    local ok, ffi = pcall(require, "ffi")
    if not ok then
        return nil
    end
    pcall(ffi.cdef, [[
        typedef struct { long tv_sec; long tv_nsec; } rbcs_timespec;
        int clock_gettime(int clk_id, rbcs_timespec *tp);
    ]])
    local ts = ffi.new("rbcs_timespec")
    return function()
        ffi.C.clock_gettime(1, ts)          -- CLOCK_MONOTONIC
        return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
    end
end

local op_of_status = { PENDING = "hold", COMPLETED = "capture", VOIDED = "void" }

function M.two_phase(make_hold, resolve)
    local ready, head, tail = {}, 1, 0       -- FIFO of pending hold ids
    local now = clock_us()
    local sent_at = {}
    local static = M.base ~= ""
    if not static then
        M.ops = { "hold", "capture", "void" }
        track = {
            sent = function(id, op)
                if now then sent_at[id .. "/" .. op] = now() end
            end,
        }
    end

    M.on_response = function(status, body)
        if static or status ~= 200 and status ~= 201 or not body then
            return
        end
        local id = body:match('^{"transactionId":"([^"]+)"')
        local op = op_of_status[body:match('"status":"(%u+)"') or ""]
        if not id or not op then
            return
        end
        -- globals, flat, read by done() through thread:get
        local n = _G.op_n
        if not n then
            n = {}
            _G.op_n = n
        end
        n[op] = (n[op] or 0) + 1
        if now then
            local t0 = sent_at[id .. "/" .. op]
            if t0 then
                sent_at[id .. "/" .. op] = nil
                local lat = _G["op_lat_" .. op]
                if not lat then
                    lat = {}
                    _G["op_lat_" .. op] = lat
                end
                lat[#lat + 1] = now() - t0
            end
        end
        if op == "hold" and status == 201 then
            tail = tail + 1
            ready[tail] = id
        end
    end

    return function()
        if head <= tail then
            local id = ready[head]
            ready[head] = nil
            head = head + 1
            return resolve(id)
        end
        local req, id = make_hold()
        if static then                    -- the static twin: see above
            tail = tail + 1
            ready[tail] = id
        end
        return req
    end
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

    local on = M.on_response           -- M.two_phase: holds to resolve
    function response(status, headers, body)
        local s = _G.statuses
        s[status] = (s[status] or 0) + 1
        if on then
            on(status, body)
        end
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
        if M.ops then
            table.insert(line, M.op_stats(threads))
        end
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

-- op_stats(threads): "op_hold_n=... op_hold_p50_us=... op_hold_p99_us=..."
-- for each kind of M.ops, from every thread's op_n and op_lat_<kind>
-- (M.two_phase; -1: no latency measured); also printed in words
function M.op_stats(threads)
    local out, words = {}, {}
    for _, op in ipairs(M.ops) do
        local n, all = 0, {}
        for _, t in ipairs(threads) do
            n = n + ((t:get("op_n") or {})[op] or 0)
            for _, v in ipairs(t:get("op_lat_" .. op) or {}) do
                all[#all + 1] = v
            end
        end
        table.sort(all)
        local function pct(p)
            if #all == 0 then return -1 end
            return all[math.max(1, math.ceil(#all * p / 100))]
        end
        table.insert(out, string.format("op_%s_n=%d op_%s_p50_us=%d op_%s_p99_us=%d",
                                        op, n, op, pct(50), op, pct(99)))
        if #all > 0 then
            table.insert(words, string.format("%s %d (p50 %.2f ms, p99 %.2f ms)",
                                              op, n, pct(50) / 1000, pct(99) / 1000))
        else
            table.insert(words, string.format("%s %d", op, n))
        end
    end
    io.write(string.format("scenario %s: answers by kind: %s\n", M.name,
                           table.concat(words, ", ")))
    return table.concat(out, " ")
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
    local now_us = clock_us()
    -- delay() is called before every request of any connection of this
    -- thread; each call books the next free slot of the thread's schedule
    -- (one slot every interval / per_thread ms), so the thread sends
    -- per_thread * per_conn requests/s whichever connection asks, and all
    -- threads together RATE.
    local slot = interval / per_thread
    local next_at = nil
    function delay()
        if not now_us then
            return math.floor(interval)
        end
        local now = now_us() / 1000
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
