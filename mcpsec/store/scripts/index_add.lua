-- index_add.lua: register an id of a kind after its record was written, and name expired
-- entries for the caller to sweep.
--
-- KEYS[1]   the id index: a sorted set with every score 0, so it orders by id (cursor listing)
-- KEYS[2]   the expiry hints: the same ids scored by their record's expiry in epoch ms
-- KEYS[3]   the versions: a hash of id -> the registration that last touched it
-- KEYS[4]   the kind's registration counter
--           (all four carry the {<kind>} hash tag, so one slot)
-- ARGV[1]   the id
-- ARGV[2]   the record's expiry in epoch ms, or "0" for none
-- ARGV[3]   how many sweep candidates to return at most
--
-- Returns {id, version, id, version, ...}: entries whose expiry passed a second ago or more.
-- They are only candidates: records live in other slots, so the caller checks that each
-- record is really gone, then calls index_forget.lua with the version it was given. Any
-- registration in between changes the version, and the forget becomes a no-op. Callers
-- write the record first and register it after, so "a record exists" implies "it is, or
-- is about to be, registered with a newer version".

local version = redis.call("INCR", KEYS[4])
redis.call("HSET", KEYS[3], ARGV[1], version)
redis.call("ZADD", KEYS[1], 0, ARGV[1])
if ARGV[2] ~= "0" then
  redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
else
  redis.call("ZREM", KEYS[2], ARGV[1])
end

local t = redis.call("TIME")
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now_ms - 1000, "LIMIT", 0, tonumber(ARGV[3]))
local result = {}
for _, id in ipairs(expired) do
  result[#result + 1] = id
  result[#result + 1] = redis.call("HGET", KEYS[3], id) or "0"
end
return result
