-- A dialog record removed by a clustered node (docs/REDIS.md, "Fenced writes"), only while this
-- node's lease key holds the epoch it writes with.
-- KEYS[1] dialog record, KEYS[2] the fence key of fence_single.lua / fence_cluster.lua (prepended);
-- KEYS[3] (single server only) this node's owner index: with it, the record also leaves the index
-- named by its `owner` field (docs/REDIS.md, "Dialog owner index"). ARGV[1] epoch.
-- Returns the number of keys deleted (0 or 1), or the error STALE_EPOCH (nothing deleted).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
if KEYS[3] then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner then
    redis.call('SREM', owner, KEYS[1])
  end
end
return redis.call('DEL', KEYS[1])
