-- An example fenced write (and the test of check_epoch): SET KEYS[1] ARGV[4] only when ARGV[3]
-- is node ARGV[2]'s current lease epoch under prefix ARGV[1]; error STALE_EPOCH otherwise.
if not check_epoch(ARGV[1], ARGV[2], ARGV[3]) then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
redis.call('SET', KEYS[1], ARGV[4])
return 1
