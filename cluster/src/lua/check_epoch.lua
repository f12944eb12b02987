-- Fencing check for owner writes. Prepend to a store script and call
--   check_epoch(prefix, node_id, epoch)
-- before writing: true only while `epoch` is the node's current lease epoch, so a stale owner
-- (an older incarnation, or a node whose lease lapsed) cannot overwrite the new owner's state.
local function check_epoch(prefix, node, epoch)
  local current = redis.call('GET', prefix .. 'node:' .. node)
  return current ~= false and current == tostring(epoch)
end
