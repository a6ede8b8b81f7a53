-- bucket_take.lua: token buckets of one group, all or nothing, by the server's clock.
--
-- KEYS[1]     the group's override record, <prefix><kind>:{<group>} (may not exist)
-- KEYS[2..]   the buckets, <prefix>_rl:{<group>}:<name>: hashes of tokens, ts, capacity, refill
-- ARGV[1]     "take" to charge, "peek" to only look
-- ARGV[2..]   per bucket, four values: capacity, refill per second, cost, overridable (1/0)
--
-- A bucket refills at `refill` tokens a second up to `capacity`; an absent bucket is full.
-- If every bucket holds its cost, each is charged; if any does not, none is. Limits come
-- from the arguments (a changed policy applies on the next call), or, for an overridable
-- bucket, from the override record's `capacity` and `refill` fields when it exists.
-- A charged bucket expires when it would be full again (never, with refill 0).
--
-- Returns {allowed, then per bucket: capacity, refill, tokens (after the charge, if any),
-- retry_after (until `cost` tokens are there again), reset_after (until full), existed,
-- overridden},
-- numbers as text (a Lua number would come back truncated to an integer); retry_after and
-- reset_after are "-1" for never. The same rules as `bucket_level` in interface.py.

local function text(n)
  return string.format("%.17g", n)
end

local EPSILON = 1e-9  -- float dust: a bucket refilled to 0.9999999999 of a token holds one
local MAX_MS = 3153600000000  -- 100 years: Redis refuses an expiry written as 3.1e+17

local t = redis.call("TIME")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local override = redis.call("HMGET", KEYS[1], "capacity", "refill")
-- An override must be numbers in range; anything else (written by hand) is ignored.
local override_capacity, override_refill = tonumber(override[1]), tonumber(override[2])
if not (override_capacity and override_refill and override_capacity >= 1
        and override_refill >= 0) then
  override_capacity, override_refill = nil, nil
end
local charging = ARGV[1] == "take"
local allowed = true
local buckets = {}

for i = 2, #KEYS do
  local at = 2 + (i - 2) * 4
  local capacity = tonumber(ARGV[at])
  local refill = tonumber(ARGV[at + 1])
  local cost = tonumber(ARGV[at + 2])
  local overridden = "0"
  if ARGV[at + 3] == "1" and override_capacity then
    capacity, refill, overridden = override_capacity, override_refill, "1"
  end
  local held = redis.call("HMGET", KEYS[i], "tokens", "ts")
  local tokens = capacity
  if held[1] then
    local elapsed = math.max(0, now - tonumber(held[2]))
    tokens = math.min(capacity, tonumber(held[1]) + elapsed * refill)
  end
  if tokens + EPSILON < cost then
    allowed = false
  end
  buckets[i] = {capacity = capacity, refill = refill, cost = cost, tokens = tokens,
                existed = held[1] and "1" or "0", overridden = overridden}
end

local reply = {allowed and "1" or "0"}
for i = 2, #KEYS do
  local b = buckets[i]
  if allowed and charging then
    b.tokens = b.tokens - b.cost
    redis.call("HSET", KEYS[i], "tokens", text(b.tokens), "ts", text(now),
               "capacity", text(b.capacity), "refill", text(b.refill))
    if b.refill > 0 then
      local ms = math.ceil((b.capacity - b.tokens) / b.refill * 1000) + 1000
      redis.call("PEXPIRE", KEYS[i], math.min(ms, MAX_MS))
    else
      redis.call("PERSIST", KEYS[i])
    end
  end
  local retry = 0
  if b.tokens + EPSILON < b.cost then
    retry = b.refill > 0 and (b.cost - b.tokens) / b.refill or -1
  end
  local reset = 0
  if b.tokens + EPSILON < b.capacity then
    reset = b.refill > 0 and (b.capacity - b.tokens) / b.refill or -1
  end
  table.insert(reply, text(b.capacity))
  table.insert(reply, text(b.refill))
  table.insert(reply, text(b.tokens))
  table.insert(reply, text(retry))
  table.insert(reply, text(reset))
  table.insert(reply, b.existed)
  table.insert(reply, b.overridden)
end
return reply
