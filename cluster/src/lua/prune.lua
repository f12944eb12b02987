-- Removes a member from the registry, only if it still holds no lease (a node that came back
-- meanwhile keeps its entry). KEYS[1] registry (P members), KEYS[2] its lease key; ARGV[1] id.
-- Returns 1 when the entry was removed.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return redis.call('HDEL', KEYS[1], ARGV[1])
