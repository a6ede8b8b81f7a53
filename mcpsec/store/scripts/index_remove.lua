-- index_remove.lua: forget an id of a kind after its record was deleted.
--
-- KEYS[1]   the kind's id index (<prefix>idx:{<kind>})
-- KEYS[2]   the kind's expiry index (<prefix>exp:{<kind>})
-- ARGV[1]   the id
--
-- Returns 1 if the id was indexed, else 0.

redis.call("ZREM", KEYS[2], ARGV[1])
return redis.call("ZREM", KEYS[1], ARGV[1])
