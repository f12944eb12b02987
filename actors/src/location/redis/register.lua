-- One REGISTER applied atomically to one AOR: the rules of register_rules.lua, then the write.
--
-- The KEYS and the key-naming ARGV come from the layout prepended before this body
-- (layout_single.lua or layout_cluster.lua: AOR_KEY, fence_ok, commit); the rules are the same.
-- ARGV[1] now (ms), ARGV[2] mode ('Q' query, 'S' wildcard removal, 'L' contact list),
-- ARGV[3] Call-ID, ARGV[4] CSeq, ARGV[5] max contacts, ARGV[6] AOR, ARGV[7] layout-specific
-- (connection-index key prefix; Cluster: fencing token field), ARGV[8] the fencing epoch
-- ('' when unfenced), ARGV[9..] ITEMS arguments per Contact (expires_at 0 = remove).
-- Returns {'OK', changed (0/1), AOR value after the update, [Cluster, when changed: the
-- index_effects items]} or {'CSEQ'} or {'MAX'}, or the error STALE_EPOCH (nothing written)
-- when the fence does not hold.

if not fence_ok() then return stale_epoch() end

local status, old, working =
  register_rules(AOR_KEY, tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5], 9, #ARGV)
if status == 'CSEQ' or status == 'MAX' then return { status } end
if status then
  return { 'OK', 1, commit(old, working) }
end
return { 'OK', 0, encode_set(working) }
