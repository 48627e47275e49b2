-- Forget a worker name (its deadline and incarnation), fenced:
-- with an incarnation (a worker leaving): only if that incarnation holds the name, or
-- nobody does; without one (after recovery claimed a dead worker): only if nobody
-- has claimed the name again since.
-- KEYS[1]  worker deadlines (zset)
-- KEYS[2]  incarnations (hash), in KEYS[1]'s slot
-- ARGV     worker, incarnation ('' for none)
-- Returns 1 when the name was forgotten (the caller may then clean up what it
-- indexes), 0 when another holder has it.
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] ~= '' then
  if holder and holder ~= ARGV[2] then return 0 end
else
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
