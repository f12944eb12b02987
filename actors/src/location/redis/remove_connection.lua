-- Removes every flow binding registered over one connection (its flow died, RFC 5626 §5.4), using
-- the connection index instead of a scan. An AOR left with no binding at all is marked as one
-- whose flows closed (so a request to it gets 480, not 404): the marker holds the latest expiry
-- (ms) the removed bindings had, and lives at most ARGV[5] ms.
--
-- KEYS[1] expiry index, KEYS[2] binding counter, KEYS[3] (only when fenced) this node's lease key
-- ARGV[1] connection (as stored, without the '=' marker), ARGV[2] AOR key prefix,
-- ARGV[3] connection-index prefix, ARGV[4] closed-flows marker prefix,
-- ARGV[5] marker lifetime (ms), ARGV[6] the fencing epoch ('' when unfenced)
-- Returns the number of bindings removed, or the error STALE_EPOCH (nothing written) when KEYS[3]
-- does not hold the epoch ARGV[6].

if not fence_holds(KEYS[3], ARGV[6]) then return stale_epoch() end

local marker = '=' .. ARGV[1]
local index = ARGV[3] .. ARGV[1]
local ttl = tonumber(ARGV[5])
local removed = 0
for _, aor in ipairs(redis.call('SMEMBERS', index)) do
  local key = ARGV[2] .. aor
  local closed_key = ARGV[4] .. aor
  local old = decode_set(redis.call('GET', key))
  local kept, until_ms = without_flow(old, marker)
  if #kept ~= #old then
    removed = removed + #old - #kept
    store_aor(key, aor, old, kept, KEYS[1], KEYS[2], ARGV[3], closed_key)
    if #kept == 0 and until_ms ~= nil then
      redis.call('SET', closed_key, string.format('%d', until_ms), 'PX', ttl)
    end
  end
end
redis.call('DEL', index)
return removed
