-- Remove up to ARGV[1] waiting and delayed messages of one queue.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     message hash
-- KEYS[12]     delayed zset
-- KEYS[13]     delivery-count hash
-- Returns the number removed (call again until 0).
local batch = tonumber(ARGV[1])
local n = 0
local function drop(id)
  redis.call('HDEL', KEYS[11], id)
  redis.call('HDEL', KEYS[13], id)
  n = n + 1
end
for p = 1, 10 do
  if n >= batch then break end
  local ids = redis.call('LPOP', KEYS[p], batch - n)
  if ids then
    for _, id in ipairs(ids) do drop(id) end
  end
end
if n < batch then
  local d = redis.call('ZPOPMIN', KEYS[12], batch - n)
  for i = 1, #d, 2 do drop(d[i]) end
end
return n
