-- Every registered member with its lease: a flat array id, address, epoch ('' when no lease),
-- remaining lease time in ms (-2 when no lease).
-- KEYS[1] registry (P members); ARGV[1] key prefix P.
local out = {}
local members = redis.call('HGETALL', KEYS[1])
for i = 1, #members, 2 do
  local id = members[i]
  local lease_key = ARGV[1] .. 'node:' .. id
  local epoch = redis.call('GET', lease_key)
  out[#out + 1] = id
  out[#out + 1] = members[i + 1]
  out[#out + 1] = epoch or ''
  out[#out + 1] = redis.call('PTTL', lease_key)
end
return out
