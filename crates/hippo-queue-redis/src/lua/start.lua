-- Mark leased messages as started.
-- KEYS[1]  lease hash
-- ARGV     worker, then pairs: id, token
-- Returns 1 per started message, 0 when the lease is gone (fenced).
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local ok = 0
  local l = redis.call('HGET', KEYS[1], id)
  if l then
    local token, _, w = string.match(l, '^(%d+)|(%d)|(.*)$')
    if token == ARGV[i + 1] and w == ARGV[1] then
      redis.call('HSET', KEYS[1], id, token .. '|1|' .. w)
      ok = 1
    end
  end
  out[#out + 1] = ok
end
return out
