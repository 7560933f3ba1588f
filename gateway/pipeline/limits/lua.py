"""The limiter's Lua scripts: one admission (``ADMIT_LUA``) and one settlement (``SETTLE_LUA``) each
run atomically in Redis, on the server's clock, over one subject's keys (one cluster slot).

``MemoryLimits`` (``memory.py``) keeps the same semantics in the process; the e2e tests run the
same cases against both.
"""

from __future__ import annotations

# UTC calendar from a day number (days since 1970-01-01), in integer arithmetic: the month index
# (year * 12 + month - 1) and the day number of the first day of the next month. Howard Hinnant's
# civil_from_days / days_from_civil (http://howardhinnant.github.io/date_algorithms.html).
CALENDAR_LUA = """
local function month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  local yy = ny - (nm <= 2 and 1 or 0)
  local nera = math.floor(yy / 400)
  local nyoe = yy - nera * 400
  local nmp = nm > 2 and nm - 3 or nm + 9
  local ndoy = math.floor((153 * nmp + 2) / 5)
  local ndoe = nyoe * 365 + math.floor(nyoe / 4) - math.floor(nyoe / 100) + ndoy
  return y * 12 + m - 1, nera * 146097 + ndoe - 719468
end
local function int(x) return string.format('%.0f', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

ADMIT_LUA = (
    CALENDAR_LUA
    + """
local now = now_ms()
local rpm, tpm, tpd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prompt, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local width, nb = tonumber(ARGV[6]), tonumber(ARGV[7])
local need = math.max(prompt, 1)
local cur = math.floor(now / width)
local day = math.floor(now / 86400000)
local failed, retry, large = '', 0, 0
local function fail(kind, wait, too_large)
  if too_large > large or (too_large == large and wait > retry) then failed, retry, large = kind, wait, too_large end
end

local r_used = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  r_used = redis.call('ZCARD', KEYS[1])
  if r_used >= rpm then
    local e = redis.call('ZRANGE', KEYS[1], r_used - rpm, r_used - rpm, 'WITHSCORES')
    fail('rpm', tonumber(e[2]) + window - now, 0)
  end
end

local t_used, buckets = 0, {}
if tpm > 0 then
  local h = redis.call('HGETALL', KEYS[2])
  for i = 1, #h, 2 do
    local b, v = tonumber(h[i]), tonumber(h[i + 1])
    if b < cur - nb then
      redis.call('HDEL', KEYS[2], h[i])
    else
      t_used = t_used + v
      buckets[#buckets + 1] = {b, v}
    end
  end
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  if need > tpm then
    fail('tpm', window, 1)
  elseif t_used + need > tpm then
    local left = t_used
    for _, bv in ipairs(buckets) do
      left = left - bv[2]
      if left + need <= tpm then
        fail('tpm', (bv[1] + nb + 1) * width - now, 0)
        break
      end
    end
  end
end

local d_used = 0
if tpd > 0 then
  local d = redis.call('HMGET', KEYS[3], 'day', 'used')
  if tonumber(d[1]) == day then d_used = tonumber(d[2]) or 0 end
  if need > tpd then
    fail('tpd', (day + 1) * 86400000 - now, 1)
  elseif d_used + need > tpd then
    fail('tpd', (day + 1) * 86400000 - now, 0)
  end
end

local bday, bmon, reserve = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local bneed = math.max(reserve, 1)
local bd_used, bm_used, month, month_end = 0, 0, 0, 0
if bday > 0 or bmon > 0 then
  month, month_end = month_of(day)
  local b = redis.call('HMGET', KEYS[4], 'd', 'du', 'm', 'mu')
  if tonumber(b[1]) == day then bd_used = tonumber(b[2]) or 0 end
  if tonumber(b[3]) == month then bm_used = tonumber(b[4]) or 0 end
  if bday > 0 then
    if bneed > bday then fail('bday', (day + 1) * 86400000 - now, 1)
    elseif bd_used + bneed > bday then fail('bday', (day + 1) * 86400000 - now, 0) end
  end
  if bmon > 0 then
    if bneed > bmon then fail('bmonth', month_end * 86400000 - now, 1)
    elseif bm_used + bneed > bmon then fail('bmonth', month_end * 86400000 - now, 0) end
  end
end

local allowed = 0
if failed == '' then
  allowed = 1
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[8])
    redis.call('PEXPIRE', KEYS[1], window + 1000)
    r_used = r_used + 1
  end
  if tpm > 0 and prompt > 0 then
    redis.call('HINCRBY', KEYS[2], cur, prompt)
    buckets[#buckets + 1] = {cur, prompt}
    t_used = t_used + prompt
  end
  if tpm > 0 then redis.call('PEXPIRE', KEYS[2], (nb + 2) * width + 1000) end
  if tpd > 0 then
    if d_used == 0 then redis.call('HSET', KEYS[3], 'day', day, 'used', prompt)
    else redis.call('HINCRBY', KEYS[3], 'used', prompt) end
    redis.call('EXPIRE', KEYS[3], 172800)
    d_used = d_used + prompt
  end
  if bday > 0 or bmon > 0 then
    bd_used, bm_used = bd_used + reserve, bm_used + reserve
    redis.call('HSET', KEYS[4], 'd', day, 'du', int(bd_used), 'm', month, 'mu', int(bm_used))
    redis.call('PEXPIRE', KEYS[4], (month_end + 1) * 86400000 - now)
  end
end

local r_reset, t_reset = 0, 0
if rpm > 0 then
  local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if o[2] then r_reset = tonumber(o[2]) + window - now end
end
for _, bv in ipairs(buckets) do
  if bv[2] > 0 then
    t_reset = (bv[1] + nb + 1) * width - now
    break
  end
end
return {allowed, failed, retry, large, r_used, r_reset, t_used, t_reset, d_used, day, cur,
        int(bd_used), int(bm_used), month, month_end, now}
"""
)

SETTLE_LUA = (
    CALENDAR_LUA
    + """
local now = now_ms()
local delta, bucket, day = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local width, nb = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur, today = math.floor(now / width), math.floor(now / 86400000)
if ARGV[6] == '1' then
  if delta > 0 then
    redis.call('HINCRBY', KEYS[1], cur, delta)
    redis.call('PEXPIRE', KEYS[1], (nb + 2) * width + 1000)
  elseif bucket >= cur - nb then
    local v = tonumber(redis.call('HGET', KEYS[1], bucket) or '0')
    if v > 0 then redis.call('HSET', KEYS[1], bucket, math.max(v + delta, 0)) end
  end
end
if ARGV[7] == '1' then
  local d = tonumber(redis.call('HGET', KEYS[2], 'day') or '-1')
  if delta > 0 then
    if d == today then redis.call('HINCRBY', KEYS[2], 'used', delta)
    else redis.call('HSET', KEYS[2], 'day', today, 'used', delta) end
    redis.call('EXPIRE', KEYS[2], 172800)
  elseif d == day then
    local u = redis.call('HINCRBY', KEYS[2], 'used', delta)
    if u < 0 then redis.call('HSET', KEYS[2], 'used', 0) end
  end
end
local cost = tonumber(ARGV[9])
if ARGV[8] == '1' and cost ~= 0 then
  local bday, bmon = tonumber(ARGV[10]), tonumber(ARGV[11])
  local b = redis.call('HMGET', KEYS[3], 'd', 'du', 'm', 'mu')
  local d, du, m, mu = tonumber(b[1]) or -1, tonumber(b[2]) or 0, tonumber(b[3]) or -1, tonumber(b[4]) or 0
  if cost > 0 then
    -- Spent beyond the reservation: it counts in the windows of now.
    local month, month_end = month_of(today)
    if d == today then du = du + cost else d, du = today, cost end
    if m == month then mu = mu + cost else m, mu = month, cost end
    redis.call('HSET', KEYS[3], 'd', d, 'du', int(du), 'm', m, 'mu', int(mu))
    redis.call('PEXPIRE', KEYS[3], (month_end + 1) * 86400000 - now)
  elseif d == bday or m == bmon then
    -- The unspent part of the reservation goes back to the windows it was taken from, if still current.
    if d == bday then redis.call('HSET', KEYS[3], 'du', int(math.max(du + cost, 0))) end
    if m == bmon then redis.call('HSET', KEYS[3], 'mu', int(math.max(mu + cost, 0))) end
  end
end
return 1
"""
)
