-- Removes every flow binding registered over one connection (its flow died, RFC 5626 §5.4), using
-- the connection index instead of a scan.
--
-- KEYS[1] expiry index, KEYS[2] binding counter
-- ARGV[1] connection (as stored, without the '=' marker), ARGV[2] AOR key prefix,
-- ARGV[3] connection-index prefix
-- Returns the number of bindings removed.

local marker = '=' .. ARGV[1]
local index = ARGV[3] .. ARGV[1]
local removed = 0
for _, aor in ipairs(redis.call('SMEMBERS', index)) do
  local key = ARGV[2] .. aor
  local old = decode_set(redis.call('GET', key))
  local kept = {}
  for _, b in ipairs(old) do
    if b[CONN] ~= marker then kept[#kept + 1] = b end
  end
  if #kept ~= #old then
    removed = removed + #old - #kept
    store_aor(key, aor, old, kept, KEYS[1], KEYS[2], ARGV[3])
  end
end
redis.call('DEL', index)
return removed
