-- A dialog record written by a clustered node (docs/REDIS.md, "Fenced writes"): the same update
-- as the unfenced MULTI (old fields go, new fields and the expiry land together), done only while
-- the fence holds (fence_single.lua or fence_cluster.lua, prepended, defines fence_ok).
-- KEYS[1] dialog record, KEYS[2] the fence key: the lease key (<cluster prefix>node:<id>), or on a
-- Cluster this node's fencing token of the record
-- KEYS[3], KEYS[4] (single server only): this node's owner index `P by-owner:<lease key>` and the
-- set of all owner indexes `P owners` (docs/REDIS.md, "Dialog owner index"); the record moves
-- from its previous owner's index (its `owner` field) to this one.
-- ARGV[1] epoch, ARGV[2] key lifetime (ms), ARGV[3] role, ARGV[4..] field, value, ...
-- Roles (single server only; "Per-dialog owner claims"): `own` must hold the record's `claim`
-- (or create it, or replace a claim whose lease is gone or has another epoch), else the error
-- STALE_OWNER; `claim` takes the claim and the index entry, leaving the stored fields and expiry
-- alone (with no record it writes the given fields, as `own`); `visit` rewrites the fields but keeps `owner` and `claim`
-- (returns 0 and writes nothing when there is no record).
-- Returns 1 (or 0 as above), or the error STALE_EPOCH / STALE_OWNER (nothing written).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
local role = ARGV[3]
local previous = false
local claim = false
if KEYS[3] then
  previous = redis.call('HGET', KEYS[1], 'owner')
  claim = redis.call('HGET', KEYS[1], 'claim')
  if role == 'own' and claimed_by_other(claim) then
    return redis.error_reply('STALE_OWNER ' .. claim .. ' owns the dialog')
  end
  if role == 'visit' and redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
  end
end
if KEYS[3] and role == 'claim' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'owner', KEYS[3], 'claim', my_claim())
  if previous and previous ~= KEYS[3] then
    redis.call('SREM', previous, KEYS[1])
  end
  redis.call('SADD', KEYS[3], KEYS[1])
  redis.call('SADD', KEYS[4], KEYS[3])
  return 1
end
redis.call('DEL', KEYS[1])
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  if KEYS[3] and role == 'visit' then
    if previous then redis.call('HSET', KEYS[1], 'owner', previous) end
    if claim then redis.call('HSET', KEYS[1], 'claim', claim) end
  elseif KEYS[3] then
    redis.call('HSET', KEYS[1], 'owner', KEYS[3], 'claim', my_claim())
    if previous and previous ~= KEYS[3] then
      redis.call('SREM', previous, KEYS[1])
    end
    redis.call('SADD', KEYS[3], KEYS[1])
    redis.call('SADD', KEYS[4], KEYS[3])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif previous then
  redis.call('SREM', previous, KEYS[1])
end
return 1
