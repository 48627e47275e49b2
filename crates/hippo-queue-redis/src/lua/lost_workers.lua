-- Name up to ARGV[1] workers whose deadline has passed on the server's clock, unless
-- the fleet is within its grace period after an outage (see heartbeat.lua).
-- KEYS[1]  worker deadlines (zset)
-- KEYS[2]  fleet state (hash), in KEYS[1]'s slot
-- ARGV     most workers to name
-- Returns the workers' names.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(redis.call('HGET', KEYS[2], 'grace') or '0')
if now < grace then
  return {}
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))
