-- Redis Cluster: remove_connection.lua for one AOR (the caller read the connection's index set
-- and calls this on each listed AOR's slot; docs/REDIS.md, "Redis Cluster"). Removes the AOR's
-- flow bindings over the connection and, when that leaves it with no binding at all, writes the
-- closed-flows marker (the latest expiry of the removed bindings, living at most ARGV[2] ms).
--
-- KEYS[1] AOR value `P{<AOR>}aor`, KEYS[2] its closed-flows marker, KEYS[3] (only when fenced)
-- its fencing token
-- ARGV[1] connection (as stored, without the '=' marker), ARGV[2] marker lifetime (ms),
-- ARGV[3] fencing token field ('' unfenced), ARGV[4] the fencing epoch
-- Returns {bindings removed, index_effects items...} ({0} when nothing changed), or the error
-- STALE_EPOCH (nothing written).

if not fence_token_holds(KEYS[3], ARGV[3], ARGV[4]) then return stale_epoch() end

local old = decode_set(redis.call('GET', KEYS[1]))
local kept, until_ms = without_flow(old, '=' .. ARGV[1])
if #kept == #old then return { 0 } end
write_aor(KEYS[1], old, kept, KEYS[2])
if #kept == 0 and until_ms ~= nil then
  redis.call('SET', KEYS[2], string.format('%d', until_ms), 'PX', tonumber(ARGV[2]))
end
local fx = index_effects(old, kept)
return { #old - #kept, fx[1], fx[2], fx[3], fx[4], fx[5] }
