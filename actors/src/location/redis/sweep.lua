-- Removes expired bindings of up to ARGV[2] AORs whose earliest expiry is due.
--
-- KEYS[1] expiry index, KEYS[2] binding counter
-- ARGV[1] now (ms), ARGV[2] batch size, ARGV[3] AOR key prefix, ARGV[4] connection-index prefix,
-- ARGV[5] closed-flows marker prefix
-- (Closed-flows markers are not swept here: they expire by their own TTL, and readers compare
-- their value with `now`.)
-- Returns {bindings removed, AORs visited}.

local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local removed = 0
for _, aor in ipairs(due) do
  local key = ARGV[3] .. aor
  local old = decode_set(redis.call('GET', key))
  local live = live_at(old, now)
  removed = removed + #old - #live
  if #live ~= #old then write_aor(key, old, live, ARGV[5] .. aor) end
  -- Always re-score (exact): the index holds a lower bound of each AOR's earliest expiry, so an
  -- AOR can be due before any of its bindings is; this also repairs an entry that was stale.
  apply_index(aor, old, live, KEYS[1], KEYS[2], ARGV[4], true)
end
return { removed, #due }
