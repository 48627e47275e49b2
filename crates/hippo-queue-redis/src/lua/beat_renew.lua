-- Extend the beat leader lease if the caller still holds it.
-- KEYS[1]  leader key
-- ARGV[1]  beat id
-- ARGV[2]  lease ttl (ms)
-- Returns 1 when extended, 0 when the lease expired or another beat holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
