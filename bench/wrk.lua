-- wrk script for the Switchyard bench: POST a JSON body read from a file, print one JSON line.
-- Usage: wrk ... -s bench/wrk.lua URL -- BODY_FILE [API_KEY]
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end

-- SYBENCH_STAGGER_MS: each connection's first request waits a random 0..N ms, so clients of a slow upstream
-- answer and ask again at independent moments instead of all in the same millisecond (a closed loop that
-- starts every client at once keeps them in lockstep forever).
local stagger = tonumber(os.getenv("SYBENCH_STAGGER_MS") or "0")
local unstaggered = tonumber(os.getenv("SYBENCH_CONNECTIONS") or "0")
if stagger > 0 then
  math.randomseed(os.time())
  function delay()
    if unstaggered > 0 then
      unstaggered = unstaggered - 1
      return math.random(0, stagger)
    end
    return 0
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
