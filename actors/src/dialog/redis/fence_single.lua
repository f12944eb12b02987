-- Fence check of a single server (docs/REDIS.md, "Fenced writes"), prepended to the fenced
-- dialog scripts: KEYS[2] is this node's lease key, ARGV[1] the epoch it writes with; the write
-- may proceed only while the lease holds that epoch.
local function fence_ok()
  return redis.call('GET', KEYS[2]) == ARGV[1]
end
