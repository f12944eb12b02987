-- A dialog record written by a clustered node (docs/REDIS.md, "Fenced writes"): the same update
-- as the unfenced MULTI (old fields go, new fields and the expiry land together), done only while
-- the fence holds (fence_single.lua or fence_cluster.lua, prepended, defines fence_ok).
-- KEYS[1] dialog record, KEYS[2] the fence key: the lease key (<cluster prefix>node:<id>), or on a
-- Cluster this node's fencing token of the record
-- KEYS[3], KEYS[4] (single server only): this node's owner index `P by-owner:<lease key>` and the
-- set of all owner indexes `P owners` (docs/REDIS.md, "Dialog owner index"); the record moves
-- from its previous owner's index (its `owner` field) to this one.
-- ARGV[1] epoch, ARGV[2] key lifetime (ms), ARGV[3..] field, value, field, value, ...
-- Returns 1, or the error STALE_EPOCH (nothing written).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
local previous = false
if KEYS[3] then
  previous = redis.call('HGET', KEYS[1], 'owner')
end
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  if KEYS[3] then
    redis.call('HSET', KEYS[1], 'owner', KEYS[3])
    if previous and previous ~= KEYS[3] then
      redis.call('SREM', previous, KEYS[1])
    end
    redis.call('SADD', KEYS[3], KEYS[1])
    redis.call('SADD', KEYS[4], KEYS[3])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif previous then
  redis.call('SREM', previous, KEYS[1])
end
return 1
