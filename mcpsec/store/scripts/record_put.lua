-- record_put.lua: write a whole record, replacing any, with an optional expiry.
--
-- KEYS[1]   the record hash, <prefix><kind>:{<id>}
-- ARGV[1]   "1" to write only when no record exists, "0" to replace
-- ARGV[2]   time to live in milliseconds, or "" for none
-- ARGV[3..] field, value pairs; values are canonical JSON text
--
-- Returns {written, expiry}: written is 1, or 0 when ARGV[1] is "1" and a record exists;
-- expiry is the record's expiry in epoch ms by the server's clock (0 for none), so the
-- caller can index the record in either case (a put retried after a lost reply finds its
-- own record and must still make sure it is indexed). The hash always holds `__exp` ("" or
-- epoch ms): an empty record is still a record, and readers get the expiry in one HGETALL.

local key = KEYS[1]
if ARGV[1] == "1" and redis.call("EXISTS", key) == 1 then
  return {0, tonumber(redis.call("HGET", key, "__exp")) or 0}
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
return {1, expires_ms}
