-- Mark leased messages as started.
-- KEYS[1]  the worker's lease hash
-- KEYS[2]  the worker's started set
-- ARGV     tokens, at most 1,000 (the caller splits larger batches)
-- Returns 1 per started message, 0 when the lease is gone (fenced).
local out = {}
local started = {}
local held = redis.call('HMGET', KEYS[1], unpack(ARGV))
for i = 1, #ARGV do
  if held[i] then
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
