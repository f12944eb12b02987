-- Fence check on a Redis Cluster (docs/REDIS.md, "Fenced writes on a Cluster"), prepended to the
-- fenced dialog scripts. The lease key is in another hash slot, so KEYS[2] is instead this
-- node's fencing token for the record, `P{<dialog>}fence:<lease key>` (the record's slot): the
-- highest epoch this node wrote the record with. A lower epoch (an older incarnation of the node)
-- is refused; otherwise the epoch is recorded, for a day.
local function fence_ok()
  local seen = redis.call('GET', KEYS[2])
  if seen and tonumber(seen) > tonumber(ARGV[1]) then return false end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', 86400000)
  return true
end
