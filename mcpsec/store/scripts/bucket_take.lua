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
-- retry_after (until `cost` tokens are there again), reset_after (until full), existed},
-- numbers as text (a Lua number would come back truncated to an integer); retry_after and
-- reset_after are "-1" for never. The same rules as `bucket_level` in interface.py.

local function text(n)
  return string.format("%.17g", n)
end

local t = redis.call("TIME")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local override = redis.call("HMGET", KEYS[1], "capacity", "refill")
local charging = ARGV[1] == "take"
local allowed = true
local buckets = {}

for i = 2, #KEYS do
  local at = 2 + (i - 2) * 4
  local capacity = tonumber(ARGV[at])
  local refill = tonumber(ARGV[at + 1])
  local cost = tonumber(ARGV[at + 2])
  if ARGV[at + 3] == "1" and override[1] and override[2] then
    capacity = tonumber(override[1])
    refill = tonumber(override[2])
  end
  local held = redis.call("HMGET", KEYS[i], "tokens", "ts")
  local tokens = capacity
  if held[1] then
    local elapsed = math.max(0, now - tonumber(held[2]))
    tokens = math.min(capacity, tonumber(held[1]) + elapsed * refill)
  end
  if tokens < cost then
    allowed = false
  end
  buckets[i] = {capacity = capacity, refill = refill, cost = cost, tokens = tokens,
                existed = held[1] and "1" or "0"}
end

local reply = {allowed and "1" or "0"}
for i = 2, #KEYS do
  local b = buckets[i]
  if allowed and charging then
    b.tokens = b.tokens - b.cost
    redis.call("HSET", KEYS[i], "tokens", text(b.tokens), "ts", text(now),
               "capacity", text(b.capacity), "refill", text(b.refill))
    if b.refill > 0 then
      redis.call("PEXPIRE", KEYS[i], math.ceil((b.capacity - b.tokens) / b.refill * 1000) + 1000)
    else
      redis.call("PERSIST", KEYS[i])
    end
  end
  local retry = 0
  if b.tokens < b.cost then
    retry = b.refill > 0 and (b.cost - b.tokens) / b.refill or -1
  end
  local reset = 0
  if b.tokens < b.capacity then
    reset = b.refill > 0 and (b.capacity - b.tokens) / b.refill or -1
  end
  table.insert(reply, text(b.capacity))
  table.insert(reply, text(b.refill))
  table.insert(reply, text(b.tokens))
  table.insert(reply, text(retry))
  table.insert(reply, text(reset))
  table.insert(reply, b.existed)
end
return reply
