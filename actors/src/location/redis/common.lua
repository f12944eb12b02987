-- sipmesh location store: helpers shared by every script (prepended to each one).
--
-- Stored format (see docs/REDIS.md and codec.rs): an AOR value is a MessagePack array of
-- bindings, each an array of eight items: expires_at_ms (number), call_id, cseq (number),
-- contact, instance, reg_id, connection, rest. Optional items are "" when absent and
-- "=" .. value when present; `rest` is carried opaquely. cmsgpack decodes and encodes a value
-- in one C call (Lua string scanning measured about 5 µs per binding). A REGISTER passes each
-- Contact as one argument: the AOR value that binding alone would make, encoded as
-- cmsgpack.pack encodes it (codec.rs, binding_args).

local EXP, CALL_ID, CSEQ, CONTACT, INSTANCE, REG_ID, CONN = 1, 2, 3, 4, 5, 6, 7

-- The bindings of an AOR value (false or nil when the key does not exist).
local function decode_set(value)
  if not value then return {} end
  return cmsgpack.unpack(value)
end

-- A wrapper, not an alias of cmsgpack.pack: in a function library (library.rs) this file runs
-- at FUNCTION LOAD time, when Redis 7.0 does not expose cmsgpack yet. Under EVALSHA the
-- wrapper is one more closure per call (~450 instructions, docs/REDIS.md "Script cost").
local function encode_set(set)
  return cmsgpack.pack(set)
end

-- The binding of a Contact argument (the binding alone, encoded as a one-binding AOR value).
local function binding_from_arg(arg)
  return cmsgpack.unpack(arg)[1]
end

-- A non-negative integer item from its first bytes (tag t, then b1..b4), in the forms
-- cmsgpack.pack writes up to 32 bits: its value and its length in bytes, or nil.
local function uint32_item(t, b1, b2, b3, b4)
  if t == nil then return nil end
  if t < 0x80 then return t, 1 end
  if t == 0xcc and b1 then return b1, 2 end
  if t == 0xcd and b2 then return b1 * 256 + b2, 3 end
  if t == 0xce and b4 then return ((b1 * 256 + b2) * 256 + b3) * 256 + b4, 5 end
  return nil
end

-- RFC 3261 §19.1.4 URI equivalence: a port of sipmesh_protocol::registrar::contact_uris_equivalent.
--
-- Every `local function` of a script is a new closure on every call (Lua 5.1), and closures are
-- garbage for Lua's collector, which was most of the script's cost per REGISTER
-- (docs/PERFORMANCE.md, "Redis script cost"). The parser is only needed when a stored Contact's
-- text differs from the request's, never on a plain refresh, so its helpers are built on first
-- use within a call.
local function uri_parser()
  local function trim(s)
    return string.match(s, '^[ \t\n\f\r]*(.-)[ \t\n\f\r]*$')
  end

  local function split(s, sep)
    local out, pos = {}, 1
    while true do
      local i = string.find(s, sep, pos, true)
      if not i then
        out[#out + 1] = string.sub(s, pos)
        return out
      end
      out[#out + 1] = string.sub(s, pos, i - 1)
      pos = i + 1
    end
  end

  local function split_pair(p)
    local eq = string.find(p, '=', 1, true)
    if not eq then return p, nil end
    return string.sub(p, 1, eq - 1), string.sub(p, eq + 1)
  end

  -- Decodes %XX escapes of unreserved characters, uppercases the others; nil on a bad escape.
  local function unescape(s)
    if not string.find(s, '%', 1, true) then return s end
    local out, i, n = {}, 1, #s
    while i <= n do
      local c = string.sub(s, i, i)
      if c ~= '%' then
        out[#out + 1] = c
        i = i + 1
      else
        local h = string.sub(s, i + 1, i + 2)
        if not string.match(h, '^%x%x$') then return nil end
        local ch = string.char(tonumber(h, 16))
        if string.match(ch, "^[%w%-_%.!~%*'%(%)]$") then
          out[#out + 1] = ch
        else
          out[#out + 1] = '%' .. string.upper(h)
        end
        i = i + 3
      end
    end
    return table.concat(out)
  end

  -- host, port (false when absent), or nil when malformed.
  local function split_host_port(hp)
    local port_at
    if string.sub(hp, 1, 1) == '[' then
      local close = string.find(hp, ']', 1, true)
      if not close then return nil end
      local nxt = string.sub(hp, close + 1, close + 1)
      if nxt == ':' then
        port_at = close + 1
      elseif nxt ~= '' then
        return nil
      end
    else
      port_at = string.find(hp, ':', 1, true)
    end
    if not port_at then return hp, false end
    local digits = string.sub(hp, port_at + 1)
    if not string.match(digits, '^%d+$') then return nil end
    local port = tonumber(digits)
    if port > 65535 then return nil end
    return string.sub(hp, 1, port_at - 1), port
  end

  local function parse_uri(uri)
    uri = trim(uri)
    local colon = string.find(uri, ':', 1, true)
    if not colon then return nil end
    local scheme = string.lower(string.sub(uri, 1, colon - 1))
    local rest = string.sub(uri, colon + 1)
    if scheme ~= 'sip' and scheme ~= 'sips' then
      return { scheme = scheme, userinfo = rest, host = '', port = false, params = {}, headers = {}, header_count = 0 }
    end
    local userinfo, after = false, rest
    local at = string.find(rest, '@', 1, true)
    local q = string.find(rest, '?', 1, true)
    if at and (not q or at < q) then
      userinfo, after = string.sub(rest, 1, at - 1), string.sub(rest, at + 1)
    end
    local before_headers, headers = after, nil
    local qm = string.find(after, '?', 1, true)
    if qm then
      before_headers, headers = string.sub(after, 1, qm - 1), string.sub(after, qm + 1)
    end
    local parts = split(before_headers, ';')
    local host, port = split_host_port(parts[1])
    if not host or host == '' then return nil end
    if userinfo then
      userinfo = unescape(userinfo)
      if not userinfo then return nil end
    end
    local params = {}
    for i = 2, #parts do
      local p = parts[i]
      if p ~= '' then
        local name, value = split_pair(p)
        if value then
          value = unescape(value)
          if not value then return nil end
          value = string.lower(value)
        else
          value = false
        end
        params[#params + 1] = { string.lower(name), value }
      end
    end
    -- Headers as a multiset (order-insensitive), so no locale-dependent sort is needed.
    local hs, count = {}, 0
    if headers then
      for _, h in ipairs(split(headers, '&')) do
        if h ~= '' then
          local name, value = split_pair(h)
          local v = unescape(value or '')
          if not v then return nil end
          local k = #name .. ':' .. string.lower(name) .. v
          hs[k] = (hs[k] or 0) + 1
          count = count + 1
        end
      end
    end
    return {
      scheme = scheme, userinfo = userinfo, host = string.lower(host), port = port,
      params = params, headers = hs, header_count = count,
    }
  end

  local MUST_MATCH = { user = true, ttl = true, method = true, maddr = true }

  local function param(u, name)
    for _, p in ipairs(u.params) do
      if p[1] == name then return p end
    end
    return nil
  end

  local function one_way(a, b)
    for _, p in ipairs(a.params) do
      local other = param(b, p[1])
      if other then
        if other[2] ~= p[2] then return false end
      elseif MUST_MATCH[p[1]] then
        return false
      end
    end
    return true
  end

  local function same_headers(a, b)
    if a.header_count ~= b.header_count then return false end
    for k, n in pairs(a.headers) do
      if b.headers[k] ~= n then return false end
    end
    return true
  end

  return function(a, b)
    local pa, pb = parse_uri(a), parse_uri(b)
    if not pa or not pb then return trim(a) == trim(b) end
    return pa.scheme == pb.scheme and pa.userinfo == pb.userinfo and pa.host == pb.host
      and pa.port == pb.port and same_headers(pa, pb) and one_way(pa, pb) and one_way(pb, pa)
  end
end

local parsed_uri_equivalent

local function uri_equivalent(a, b)
  -- The common case, a refresh with the Contact unchanged: equal text is an equivalent URI.
  if a == b then return true end
  if not parsed_uri_equivalent then parsed_uri_equivalent = uri_parser() end
  return parsed_uri_equivalent(a, b)
end

-- Whether request contact c names stored binding b (RFC 5626 §6 flows, else §19.1.4).
local function same_binding(b, c)
  if c[INSTANCE] ~= '' and c[REG_ID] ~= '' then
    return b[REG_ID] == c[REG_ID] and b[INSTANCE] == c[INSTANCE]
  end
  return not (b[INSTANCE] ~= '' and b[REG_ID] ~= '') and uri_equivalent(b[CONTACT], c[CONTACT])
end

-- Only flows are indexed: a connection ending in '~' belongs to a binding that is not a flow,
-- which outlives its connection (codec.rs, `NOT_A_FLOW`).
local function indexed(conn)
  return conn ~= '' and string.sub(conn, -1) ~= '~'
end

-- Writes the AOR value (`old` -> `new`) and nothing else: the keys of the AOR's own hash slot.
-- Returns the encoded new value ('' when the AOR has no binding left), so callers need not encode
-- it again. An AOR that has bindings again is no longer one whose flows closed: its `closed_key`
-- marker goes.
local function write_aor(aor_key, old, new, closed_key)
  if #new == 0 then
    redis.call('DEL', aor_key)
    return ''
  end
  local value = encode_set(new)
  redis.call('SET', aor_key, value)
  -- The closed-flows marker exists only while the AOR has no stored binding at all
  -- (remove_connection sets it when it empties the AOR), so only the first write after that
  -- needs to delete it: not every refresh.
  if #old == 0 then redis.call('DEL', closed_key) end
  return value
end

-- The earliest expiry of a binding set (0 when empty): the AOR's score in the expiry index.
local function earliest(set)
  if #set == 0 then return 0 end
  local min = set[1][EXP]
  for i = 2, #set do
    if set[i][EXP] < min then min = set[i][EXP] end
  end
  return min
end

-- What a rewrite (`old` -> `new`) changes in the indexes, without touching them:
-- { old earliest expiry, new earliest expiry (0: none), binding count delta,
--   connections to index (as stored, without the '=' marker), connections to unindex }.
-- A single server applies it at once (apply_index); a Redis Cluster node returns it, and the
-- caller applies it on the index keys' own slots (docs/REDIS.md, "Redis Cluster").
local function index_effects(old, new)
  local adds, removes, still = {}, {}, {}
  for _, b in ipairs(new) do
    local conn = b[CONN]
    if indexed(conn) and not still[conn] then
      still[conn] = true
      adds[#adds + 1] = string.sub(conn, 2)
    end
  end
  for _, b in ipairs(old) do
    local conn = b[CONN]
    if indexed(conn) and not still[conn] then
      still[conn] = true
      removes[#removes + 1] = string.sub(conn, 2)
    end
  end
  return { earliest(old), earliest(new), #new - #old, adds, removes }
end

-- Whether `set` has a binding over connection `conn`.
local function has_connection(set, conn)
  for _, b in ipairs(set) do
    if b[CONN] == conn then return true end
  end
  return false
end

-- Applies a rewrite (`old` -> `new`) of `aor` to the indexes on a single server: expiry index,
-- counter, connection sets. The same changes as index_effects, without building them as tables
-- and without the commands that change nothing:
-- - the expiry index holds a lower bound of the AOR's earliest expiry, not always the exact value
--   (docs/REDIS.md, "Expiry index"). A write that does not bring the earliest expiry forward
--   (a refresh, a removal) leaves the score alone: it is still at most the new earliest expiry.
--   A sweep visiting the AOR early finds nothing expired and sets the exact score (`exact`);
-- - a connection set gets the AOR only when the AOR did not already have a flow over it, and
--   loses it only when no binding is left over it.
local function apply_index(aor, old, new, exp_key, count_key, conn_prefix, exact)
  local old_min, new_min = earliest(old), earliest(new)
  if new_min == 0 then
    if old_min ~= 0 or exact then redis.call('ZREM', exp_key, aor) end
  elseif exact or old_min == 0 or new_min < old_min then
    redis.call('ZADD', exp_key, new_min, aor)
  end
  if #new ~= #old then redis.call('INCRBY', count_key, #new - #old) end
  for _, b in ipairs(new) do
    local conn = b[CONN]
    if indexed(conn) and not has_connection(old, conn) then
      redis.call('SADD', conn_prefix .. string.sub(conn, 2), aor)
    end
  end
  for _, b in ipairs(old) do
    local conn = b[CONN]
    if indexed(conn) and not has_connection(new, conn) then
      redis.call('SREM', conn_prefix .. string.sub(conn, 2), aor)
    end
  end
end

-- Replaces the stored bindings of `aor` (`old` -> `new`) on a single server, keeping the expiry
-- index, the binding counter and the connection index in step, in the same script (`exact`: see
-- apply_index). Returns the encoded new value ('' when the AOR has no binding left).
local function store_aor(aor_key, aor, old, new, exp_key, count_key, conn_prefix, closed_key, exact)
  local value = write_aor(aor_key, old, new, closed_key)
  apply_index(aor, old, new, exp_key, count_key, conn_prefix, exact)
  return value
end

-- The bindings of `old` that are not flows over connection `marker` ('=' .. scope:id), and the
-- latest expiry among the removed ones (nil when none was removed).
local function without_flow(old, marker)
  local kept, until_ms = {}, nil
  for _, b in ipairs(old) do
    if b[CONN] ~= marker then
      kept[#kept + 1] = b
    elseif until_ms == nil or b[EXP] > until_ms then
      until_ms = b[EXP]
    end
  end
  return kept, until_ms
end

-- The bindings of `old` that are still live at `now`.
local function live_at(old, now)
  local live = {}
  for _, b in ipairs(old) do
    if b[EXP] > now then live[#live + 1] = b end
  end
  return live
end

-- Fencing of owner writes (docs/REDIS.md, "Fenced writes"; crate::fence). A clustered node passes
-- its lease key (`<cluster prefix>node:<id>`) and the epoch it writes with; the write proceeds
-- only while the key holds that epoch, the rule of sipmesh-cluster's check_epoch. `lease_key`
-- nil (a single node) means unfenced.
local function fence_holds(lease_key, epoch)
  if lease_key == nil then return true end
  return redis.call('GET', lease_key) == epoch
end

-- Redis Cluster: the lease key lives in another hash slot, so a script cannot read it. Instead
-- each AOR (or dialog) keeps a fencing token in its own slot, a hash: field = the writer's lease
-- key (one per node), value = the highest lease epoch that node wrote this AOR with. A write
-- with a lower epoch than the recorded one is refused (an older incarnation of the same node
-- writing after a newer one did); otherwise the epoch is recorded. `token_key` nil: unfenced.
-- The token lives a day past the last fenced write (docs/REDIS.md, "Fenced writes in Cluster").
local TOKEN_TTL_MS = 86400000

local function fence_token_holds(token_key, field, epoch)
  if token_key == nil then return true end
  local seen = redis.call('HGET', token_key, field)
  if seen and tonumber(seen) > tonumber(epoch) then return false end
  redis.call('HSET', token_key, field, epoch)
  redis.call('PEXPIRE', token_key, TOKEN_TTL_MS)
  return true
end

local function stale_epoch()
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
