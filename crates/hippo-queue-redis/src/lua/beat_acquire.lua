-- Take the beat leader lease, or extend it when the caller holds it already.
-- KEYS[1]  leader key (string: holder's beat id, expires with the lease)
-- ARGV[1]  beat id
-- ARGV[2]  lease ttl (ms)
-- Returns 1 when the caller now holds the lease, 0 when another beat does.
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
