-- Key layout of a Redis Cluster, prepended to register.lua after common.lua: every key is in the
-- AOR's hash slot (`P{<AOR>}…`), so the script writes only the AOR and returns the index changes
-- for the caller to apply on the index keys' own slots (docs/REDIS.md, "Redis Cluster").
--
-- KEYS[1] AOR value `P{<AOR>}aor`, KEYS[2] its closed-flows marker `P{<AOR>}closed`, KEYS[3]
-- (only when fenced) its fencing token `P{<AOR>}fence`.
-- ARGV[7] the fencing token field (this node's lease key; '' unfenced), ARGV[8] the epoch.

local AOR_KEY = KEYS[1]

local function fence_ok()
  return fence_token_holds(KEYS[3], ARGV[7], ARGV[8])
end

-- Writes `new`; the reply items after {'OK', 1}: the new value, then index_effects.
local function commit(old, new)
  local value = write_aor(KEYS[1], old, new, KEYS[2])
  local fx = index_effects(old, new)
  return value, fx[1], fx[2], fx[3], fx[4], fx[5]
end

-- No refresh fast path: the buckets keep exact scores, so a refresh returns index effects
-- (commit), which need the decoded bindings.
local commit_refresh = nil
