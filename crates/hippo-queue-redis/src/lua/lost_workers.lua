-- Claim up to ARGV[1] workers whose deadline has passed on the server's clock, unless
-- the fleet is within its grace period after an outage (see heartbeat.lua): each is
-- removed from the deadlines in the same step, so a worker that beats again after
-- this learns it was recovered (its heartbeat finds itself missing), and no second
-- recoverer claims it.
-- KEYS[1]  worker deadlines (zset)
-- KEYS[2]  fleet state (hash), in KEYS[1]'s slot
-- KEYS[3]  incarnations (hash), in KEYS[1]'s slot
-- ARGV     most workers to claim
-- Returns { 1 while in the grace period, else 0; the claimed workers... }.
local now = server_ms()
local grace = tonumber(redis.call('HGET', KEYS[2], 'grace') or '0')
if now < grace then
  return { 1 }
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
local out = { 0 }
for _, w in ipairs(dead) do out[#out + 1] = w end
return out
