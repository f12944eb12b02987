-- The REGISTER rules for one AOR, shared by the one-AOR call (register.lua, both layouts) and the
-- several-AORs call (register_many.lua): RFC 3261 §10.3 steps 6-8, the same rules as
-- sipmesh_protocol::registrar::apply_register. Request-only checks (q-values, Min-Expires,
-- wildcard form) were done by the caller; here are the checks that need the stored state (CSeq
-- order, contact limit) and the new binding set. Writing it is the caller's (its key layout).
--
-- In a function library this is defined once, at FUNCTION LOAD (library.rs); under EVALSHA it
-- is one closure more per call.
--
-- `now` (ms, a number), `mode` ('Q' query, 'S' wildcard removal, 'L' contact list), the
-- request's Call-ID and CSeq (the script argument, converted only when needed), the contact
-- limit (the script argument), and the contacts as ITEMS arguments per Contact from ARGV[first]
-- to ARGV[last] (expires_at 0 = remove).
-- Returns 'CSEQ' or 'MAX' (nothing to write), or: changed (boolean), the stored bindings, the
-- new bindings.
local function register_rules(aor_key, now, mode, call_id, cseq_arg, max_arg, first, last)
  local old = decode_set(redis.call('GET', aor_key))
  local live = live_at(old, now)
  local changed = #live ~= #old

  -- Call-ID/CSeq order (RFC 3261 §10.3 step 7) for a removal or an update. The CSeq argument is
  -- converted only when a live binding has the same Call-ID: number parsing (strtod) is a
  -- measurable share of the script, and a REGISTER with a new Call-ID never needs it.
  if mode ~= 'Q' then
    local cseq
    for _, b in ipairs(live) do
      if b[CALL_ID] == call_id then
        cseq = cseq or tonumber(cseq_arg)
        if cseq <= b[CSEQ] then return 'CSEQ' end
      end
    end
  end

  local working = live
  if mode == 'S' then
    if #live > 0 then changed = true end
    working = {}
  elseif mode == 'L' then
    local before = #live
    for i = first, last, ITEMS do
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
    if #working > before and #working > tonumber(max_arg) then return 'MAX' end
  end
  return changed, old, working
end
