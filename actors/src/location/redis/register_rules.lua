-- The REGISTER rules for one AOR, shared by the one-AOR call (register.lua, both layouts) and the
-- several-AORs call (register_many.lua): RFC 3261 §10.3 steps 6-8, the same rules as
-- sipmesh_protocol::registrar::apply_register. Request-only checks (q-values, Min-Expires,
-- wildcard form) were done by the caller; here are the checks that need the stored state (CSeq
-- order, contact limit) and the new binding set. Writing it is the caller's (its key layout).
--
-- In a function library this is defined once, at FUNCTION LOAD (library.rs); under EVALSHA it
-- is one closure more per call.
--
-- `stored` (the AOR value, false when absent), `now` (ms, a number), `mode` ('Q' query, 'S'
-- wildcard removal, 'L' contact list), the request's Call-ID and CSeq (the script argument,
-- converted only when needed), the contact limit (the script argument), and the contacts as
-- one argument per Contact (an encoded binding) from ARGV[first] to ARGV[last] (expires_at 0 =
-- remove).
-- Returns 'CSEQ' or 'MAX' (nothing to write), or: changed (boolean), the stored bindings, the
-- new bindings.
local function register_rules(stored, now, mode, call_id, cseq_arg, max_arg, first, last)
  local old = decode_set(stored)
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
    for i = first, last do
      local c = binding_from_arg(ARGV[i])
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

-- The refresh fast path, the common REGISTER (docs/REDIS.md, "Script cost"): one Contact that
-- re-registers the AOR's only stored binding, which is live, with the same bytes after the CSeq
-- (Contact, instance, reg-id, connection, rest) and an expiry no earlier than the stored one.
-- The general rules would replace that binding with the request's and change nothing else: the
-- binding count and the connection sets stay, and the expiry index's lower bound still holds
-- (apply_index leaves the score alone). So the new value is the Contact argument itself (a
-- one-binding value), found without decoding or encoding anything. Every C function call costs
-- about 1,000 instructions inside Redis, so the items are read at fixed positions with as few
-- string.byte calls as possible.
-- Returns the new AOR value, 'CSEQ' (RFC 3261 §10.3 step 7: same Call-ID, CSeq not higher), or
-- nil when the general rules (register_rules) must decide.
local function refresh_value(stored, now, mode, call_id, first, last)
  if not stored or mode ~= 'L' or first ~= last then return nil end
  local arg, n = ARGV[first], #call_id
  -- Both: 0x91 (one binding), 0x98 (eight items), 0xcf + 8 bytes (expiry), the Call-ID (a str,
  -- its length from its tag), the CSeq, then the rest. The argument's Call-ID is the request's.
  local s1, s2, s3, e1, e2, e3, e4, e5, e6, e7, e8, t, l = string.byte(stored, 1, 13)
  if s1 ~= 0x91 or s2 ~= 0x98 or s3 ~= 0xcf or t == nil then return nil end
  local old_exp = ((((((e1 * 256 + e2) * 256 + e3) * 256 + e4) * 256 + e5) * 256 + e6) * 256
    + e7) * 256 + e8
  if old_exp <= now then return nil end
  local id_first, id_len
  if t >= 0xa0 and t <= 0xbf then
    id_first, id_len = 13, t - 0xa0
  elseif t == 0xd9 and l then
    id_first, id_len = 14, l
  else
    return nil
  end
  local a1, a2, a3, f1, f2, f3, f4, f5, f6, f7, f8 = string.byte(arg, 1, 11)
  if a1 ~= 0x91 or a2 ~= 0x98 or a3 ~= 0xcf or f8 == nil then return nil end
  local new_exp = ((((((f1 * 256 + f2) * 256 + f3) * 256 + f4) * 256 + f5) * 256 + f6) * 256
    + f7) * 256 + f8
  if new_exp < old_exp then return nil end
  local p, q
  if n < 32 then q = 13 + n elseif n < 256 then q = 14 + n else return nil end
  p = id_first + id_len
  local old_cseq, old_len = uint32_item(string.byte(stored, p, p + 4))
  local new_cseq, new_len = uint32_item(string.byte(arg, q, q + 4))
  if old_cseq == nil or new_cseq == nil then return nil end
  local tail, new_tail = p + old_len, q + new_len
  if #stored - tail ~= #arg - new_tail
    or string.find(stored, string.sub(arg, new_tail), tail, true) ~= tail then
    return nil
  end
  if id_len == n and new_cseq <= old_cseq
    and string.find(stored, call_id, id_first, true) == id_first then
    return 'CSEQ'
  end
  return arg
end
