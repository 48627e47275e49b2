-- Hand reserved, unstarted messages back to the head of their waiting list.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     the worker's lease hash
-- KEYS[12]     the worker's started set
-- KEYS[13]     notify list
-- ARGV         tokens, last reserved first
local n = 0
for i = 1, #ARGV do
  local token = ARGV[i]
  local rec = redis.call('HGET', KEYS[11], token)
  if rec and redis.call('SISMEMBER', KEYS[12], token) == 0 then
    redis.call('HDEL', KEYS[11], token)
    redis.call('LPUSH', waiting(rec), with_deliveries(rec, deliveries(rec) - 1))
    n = n + 1
  end
end
if n > 0 then wake(KEYS[13], n) end
return n
