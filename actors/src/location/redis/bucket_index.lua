-- Redis Cluster: applies one AOR's index changes to its expiry bucket `P{b<i>}exp` and binding
-- counter `P{b<i>}bindings` (one slot per bucket). Not part of the AOR's atomic write: see
-- docs/REDIS.md, "Redis Cluster", for the ordering rules that keep a live AOR in the index.
--
-- KEYS[1] expiry bucket, KEYS[2] counter bucket
-- ARGV[1] AOR, ARGV[2] new earliest expiry (0: the AOR has no binding), ARGV[3] binding count
-- delta, ARGV[4] the score the caller expects the AOR to have ('' to set unconditionally)
-- Returns 1 when the expiry entry was changed, else 0.

local delta = tonumber(ARGV[3])
if delta ~= 0 then redis.call('INCRBY', KEYS[2], delta) end
local new = tonumber(ARGV[2])
if ARGV[4] ~= '' then
  local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not current or tonumber(current) ~= tonumber(ARGV[4]) then return 0 end
end
if new == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], new, ARGV[1])
end
return 1
