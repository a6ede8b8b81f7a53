-- marks_get.lua: the values of several marks of one group, in one round trip.
--
-- KEYS      the marks, <prefix>_mark:{<group>}:<name>, all with the same hash tag
--
-- A script rather than MGET so that a cluster refuses keys of two slots (CROSSSLOT)
-- instead of the client quietly splitting the read. Absent marks come back as false.

return redis.call("MGET", unpack(KEYS))
