-- Several REGISTERs in one call, single server or Sentinel layout (a Cluster keeps one call per
-- AOR: the keys of one call must share a hash slot). Each is applied as register.lua applies
-- one, in argument order, so two REGISTERs for one AOR both apply, in order; the fixed cost of a
-- call (~21,500 instructions, docs/REDIS.md "Script cost") is paid once per batch.
--
-- KEYS[1] expiry index, KEYS[2] binding counter, then per REGISTER its AOR value key and its
-- closed-flows marker, then (only when fenced) this node's lease key.
-- ARGV[1] connection-index key prefix, ARGV[2] the fencing epoch ('' when unfenced), then per
-- REGISTER: now (ms), mode, Call-ID, CSeq, max contacts, AOR, the number of Contacts, and
-- one argument per Contact (as register.lua's ARGV[1..6] and ARGV[9..]).
-- Returns one reply per REGISTER, in order: register.lua's ({'OK', changed, value}, the new value
-- alone, {'CSEQ'}, {'MAX'}), or {'ERR', message} when that REGISTER raised an error (the others
-- still apply);
-- or the error STALE_EPOCH (nothing written) when the fence does not hold: checked once.

local conn_prefix, epoch = ARGV[1], ARGV[2]
if epoch ~= '' and not fence_holds(KEYS[#KEYS], epoch) then return stale_epoch() end
local exp_key, count_key = KEYS[1], KEYS[2]

-- One REGISTER whose arguments start at ARGV[a] and whose Contacts end at ARGV[last].
local function register_one(aor_key, closed_key, a, last, now)
  local stored = redis.call('GET', aor_key)
  local value = refresh_value(stored, now, ARGV[a + 1], ARGV[a + 2], a + 7, last)
  if value == 'CSEQ' then return { 'CSEQ' } end
  if value then
    redis.call('SET', aor_key, value)
    return value
  end
  local status, old, working =
    register_rules(stored, now, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], a + 7, last)
  if status == 'CSEQ' or status == 'MAX' then return { status } end
  if status then
    local aor = ARGV[a + 5]
    return { 'OK', 1, store_aor(aor_key, aor, old, working, exp_key, count_key, conn_prefix, closed_key) }
  end
  return { 'OK', 0, encode_set(working) }
end

local replies = {}
local k, a, n = 3, 3, #ARGV
-- The REGISTERs of one batch mostly share their `now` (ms): it is parsed (strtod) once per
-- distinct value.
local now_arg, now
while a <= n do
  if ARGV[a] ~= now_arg then now_arg, now = ARGV[a], tonumber(ARGV[a]) end
  -- Almost always one Contact: '1' is compared, not parsed (tonumber is a strtod).
  local count = ARGV[a + 6]
  local last = a + 6 + (count == '1' and 1 or tonumber(count))
  local ok, reply = pcall(register_one, KEYS[k], KEYS[k + 1], a, last, now)
  if not ok then
    reply = { 'ERR', type(reply) == 'table' and tostring(reply.err) or tostring(reply) }
  end
  replies[#replies + 1] = reply
  k, a = k + 2, last + 1
end
return replies
