-- key_touch.lua: verify an API key and count its use, in one atomic step.
--
-- KEYS[1]   the key's record, <prefix>key:{<key id>}
-- ARGV[1]   the SHA-256 of the presented secret, as canonical JSON (a quoted hex string)
-- ARGV[2]   the grant tokens that would satisfy a required permission, space-separated
--           (permissions like "files:read" "files:*" "*", and "@role" for each role that
--           grants it), or "" when no permission is required. The record's `grant_tokens`
--           field lists its own, as " files:read @user ".
--
-- Returns {outcome, grants}: grants is "[owner,roles,permissions]" as one JSON text (one
-- parse on the client), empty for "unknown". The
-- outcome is "unknown" (no record, or a hash that does not match; nothing else is returned,
-- so a wrong secret learns nothing about the key), "revoked", "expired" (expires_at has
-- passed by the server's clock), "insufficient_permission" (none of ARGV[2] is among the
-- key's grants), or "ok", in which case use_count has been incremented and last_used_at
-- set to now. Only a valid verify counts as a use. Only what a verdict needs travels back: this runs on every
-- request a server authenticates.

-- The field holds canonical JSON: a quoted string with no escapes (tokens have no quotes).
local function cjson_free_text(json_text)
  if not json_text or #json_text < 2 then
    return ""
  end
  return string.sub(json_text, 2, -2)
end

local key = KEYS[1]
local found = redis.call(
  "HMGET", key, "hash", "status", "expires_at", "owner", "roles", "permissions", "grant_tokens"
)
local stored = found[1]
if not stored then
  return {"unknown"}
end
-- Compare digests of both sides, so the time taken says nothing about how many leading
-- characters of the stored hash the presented one shares. (fakeredis, used in unit tests,
-- lacks sha1hex; there the bytes are compared without an early exit instead.)
local same
if redis.sha1hex then
  same = redis.sha1hex(stored) == redis.sha1hex(ARGV[1])
else
  local diff = #stored == #ARGV[1] and 0 or 1
  for i = 1, #ARGV[1] do
    if string.byte(stored, i) ~= string.byte(ARGV[1], i) then
      diff = diff + 1
    end
  end
  same = diff == 0
end
if not same then
  return {"unknown"}
end

local t = redis.call("TIME")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local outcome = "ok"
if found[2] ~= '"active"' then
  outcome = "revoked"
elseif found[3] and found[3] ~= "null" and tonumber(found[3]) <= now then
  outcome = "expired"
end
if outcome == "ok" and ARGV[2] ~= "" then
  local grants = cjson_free_text(found[7])
  local granted = false
  for token in string.gmatch(ARGV[2], "%S+") do
    if string.find(grants, " " .. token .. " ", 1, true) then
      granted = true
      break
    end
  end
  if not granted then
    outcome = "insufficient_permission"
  end
end
if outcome == "ok" then
  redis.call("HINCRBY", key, "use_count", 1)
  redis.call("HSET", key, "last_used_at", string.format("%.6f", now))
end

return {outcome, "[" .. (found[4] or "null") .. "," .. (found[5] or "[]") .. "," .. (found[6] or "[]") .. "]"}
