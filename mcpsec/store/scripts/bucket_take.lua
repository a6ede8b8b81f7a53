-- bucket_take.lua: token buckets of one group, all or nothing, by the server's clock.
--
-- KEYS[1]     the group's override record, <prefix><kind>:{<group>} (may not exist)
-- KEYS[2..]   the buckets, <prefix>_rl:{<group>}:<name>
-- ARGV[1]     "take" to charge, "peek" to only look
-- ARGV[2..]   per bucket, four values: capacity, refill per second, cost, overridable (1/0)
--
-- A bucket refills at `refill` tokens a second up to `capacity`; an absent bucket is full.
-- If every bucket holds its cost, each is charged; if any does not, none is. Limits come
-- from the arguments (a changed policy applies on the next call), or, for an overridable
-- bucket, from the override record's `capacity` and `refill` fields when they are numbers
-- in range. A bucket is one string, "<state> <capacity> <refill>" (the limits it was last
-- charged under): with refill > 0 the state is the microsecond at which it will be full
-- (GCRA's theoretical arrival time: one number says it all), rounded up so that rounding
-- never admits; with refill 0 it is the tokens used. Its level now is read with the limits
-- it was written under and capped at today's capacity, so a changed policy applies at once.
-- It expires when full (never, with refill 0).
--
-- Returns {allowed, then per bucket: capacity, refill (as text, as they applied), tokens
-- (text, after the charge if any), full_in and retry_in (microseconds until full / until
-- `cost` tokens are there, integers or, past 9e15, text; -1 for never), existed (1/0),
-- overridden (1/0)}. The same
-- rules as `bucket_level` and SqliteStore.take_buckets.

local EPSILON = 1e-9  -- float dust: a bucket refilled to 0.9999999999 of a token holds one
local MAX_MS = 3153600000000  -- 100 years: Redis refuses an expiry written as 3.1e+17

-- An integer reply is exact and cheap, but Redis truncates numbers beyond 64 bits: text then.
local function exact(n)
  if n > 9e15 then
    return string.format("%.17g", n)
  end
  return n
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local charging = ARGV[1] == "take"
local allowed = true
local buckets = {}
local o_capacity, o_refill  -- nil: not read yet; false: no usable override

for i = 2, #KEYS do
  local at = 2 + (i - 2) * 4
  local capacity_text, refill_text = ARGV[at], ARGV[at + 1]
  local overridden = 0
  if ARGV[at + 3] == "1" then
    if o_capacity == nil then
      local o = redis.call("HMGET", KEYS[1], "capacity", "refill")
      o_capacity, o_refill = tonumber(o[1]) or false, tonumber(o[2]) or false
      if not (o_capacity and o_refill and o_capacity >= 1 and o_refill >= 0) then
        o_capacity = false
      end
    end
    if o_capacity then
      capacity_text, refill_text, overridden = tostring(o_capacity), tostring(o_refill), 1
    end
  end
  local capacity, refill = tonumber(capacity_text), tonumber(refill_text)
  local cost = tonumber(ARGV[at + 2])
  local held = redis.call("GET", KEYS[i])
  local tokens = capacity
  if held then
    local h_state, h_capacity, h_refill = string.match(held, "^(%S+) (%S+) (%S+)$")
    h_state, h_capacity, h_refill = tonumber(h_state), tonumber(h_capacity), tonumber(h_refill)
    if h_state and h_capacity and h_refill then
      local level = h_capacity - h_state
      if h_refill > 0 then
        level = h_capacity - math.max(0, h_state - now) * h_refill / 1000000
      end
      tokens = math.min(capacity, level)
    end
  end
  if tokens + EPSILON < cost then
    allowed = false
  end
  buckets[i] = {capacity_text, refill_text, capacity, refill, cost, tokens,
                held and 1 or 0, overridden}
end

local reply = {allowed and 1 or 0}
for i = 2, #KEYS do
  local b = buckets[i]
  local capacity, refill, cost, tokens = b[3], b[4], b[5], b[6]
  local interval = refill > 0 and 1000000 / refill or 0
  if allowed and charging then
    tokens = tokens - cost
    if refill > 0 then
      local full_at = math.ceil(now + (capacity - tokens) * interval)
      redis.call("SET", KEYS[i], string.format("%.17g %s %s", full_at, b[1], b[2]),
                 "PX", math.min(math.ceil((full_at - now) / 1000) + 1000, MAX_MS))
    else
      redis.call("SET", KEYS[i], string.format("%.17g %s %s", capacity - tokens, b[1], b[2]))
    end
  end
  local full_in, retry_in = 0, 0
  if tokens + EPSILON < capacity then
    full_in = refill > 0 and math.ceil((capacity - tokens) * interval) or -1
  end
  if tokens + EPSILON < cost then
    retry_in = refill > 0 and math.ceil((cost - tokens) * interval) or -1
  end
  table.insert(reply, b[1])
  table.insert(reply, b[2])
  table.insert(reply, string.format("%.17g", tokens))
  table.insert(reply, exact(full_in))
  table.insert(reply, exact(retry_in))
  table.insert(reply, b[7])
  table.insert(reply, b[8])
end
return reply
