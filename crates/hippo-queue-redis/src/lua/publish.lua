-- Enqueue a batch of messages of one queue.
-- KEYS[1..10]  waiting lists, priority 0..9 (elements are message records)
-- KEYS[11]     delayed zset (eta ms -> record)
-- KEYS[12]     notify list (wake-up tokens for blocked fetchers)
-- ARGV         pairs: eta (ms since the epoch, 0 = now), record
-- An eta is compared with the server's clock.
-- Records are described in prelude.lua.
-- Blocked fetchers are woken when messages become ready, and when a delayed message
-- becomes the earliest one (so that they shorten their wait).
-- Returns the number of messages made ready now.
local now = server_ms()
local ready = 0
local earliest = nil
for i = 1, #ARGV, 2 do
  local eta = tonumber(ARGV[i])
  local rec = ARGV[i + 1]
  if eta > now then
    redis.call('ZADD', KEYS[11], eta, rec)
    if earliest == nil or eta < earliest then earliest = eta end
  else
    redis.call('RPUSH', waiting(rec), rec)
    ready = ready + 1
  end
end
if earliest ~= nil then
  local first = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
  if tonumber(first[2]) == earliest then wake(KEYS[12], 0) end
end
if ready > 0 then wake(KEYS[12], ready) end
return ready
