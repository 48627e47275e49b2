-- Hand reserved, unstarted messages back to the head of their waiting list.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     message hash
-- KEYS[12]     lease hash
-- KEYS[13]     the worker's held set
-- KEYS[14]     delivery-count hash
-- KEYS[15]     notify list
-- ARGV         worker, then pairs: id, token (last reserved first)
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local l = redis.call('HGET', KEYS[12], id)
  if l then
    local token, started, w = string.match(l, '^(%d+)|(%d)|(.*)$')
    if token == ARGV[i + 1] and w == ARGV[1] and started == '0' then
      redis.call('HDEL', KEYS[12], id)
      redis.call('SREM', KEYS[13], id)
      redis.call('HINCRBY', KEYS[14], id, -1)
      local v = redis.call('HGET', KEYS[11], id)
      if v then
        redis.call('LPUSH', KEYS[string.byte(v, 1) + 1], id)
        n = n + 1
      end
    end
  end
end
if n > 0 then
  redis.call('RPUSH', KEYS[15], n)
  redis.call('LTRIM', KEYS[15], -16, -1)
end
return n
