-- index_page.lua: one page of ids of a kind, each with its registration version.
--
-- KEYS[1]   the id index (sorted set, every score 0)
-- KEYS[2]   the versions (hash)
-- ARGV[1]   the lexicographic start: "-" for the beginning, or "(" .. the last id seen
-- ARGV[2]   the page size
--
-- Returns {id, version, id, version, ...} in id order. The versions let the caller forget
-- an id whose record turns out to be gone without racing a writer that brings it back.

local ids = redis.call("ZRANGE", KEYS[1], ARGV[1], "+", "BYLEX", "LIMIT", 0, tonumber(ARGV[2]))
local result = {}
for _, id in ipairs(ids) do
  result[#result + 1] = id
  result[#result + 1] = redis.call("HGET", KEYS[2], id) or "0"
end
return result
