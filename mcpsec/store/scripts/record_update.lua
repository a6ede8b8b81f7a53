-- record_update.lua: compare-and-update one record atomically.
--
-- KEYS[1]   the record hash, <prefix><kind>:{<id>}
-- ARGV[1]   expiry mode: "keep", "persist" or "set"
-- ARGV[2]   time to live in milliseconds when the mode is "set", else ""
-- ARGV[3]   E, the number of expected field/value pairs
-- ARGV[4]   S, the number of field/value pairs to set
-- ARGV[5]   I, the number of field/amount pairs to increment
-- ARGV[6..] E expected pairs (canonical JSON; "null" matches an absent field), then S set
--           pairs (canonical JSON), then I increment pairs (integers)
--
-- Returns {status, field, value, ...}: "missing" with no fields when there is no record;
-- "conflict" with the unchanged record when an expectation fails (nothing is written);
-- "updated" with the record as it now is. A field to increment that holds anything but a
-- 64-bit integer, or would overflow, is a NOTINTEGER error and the record is left as it
-- was. A field may be set or incremented, not both (the caller checks).

local key = KEYS[1]
if redis.call("EXISTS", key) == 0 then
  return {"missing"}
end

local n_expect, n_set, n_incr = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 6
for _ = 1, n_expect do
  local current = redis.call("HGET", key, ARGV[i])
  if current == false then current = "null" end
  if current ~= ARGV[i + 1] then
    local result = redis.call("HGETALL", key)
    table.insert(result, 1, "conflict")
    return result
  end
  i = i + 2
end

-- Increments first, exactly (HINCRBY is 64-bit; Lua numbers are doubles and round above
-- 2^53). A script is not rolled back on error, so if one increment fails (not an integer,
-- or it would overflow) the ones already applied are restored before the error returns.
local originals = {}
for _ = 1, n_incr do
  local field, amount = ARGV[i + 2 * n_set], ARGV[i + 2 * n_set + 1]
  local current = redis.call("HGET", key, field)
  originals[#originals + 1] = {field, current}
  local failed = current ~= false and current ~= "null" and not string.match(current, "^%-?%d+$")
  if not failed then
    if current == "null" then
      redis.call("HSET", key, field, "0")
    end
    local reply = redis.pcall("HINCRBY", key, field, amount)
    failed = type(reply) == "table" and reply.err ~= nil
  end
  if failed then
    for _, original in ipairs(originals) do
      if original[2] == false then
        redis.call("HDEL", key, original[1])
      else
        redis.call("HSET", key, original[1], original[2])
      end
    end
    return redis.error_reply("NOTINTEGER field " .. field .. " does not hold an integer or would overflow")
  end
  i = i + 2
end
i = i - 2 * n_incr

local writes = {}
for _ = 1, n_set do
  writes[#writes + 1] = ARGV[i]
  writes[#writes + 1] = ARGV[i + 1]
  i = i + 2
end

if ARGV[1] == "persist" then
  redis.call("PERSIST", key)
  writes[#writes + 1] = "__exp"
  writes[#writes + 1] = ""
elseif ARGV[1] == "set" then
  local t = redis.call("TIME")
  local expires_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
  redis.call("PEXPIREAT", key, expires_ms)
  writes[#writes + 1] = "__exp"
  writes[#writes + 1] = string.format("%d", expires_ms)
end
if #writes > 0 then
  redis.call("HSET", key, unpack(writes))
end

local result = redis.call("HGETALL", key)
table.insert(result, 1, "updated")
return result
