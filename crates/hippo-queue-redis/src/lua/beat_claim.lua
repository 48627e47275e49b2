-- Claim one tick of a beat entry: record it as the entry's last tick only if it is
-- newer than the stored one.
-- KEYS[1]  last-tick hash (entry name -> last tick, ms, decimal)
-- ARGV[1]  entry name
-- ARGV[2]  tick (ms, decimal; below 2^53, so exact as a Lua number)
-- Returns 1 when the caller owns the tick and must send it, 0 when it (or a newer
-- tick) was claimed already.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
