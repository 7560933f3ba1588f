-- wrk script for the Switchyard bench: POST a JSON body read from a file, check how streams end, print one JSON line.
-- Usage: wrk ... -s bench/wrk.lua URL -- BODY_FILE ["Header: value" ...]
-- SYBENCH_END (environment): the end a 200 stream must reach: "[DONE]" (its last event is `data: [DONE]`) or an
-- event type its last event names (response.completed, message_stop); empty for answers that are not streams.
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
end

-- Each thread counts its streams that ended badly; done() adds them up (threads have their own Lua states).
unended = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Where the last event starts: after the last blank line ("\n\n" or "\n\r\n") before `stop`.
local function last_break(body, sep, stop)
  local from, at = 1, 0
  while true do
    local i = body:find(sep, from, true)
    if not i or i + #sep - 1 >= stop then
      return at
    end
    at, from = i + #sep - 1, i + 1
  end
end

-- The position of the last character before `stop` that is not white space.
local function trimmed(body, stop)
  while stop > 0 and body:byte(stop) <= 32 do
    stop = stop - 1
  end
  return stop
end

local want = os.getenv("SYBENCH_END") or ""
if want ~= "" then
  -- Defined only for streams: with a response() function wrk keeps every body, which costs it CPU.
  function response(status, headers, body)
    if status ~= 200 then
      return -- wrk counts it under "status"
    end
    local stop = trimmed(body, #body)
    local done = body:sub(stop - 11, stop) == "data: [DONE]"
    local ok
    if want == "[DONE]" then
      ok = done
    else
      if done then
        -- A [DONE] after the terminal event (LiteLLM sends one on /v1/responses): the SDKs stop at it.
        stop = trimmed(body, stop - 12)
      end
      local at = math.max(last_break(body, "\n\n", stop), last_break(body, "\n\r\n", stop))
      ok = body:find(want, at + 1, true) ~= nil
    end
    if not ok then
      unended = unended + 1
    end
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
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("unended") or 0)
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "unended": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout, bad))
end
