-- Enqueue a batch of messages of one queue.
-- KEYS[1..10]  waiting lists, priority 0..9
-- KEYS[11]     message hash (id -> prio byte, flags byte, envelope)
-- KEYS[12]     delayed zset (eta ms -> id)
-- KEYS[13]     notify list (wake-up tokens for blocked fetchers)
-- ARGV[1]      now (ms)
-- ARGV[2..]    groups of 5: id, priority, flags, eta (ms, 0 = now), envelope
-- A message whose id is already stored is not enqueued twice.
-- Returns the number of messages made ready now.
local now = tonumber(ARGV[1])
local ready = 0
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  local prio = tonumber(ARGV[i + 1])
  local eta = tonumber(ARGV[i + 3])
  if redis.call('HSETNX', KEYS[11], id, string.char(prio, tonumber(ARGV[i + 2])) .. ARGV[i + 4]) == 1 then
    if eta > now then
      redis.call('ZADD', KEYS[12], eta, id)
    else
      redis.call('RPUSH', KEYS[prio + 1], id)
      ready = ready + 1
    end
  end
end
if ready > 0 then
  redis.call('RPUSH', KEYS[13], ready)
  redis.call('LTRIM', KEYS[13], -16, -1)
end
return ready
