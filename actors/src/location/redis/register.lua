-- One REGISTER applied atomically to one AOR: the rules of register_rules.lua, then the write.
--
-- The KEYS and the key-naming ARGV come from the layout prepended before this body
-- (layout_single.lua or layout_cluster.lua: AOR_KEY, fence_ok, commit, commit_refresh); the
-- rules are the same.
-- ARGV[1] now (ms), ARGV[2] mode ('Q' query, 'S' wildcard removal, 'L' contact list),
-- ARGV[3] Call-ID, ARGV[4] CSeq, ARGV[5] max contacts, ARGV[6] AOR, ARGV[7] layout-specific
-- (connection-index key prefix; Cluster: fencing token field), ARGV[8] the fencing epoch
-- ('' when unfenced), ARGV[9..] one argument per Contact, the binding alone as an encoded AOR value
-- (codec.rs, binding_args; expires_at 0 = remove).
-- Returns {'OK', changed (0/1), AOR value after the update, [Cluster, when changed: the
-- index_effects items]}, or the AOR value alone for a refresh the fast path decided (the same
-- as {'OK', 1, value}: a reply table costs ~5,600 instructions to convert), or {'CSEQ'} or
-- {'MAX'}, or the error STALE_EPOCH (nothing written) when the fence does not hold.

if not fence_ok() then return stale_epoch() end

local now = tonumber(ARGV[1])
local stored = redis.call('GET', AOR_KEY)
if commit_refresh then
  local value = refresh_value(stored, now, ARGV[2], ARGV[3], 9, #ARGV)
  if value == 'CSEQ' then return { 'CSEQ' } end
  if value then return commit_refresh(value) end
end
local status, old, working =
  register_rules(stored, now, ARGV[2], ARGV[3], ARGV[4], ARGV[5], 9, #ARGV)
if status == 'CSEQ' or status == 'MAX' then return { status } end
if status then
  return { 'OK', 1, commit(old, working) }
end
return { 'OK', 0, encode_set(working) }
