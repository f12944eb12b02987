-- A dialog record removed by a clustered node (docs/REDIS.md, "Fenced writes"), only while this
-- node's lease key holds the epoch it writes with.
-- KEYS[1] dialog record, KEYS[2] the fence key of fence_single.lua / fence_cluster.lua (prepended);
-- KEYS[3] (single server only) this node's owner index: with it, the record also leaves the index
-- named by its `owner` field (docs/REDIS.md, "Dialog owner index"), the role is checked against
-- its `claim` ("Per-dialog owner claims": `own` must hold it, `visit` may remove any record),
-- and when the record's owner is another node it is told on its index's channel
-- (`PUBLISH <owner index> "ended <record key>"`), so its actor stops at once.
-- ARGV[1] epoch, ARGV[2] role (`own` or `visit`).
-- Returns the number of keys deleted (0 or 1), or the error STALE_EPOCH / STALE_OWNER (nothing
-- deleted).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
if KEYS[3] then
  local claim = redis.call('HGET', KEYS[1], 'claim')
  if ARGV[2] == 'own' and claimed_by_other(claim) then
    return redis.error_reply('STALE_OWNER ' .. claim .. ' owns the dialog')
  end
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner then
    redis.call('SREM', owner, KEYS[1])
  end
  local n = redis.call('DEL', KEYS[1])
  if n > 0 and owner and owner ~= KEYS[3] then
    redis.call('PUBLISH', owner, 'ended ' .. KEYS[1])
  end
  return n
end
return redis.call('DEL', KEYS[1])
