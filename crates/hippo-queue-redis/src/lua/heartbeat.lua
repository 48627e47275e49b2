-- Record that a worker is alive until the server's clock reaches now + ARGV[2] ms,
-- and watch the fleet's heartbeats for an outage.
-- KEYS[1]  worker deadlines (zset worker -> deadline ms, server clock)
-- KEYS[2]  fleet state (hash: last = last heartbeat of any worker, grace = no
--          worker is declared lost before this time, span = the longest ttl plus
--          interval seen), in KEYS[1]'s slot
-- KEYS[3]  incarnations (hash worker -> the incarnation holding the name), in
--          KEYS[1]'s slot
-- ARGV     worker, ttl ms, heartbeat interval ms, incarnation
-- A beat of another incarnation than the one holding the name is refused while the
-- holder's deadline runs (two processes started under one name).
-- When no worker could beat for two intervals (the server was down, loading,
-- read-only, out of memory or busy), every worker gets the longest lease of the fleet
-- to beat again before any is declared lost.
-- Returns { previous deadline, or -1 when the worker was not in the set (its first
-- beat, or it was recovered meanwhile), -2 when the name is taken (refused), -3 when
-- it was taken over from another incarnation past its deadline; server now ms }.
local now = server_ms()
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
local holder = redis.call('HGET', KEYS[3], ARGV[1])
local inherited = prev and holder and holder ~= ARGV[4]
if inherited and tonumber(prev) > now then
  return { -2, now }
end
local ttl = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local span = math.max(tonumber(redis.call('HGET', KEYS[2], 'span') or '0'), ttl + interval)
redis.call('HSET', KEYS[2], 'span', span)
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
if now - last > interval * 2 then
  local grace = tonumber(redis.call('HGET', KEYS[2], 'grace') or '0')
  if now + span > grace then
    redis.call('HSET', KEYS[2], 'grace', now + span)
  end
end
redis.call('HSET', KEYS[2], 'last', now)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if inherited then
  -- another incarnation held the name and missed its deadline: what it leased under
  -- the name is this caller's to recover
  return { -3, now }
end
return { tonumber(prev or '-1'), now }
