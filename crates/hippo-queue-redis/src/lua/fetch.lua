-- Lease up to ARGV[2] messages of one queue to a worker, highest priority first,
-- FIFO within a priority, after moving at most ARGV[4] due delayed messages to
-- their waiting lists.
-- KEYS[1..10]  waiting lists, priority 0..9
-- KEYS[11]     message hash
-- KEYS[12]     delayed zset
-- KEYS[13]     lease hash (id -> "token|started|worker")
-- KEYS[14]     the worker's held set
-- KEYS[15]     fencing-token counter
-- KEYS[16]     delivery-count hash
-- ARGV         now, max, worker, due batch
-- Returns { next due eta or -1, id, message, token, deliveries, ... }.
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local worker = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', KEYS[12], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[12], id)
  local v = redis.call('HGET', KEYS[11], id)
  if v then
    redis.call('RPUSH', KEYS[string.byte(v, 1) + 1], id)
  end
end
local out = { -1 }
local n = 0
for p = 9, 0, -1 do
  if n >= max then break end
  local ids = redis.call('LPOP', KEYS[p + 1], max - n)
  if ids then
    for _, id in ipairs(ids) do
      local v = redis.call('HGET', KEYS[11], id)
      if v then
        local token = redis.call('INCR', KEYS[15])
        local d = redis.call('HINCRBY', KEYS[16], id, 1)
        redis.call('HSET', KEYS[13], id, token .. '|0|' .. worker)
        redis.call('SADD', KEYS[14], id)
        out[#out + 1] = id
        out[#out + 1] = v
        out[#out + 1] = token
        out[#out + 1] = d
        n = n + 1
      end
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = nxt[2] end
return out
