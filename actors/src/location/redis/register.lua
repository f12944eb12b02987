-- One REGISTER applied atomically to one AOR: RFC 3261 §10.3 steps 6-8, the same rules as
-- sipmesh_protocol::registrar::apply_register. Request-only checks (q-values, Min-Expires,
-- wildcard form) were done by the caller before this runs; here are the checks that need the
-- stored state (CSeq order, contact limit) and the update itself.
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

local now = tonumber(ARGV[1])
local mode = ARGV[2]
local call_id = ARGV[3]

local old = decode_set(redis.call('GET', AOR_KEY))
local live = live_at(old, now)
local changed = #live ~= #old

-- Call-ID/CSeq order (RFC 3261 §10.3 step 7) for a removal or an update. The CSeq argument is
-- converted only when a live binding has the same Call-ID: number parsing (strtod) is a
-- measurable share of the script, and a REGISTER with a new Call-ID never needs it.
if mode ~= 'Q' then
  local cseq
  for _, b in ipairs(live) do
    if b[CALL_ID] == call_id then
      cseq = cseq or tonumber(ARGV[4])
      if cseq <= b[CSEQ] then return { 'CSEQ' } end
    end
  end
end

local working = live
if mode == 'S' then
  if #live > 0 then changed = true end
  working = {}
elseif mode == 'L' then
  local before = #live
  for i = 9, #ARGV, ITEMS do
    local c = binding_from_args(i)
    local found
    for j, b in ipairs(working) do
      if same_binding(b, c) then
        found = j
        break
      end
    end
    if c[EXP] == 0 then
      if found then
        table.remove(working, found)
        changed = true
      end
    else
      if found then
        working[found] = c
      else
        working[#working + 1] = c
      end
      changed = true
    end
  end
  if #working > before and #working > tonumber(ARGV[5]) then return { 'MAX' } end
end

if changed then
  return { 'OK', 1, commit(old, working) }
end
return { 'OK', 0, encode_set(working) }
