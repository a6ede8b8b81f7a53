-- record_put.lua: write a whole record, replacing any, with an optional expiry.
--
-- KEYS[1]   the record hash, <prefix><kind>:{<id>}
-- ARGV[1]   "1" to write only when no record exists, "0" to replace
-- ARGV[2]   time to live in milliseconds, or "" for none
-- ARGV[3..] field, value pairs; values are canonical JSON text
--
-- Returns the expiry as epoch milliseconds by the server's clock (0 for none), or -1 when
-- ARGV[1] is "1" and a record exists. The hash always holds `__exp` ("" or epoch ms), so an
-- empty record is still a record and readers get the expiry with the fields in one HGETALL.

local key = KEYS[1]
if ARGV[1] == "1" and redis.call("EXISTS", key) == 1 then
  return -1
end

local t = redis.call("TIME")
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires_ms = 0
if ARGV[2] ~= "" then
  expires_ms = now_ms + tonumber(ARGV[2])
end

redis.call("DEL", key)
local args = {"__exp", expires_ms > 0 and string.format("%d", expires_ms) or ""}
for i = 3, #ARGV do
  args[#args + 1] = ARGV[i]
end
redis.call("HSET", key, unpack(args))
if expires_ms > 0 then
  redis.call("PEXPIREAT", key, expires_ms)
end
return expires_ms
