-- index_forget.lua: drop index entries whose records the caller found gone, unless they
-- were registered again since the caller looked.
--
-- KEYS[1]   the id index (sorted set)
-- KEYS[2]   the expiry hints (sorted set)
-- KEYS[3]   the versions (hash)
-- ARGV[1]   "drop" to remove the entries, or "unexpire" to remove only their expiry hints
--           (the record is alive, its hint was stale)
-- ARGV[2..] id, version pairs, the version read before the record was found gone
--
-- Returns how many entries were changed.

local changed = 0
for i = 2, #ARGV, 2 do
  local id, seen = ARGV[i], ARGV[i + 1]
  if redis.call("HGET", KEYS[3], id) == seen then
    redis.call("ZREM", KEYS[2], id)
    if ARGV[1] == "drop" then
      redis.call("ZREM", KEYS[1], id)
      redis.call("HDEL", KEYS[3], id)
    end
    changed = changed + 1
  end
end
return changed
