-- mark_set.lua: raise a mark to at least a value, alive at least so long, in one step.
--
-- KEYS[1]   the mark, <prefix>_mark:{<group>}:<name>
-- ARGV[1]   the value, a decimal number
-- ARGV[2]   the time it must stay alive, in milliseconds (> 0)
--
-- A mark never goes down and its expiry never moves closer: two revocations of one token,
-- or a cut-off set twice, keep the later time and the longer life. Returns the value held.

local key = KEYS[1]
local value = ARGV[1]
local ttl = tonumber(ARGV[2])
local held = redis.call("GET", key)
if held and tonumber(held) >= tonumber(value) then
  value = held
end
local left = redis.call("PTTL", key)
if left > ttl then
  ttl = left
end
redis.call("SET", key, value, "PX", ttl)
return value
