-- A dialog record written by a clustered node (docs/REDIS.md, "Fenced writes"): the same update
-- as the unfenced MULTI (old fields go, new fields and the expiry land together), done only while
-- this node's lease key holds the epoch it writes with.
-- KEYS[1] dialog record, KEYS[2] this node's lease key (<cluster prefix>node:<id>)
-- ARGV[1] epoch, ARGV[2] key lifetime (ms), ARGV[3..] field, value, field, value, ...
-- Returns 1, or the error STALE_EPOCH (nothing written).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
