-- A dialog record removed by a clustered node (docs/REDIS.md, "Fenced writes"), only while this
-- node's lease key holds the epoch it writes with.
-- KEYS[1] dialog record, KEYS[2] this node's lease key; ARGV[1] epoch.
-- Returns the number of keys deleted (0 or 1), or the error STALE_EPOCH (nothing deleted).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
return redis.call('DEL', KEYS[1])
