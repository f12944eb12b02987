-- Fence check of a single server (docs/REDIS.md, "Fenced writes"), prepended to the fenced
-- dialog scripts: KEYS[2] is this node's lease key, ARGV[1] the epoch it writes with; the write
-- may proceed only while the lease holds that epoch.
local function fence_ok()
  return redis.call('GET', KEYS[2]) == ARGV[1]
end
-- Per-dialog owner claims (docs/REDIS.md, "Per-dialog owner claims"): a record's `claim` field
-- is `<lease key>/<epoch>` of the node running its actor. This node's claim:
local function my_claim()
  return KEYS[2] .. '/' .. ARGV[1]
end
-- Whether `claim` is held by another node that still holds that lease epoch (a live owner).
local function claimed_by_other(claim)
  if not claim or claim == my_claim() then return false end
  local lease, epoch = string.match(claim, '^(.+)/(%d+)$')
  return lease ~= nil and redis.call('GET', lease) == epoch
end
