-- Acquire or renew this node's lease (see docs/REDIS.md, "Cluster keys").
-- KEYS[1] lease key (P node:<id>), KEYS[2] epoch counter (P epoch:<id>), KEYS[3] registry (P members)
-- ARGV[1] 'acquire' | 'renew', ARGV[2] epoch to renew, ARGV[3] ttl in ms, ARGV[4] node id,
-- ARGV[5] cluster address
-- acquire: returns the new epoch; renew: 1 when our epoch still holds the lease, 0 when lost.
if ARGV[1] == 'acquire' then
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
  return epoch
end
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
