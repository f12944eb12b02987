-- Key layout of a single server (or a Sentinel-managed master), prepended to register.lua after
-- common.lua: the register script updates the AOR and its indexes in one atomic call.
--
-- KEYS[1] AOR value, KEYS[2] expiry index, KEYS[3] binding counter, KEYS[4] the AOR's
-- closed-flows marker, KEYS[5] (only when fenced) this node's lease key.
-- ARGV[6] AOR, ARGV[7] connection-index key prefix, ARGV[8] the fencing epoch ('' unfenced).

local AOR_KEY = KEYS[1]

local function fence_ok()
  return fence_holds(KEYS[5], ARGV[8])
end

-- Writes `new` with its indexes; the reply items after {'OK', 1}: the new value.
local function commit(old, new)
  return store_aor(KEYS[1], ARGV[6], old, new, KEYS[2], KEYS[3], ARGV[7], KEYS[4])
end

-- Writes the value of a refresh found by refresh_value (the index stays as it is).
local function commit_refresh(value)
  redis.call('SET', KEYS[1], value)
  return value
end
