-- key_touch.lua: verify an API key and count its use, in one atomic step.
--
-- KEYS[1]   the key's record, <prefix>key:{<key id>}
-- ARGV[1]   the SHA-256 of the presented secret, as canonical JSON (a quoted hex string)
--
-- Returns {outcome, field, value, ...}. The outcome is "unknown" (no record, or a hash that
-- does not match; no fields are returned, so a wrong secret learns nothing about the key),
-- "revoked", "expired" (its expires_at has passed by the server's clock), or "ok", in which
-- case use_count has been incremented and last_used_at set to now before the fields are read.
-- The hashes are compared over every byte, without an early exit.

local key = KEYS[1]
local stored = redis.call("HGET", key, "hash")
if not stored then
  return {"unknown"}
end
local expected = ARGV[1]
local diff = 0
if #stored ~= #expected then
  diff = 1
end
for i = 1, #expected do
  if string.byte(stored, i) ~= string.byte(expected, i) then
    diff = diff + 1
  end
end
if diff ~= 0 then
  return {"unknown"}
end

local t = redis.call("TIME")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local outcome = "ok"
if redis.call("HGET", key, "status") ~= '"active"' then
  outcome = "revoked"
else
  local expires = redis.call("HGET", key, "expires_at")
  if expires and expires ~= "null" and tonumber(expires) <= now then
    outcome = "expired"
  end
end
if outcome == "ok" then
  local count = redis.call("HGET", key, "use_count")
  if not count or count == "null" then
    redis.call("HSET", key, "use_count", "0")
  end
  redis.call("HINCRBY", key, "use_count", 1)
  redis.call("HSET", key, "last_used_at", string.format("%.6f", now))
end

local result = redis.call("HGETALL", key)
table.insert(result, 1, outcome)
return result
