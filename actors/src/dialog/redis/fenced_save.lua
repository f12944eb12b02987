-- A dialog record written by a clustered node (docs/REDIS.md, "Fenced writes"): the same update
-- as the unfenced MULTI (old fields go, new fields and the expiry land together), done only while
-- the fence holds (fence_single.lua or fence_cluster.lua, prepended, defines fence_ok).
-- KEYS[1] dialog record, KEYS[2] the fence key: the lease key (<cluster prefix>node:<id>), or on a
-- Cluster this node's fencing token of the record
-- ARGV[1] epoch, ARGV[2] key lifetime (ms), ARGV[3..] field, value, field, value, ...
-- Returns 1, or the error STALE_EPOCH (nothing written).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
