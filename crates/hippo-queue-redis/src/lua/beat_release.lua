-- Give the beat leader lease up if the caller holds it.
-- KEYS[1]  leader key
-- ARGV[1]  beat id
-- Returns 1 when released, 0 when the caller did not hold it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
