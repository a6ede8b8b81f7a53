-- index_add.lua: record that an id of a kind exists, and sweep entries that have expired.
--
-- KEYS[1]   the kind's id index, a sorted set with every score 0 so it orders by id
--           (<prefix>idx:{<kind>})
-- KEYS[2]   the kind's expiry index, a sorted set scored by expiry in epoch ms
--           (<prefix>exp:{<kind>}); both share the {<kind>} hash tag, so one slot
-- ARGV[1]   the id
-- ARGV[2]   the record's time to live in milliseconds, or "0" for none
-- ARGV[3]   how many expired entries to sweep at most
--
-- Returns the number of expired entries swept. Every write sweeps a few, so the indexes of
-- kinds with expiring records (revocations) stay bounded without a background job. An entry
-- is swept one second after its expiry: records expire on their own, so an entry swept late
-- is only filtered out by readers meanwhile. The caller writes the record after this script,
-- so the record's own expiry is never earlier than the one indexed here.

local t = redis.call("TIME")
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now_ms - 1000, "LIMIT", 0, tonumber(ARGV[3]))
if #expired > 0 then
  redis.call("ZREM", KEYS[1], unpack(expired))
  redis.call("ZREM", KEYS[2], unpack(expired))
end

redis.call("ZADD", KEYS[1], 0, ARGV[1])
if ARGV[2] ~= "0" then
  redis.call("ZADD", KEYS[2], now_ms + tonumber(ARGV[2]), ARGV[1])
else
  redis.call("ZREM", KEYS[2], ARGV[1])
end
return #expired
