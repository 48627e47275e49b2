-- Enqueue a batch of messages of one queue.
-- KEYS[1..10]  waiting lists, priority 0..9 (elements are message records)
-- KEYS[11]     delayed zset (eta ms -> record)
-- KEYS[12]     notify list (wake-up tokens for blocked fetchers)
-- ARGV         pairs: eta (ms since the epoch, 0 = now), record
-- An eta is compared with the server's clock.
-- A record is: priority byte, flags byte, deliveries byte, id length (2 bytes, big
-- endian), id, envelope.
-- Blocked fetchers are woken when messages become ready, and when a delayed message
-- becomes the earliest one (so that they shorten their wait).
-- Returns the number of messages made ready now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready = 0
local earliest = nil
for i = 1, #ARGV, 2 do
  local eta = tonumber(ARGV[i])
  local rec = ARGV[i + 1]
  if eta > now then
    redis.call('ZADD', KEYS[11], eta, rec)
    if earliest == nil or eta < earliest then earliest = eta end
  else
    redis.call('RPUSH', KEYS[string.byte(rec, 1) + 1], rec)
    ready = ready + 1
  end
end
if earliest ~= nil then
  local first = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
  if tonumber(first[2]) == earliest then
    redis.call('RPUSH', KEYS[12], 0)
    redis.call('LTRIM', KEYS[12], -16, -1)
  end
end
if ready > 0 then
  redis.call('RPUSH', KEYS[12], ready)
  redis.call('LTRIM', KEYS[12], -16, -1)
end
return ready
