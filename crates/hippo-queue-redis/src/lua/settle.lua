-- Settle leased messages: ack, retry (new envelope, delayed), dead-letter, requeue.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     message hash
-- KEYS[12]     delayed zset
-- KEYS[13]     lease hash
-- KEYS[14]     the worker's held set
-- KEYS[15]     delivery-count hash
-- KEYS[16]     dead-letter list
-- KEYS[17]     notify list
-- ARGV         now, worker, dead-letter cap, then groups of 5:
--              id, token, action (a|r|d|q), envelope or reason, eta
-- Returns 1 per settled message, 0 when the lease is gone (fenced).
local now = tonumber(ARGV[1])
local worker = ARGV[2]
local cap = tonumber(ARGV[3])
local out = {}
local wake = 0
for i = 4, #ARGV, 5 do
  local id = ARGV[i]
  local ok = 0
  local l = redis.call('HGET', KEYS[13], id)
  if l then
    local token, _, w = string.match(l, '^(%d+)|(%d)|(.*)$')
    if token == ARGV[i + 1] and w == worker then
      ok = 1
      redis.call('HDEL', KEYS[13], id)
      redis.call('SREM', KEYS[14], id)
      local action = ARGV[i + 2]
      local v = redis.call('HGET', KEYS[11], id)
      if action == 'a' then
        redis.call('HDEL', KEYS[11], id)
        redis.call('HDEL', KEYS[15], id)
      elseif action == 'r' then
        local head = v and string.sub(v, 1, 2) or string.char(0, 0)
        redis.call('HSET', KEYS[11], id, head .. ARGV[i + 3])
        redis.call('HDEL', KEYS[15], id)
        local eta = tonumber(ARGV[i + 4])
        if eta > now then
          redis.call('ZADD', KEYS[12], eta, id)
        else
          redis.call('RPUSH', KEYS[string.byte(head, 1) + 1], id)
          wake = 1
        end
      elseif action == 'd' then
        redis.call('HDEL', KEYS[11], id)
        redis.call('HDEL', KEYS[15], id)
        local body = v and string.sub(v, 3) or ''
        local reason = ARGV[i + 3]
        redis.call('RPUSH', KEYS[16], #id .. ':' .. id .. #reason .. ':' .. reason .. body)
        redis.call('LTRIM', KEYS[16], -cap, -1)
      elseif action == 'q' then
        if v then
          redis.call('LPUSH', KEYS[string.byte(v, 1) + 1], id)
          wake = 1
        end
      end
    end
  end
  out[#out + 1] = ok
end
if wake == 1 then
  redis.call('RPUSH', KEYS[17], 1)
  redis.call('LTRIM', KEYS[17], -16, -1)
end
return out
