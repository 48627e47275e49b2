-- Remove every waiting and delayed message of one queue. UNLINK frees the memory in
-- the background, so the script's own work is bounded whatever the backlog.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     delayed zset
-- Returns the number removed.
local n = redis.call('ZCARD', KEYS[11])
for p = 1, 10 do
  n = n + redis.call('LLEN', KEYS[p])
end
redis.call('UNLINK', unpack(KEYS))
return n
