-- log_append_after.lua: append to a stream only if its last entry is the one expected.
--
-- KEYS[1]   the stream, <prefix>_log:{<stream>}; each entry holds one field, d (JSON)
-- ARGV[1]   the id of the entry the caller saw last ("" for an empty stream)
-- ARGV[2]   MAXLEN to keep, approximately ("" for no limit)
-- ARGV[3]   the age in milliseconds past which entries may be trimmed, by the server's
--           clock ("" for no limit)
-- ARGV[4..] the new entries' bodies, in order
--
-- This is what makes a hash chain safe with many writers: each entry carries a MAC over
-- the one before, so it may only go in right after that one; several chained entries go in
-- at once (group commit). Returns {"ok", id, id, ...} when appended, or {"conflict", last
-- id, last body} when another entry came first ("" and "" for an empty stream), so the
-- caller can chain to that one and try again.

local last = redis.call("XREVRANGE", KEYS[1], "+", "-", "COUNT", 1)
local last_id = last[1] and last[1][1] or ""
if last_id ~= ARGV[1] then
  local body = ""
  if last[1] then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == "d" then
        body = fields[i + 1]
      end
    end
  end
  return {"conflict", last_id, body}
end
local reply = {"ok"}
for i = 4, #ARGV do
  reply[#reply + 1] = redis.call("XADD", KEYS[1], "*", "d", ARGV[i])
end
if ARGV[2] ~= "" then
  redis.call("XTRIM", KEYS[1], "MAXLEN", "~", ARGV[2])
end
if ARGV[3] ~= "" then
  local t = redis.call("TIME")
  local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  redis.call("XTRIM", KEYS[1], "MINID", "~", string.format("%d-0", oldest))
end
return reply
