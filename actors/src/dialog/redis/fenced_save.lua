-- A dialog record written by a clustered node (docs/REDIS.md, "Fenced writes"): the same update
-- as the unfenced MULTI (old fields go, new fields and the expiry land together), done only while
-- the fence holds (fence_single.lua or fence_cluster.lua, prepended, defines fence_ok).
-- KEYS[1] dialog record, KEYS[2] the fence key: the lease key (<cluster prefix>node:<id>), or on a
-- Cluster this node's fencing token of the record
-- KEYS[3], KEYS[4] (single server only): this node's owner index `P by-owner:<lease key>` and the
-- set of all owner indexes `P owners` (docs/REDIS.md, "Dialog owner index"); the record moves
-- from its previous owner's index (its `owner` field) to this one.
-- ARGV[1] epoch, ARGV[2] key lifetime (ms), ARGV[3] role, ARGV[4] the revision the writer last
-- saw ('' = unchecked), ARGV[5..] field, value, ...
-- Roles (single server only; "Per-dialog owner claims"): `own` must hold the record's `claim`
-- (or replace a claim whose lease is gone or has another epoch), else the error STALE_OWNER;
-- `claim` takes the claim and the index entry, leaving the stored fields, revision and expiry
-- alone; `visit` rewrites the fields but keeps `owner` and `claim`.
-- Ended dialogs stay ended ("Ended records are not re-created", single server and Cluster): only
-- the first save of a dialog (role `own`, no revision presented) creates a record. With no
-- record, `visit` writes nothing and returns 0; a `claim`, or an `own` write that presents a
-- revision (its writer loaded or wrote the record: it was removed since, after a BYE elsewhere,
-- or expired), writes nothing and returns -1.
-- Revisions ("Record revisions"): the `rev` field counts the writes of the fields; a write that
-- presents a revision (not a claim of a stored record) is refused with STALE_REV when the stored
-- record has another one, and every write of the fields stores the next one.
-- Returns the record's revision after the write (0: nothing written; -1: the record is gone,
-- the dialog ended), or the error STALE_EPOCH / STALE_OWNER / STALE_REV (nothing written).
if not fence_ok() then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
local role = ARGV[3]
local previous = false
local claim = false
local exists = redis.call('EXISTS', KEYS[1]) == 1
if KEYS[3] then
  previous = redis.call('HGET', KEYS[1], 'owner')
  claim = redis.call('HGET', KEYS[1], 'claim')
  if role == 'own' and claimed_by_other(claim) then
    return redis.error_reply('STALE_OWNER ' .. claim .. ' owns the dialog')
  end
end
if not exists then
  if role == 'visit' then return 0 end
  if role == 'claim' or ARGV[4] ~= '' then return -1 end
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0') or 0
if KEYS[3] and role == 'claim' and exists then
  redis.call('HSET', KEYS[1], 'owner', KEYS[3], 'claim', my_claim())
  if previous and previous ~= KEYS[3] then
    redis.call('SREM', previous, KEYS[1])
  end
  redis.call('SADD', KEYS[3], KEYS[1])
  redis.call('SADD', KEYS[4], KEYS[3])
  return rev
end
if exists and ARGV[4] ~= '' and tonumber(ARGV[4]) ~= rev then
  return redis.error_reply('STALE_REV the record is at revision ' .. rev)
end
rev = rev + 1
redis.call('DEL', KEYS[1])
if #ARGV > 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
  redis.call('HSET', KEYS[1], 'rev', rev)
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
  return 0
end
return rev
