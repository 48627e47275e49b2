-- Mark leased messages as started.
-- KEYS[1]  the worker's lease hash
-- KEYS[2]  the worker's started set
-- ARGV     tokens
-- Returns 1 per started message, 0 when the lease is gone (fenced).
local out = {}
local started = {}
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    started[#started + 1] = ARGV[i]
    out[i] = 1
  else
    out[i] = 0
  end
end
if #started > 0 then
  redis.call('SADD', KEYS[2], unpack(started))
end
return out
