-- SPDX-License-Identifier: MIT
-- wrk script for the ingest benchmark: POSTs one realistic
-- inbound_end_of_call event with the bearer token on every request, and
-- prints one machine-readable "BENCH" line that bench/ingest parses.
--
-- Environment: BENCH_SECRET (required), BENCH_BODY (default
-- examples/inbound_end_of_call.json, relative to where wrk runs).

local secret = os.getenv("BENCH_SECRET")
if secret == nil or secret == "" then
    error("post.lua: BENCH_SECRET is not set")
end

local body_path = os.getenv("BENCH_BODY") or
    "examples/inbound_end_of_call.json"
local f, err = io.open(body_path, "rb")
if f == nil then
    error("post.lua: cannot read body: " .. tostring(err))
end
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. secret

-- No response() callback: defining one makes wrk hand every response to
-- Lua, which would slow the client down more than the servers under test.
-- wrk counts status >= 400 as errors.status; none of the servers answers
-- 1xx or 3xx, so requests minus errors.status is the 2xx count.

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d status_errors=%d " ..
        "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d " ..
        "p50_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, e.status,
        e.connect, e.read, e.write, e.timeout,
        math.floor(latency:percentile(50)),
        math.floor(latency:percentile(99)),
        math.floor(latency.max)))
end
