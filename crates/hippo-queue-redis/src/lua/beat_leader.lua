-- Read the beat leader lease.
-- KEYS[1]  leader key
-- Returns {holder, remaining ttl ms}, or an empty array when nobody holds it.
local holder = redis.call('GET', KEYS[1])
if not holder then
  return {}
end
return {holder, redis.call('PTTL', KEYS[1])}
