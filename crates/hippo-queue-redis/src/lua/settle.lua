-- Settle leased messages: ack, retry (new envelope, delayed), dead-letter, requeue.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     delayed zset
-- KEYS[12]     the worker's lease hash
-- KEYS[13]     the worker's started set
-- KEYS[14]     dead-letter list
-- KEYS[15]     notify list
-- ARGV         now, dead-letter cap, then groups of 4: token, action (a|r|d|q),
--              data (r: the new envelope; d: the reason), eta (r)
-- Returns 1 per settled message, 0 when the lease is gone (fenced).
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local out = {}
local tokens = {}
local wake = 0
for i = 3, #ARGV, 4 do
  local token = ARGV[i]
  local action = ARGV[i + 1]
  local ok = 0
  if action == 'a' then
    ok = redis.call('HDEL', KEYS[12], token)
  else
    local rec = redis.call('HGET', KEYS[12], token)
    if rec then
      ok = 1
      redis.call('HDEL', KEYS[12], token)
      if action == 'r' then
        -- same priority, flags and id; delivery count reset; new envelope
        local idlen = string.byte(rec, 4) * 256 + string.byte(rec, 5)
        local new = string.sub(rec, 1, 2) .. string.char(0) .. string.sub(rec, 4, 5 + idlen) .. ARGV[i + 2]
        local eta = tonumber(ARGV[i + 3])
        if eta > now then
          redis.call('ZADD', KEYS[11], eta, new)
          local first = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
          if tonumber(first[2]) == eta then wake = 1 end
        else
          redis.call('RPUSH', KEYS[string.byte(new, 1) + 1], new)
          wake = 1
        end
      elseif action == 'd' then
        local reason = ARGV[i + 2]
        redis.call('RPUSH', KEYS[14], #reason .. ':' .. reason .. rec)
        redis.call('LTRIM', KEYS[14], -cap, -1)
      else
        redis.call('LPUSH', KEYS[string.byte(rec, 1) + 1], rec)
        wake = 1
      end
    end
  end
  tokens[#tokens + 1] = token
  out[#out + 1] = ok
end
if #tokens > 0 then
  redis.call('SREM', KEYS[13], unpack(tokens))
end
if wake == 1 then
  redis.call('RPUSH', KEYS[15], 1)
  redis.call('LTRIM', KEYS[15], -16, -1)
end
return out
