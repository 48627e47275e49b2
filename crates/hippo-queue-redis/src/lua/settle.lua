-- Settle leased messages: ack, retry (new envelope, delayed), dead-letter, requeue.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     delayed zset
-- KEYS[12]     the worker's lease hash
-- KEYS[13]     the worker's started set
-- KEYS[14]     dead-letter list
-- KEYS[15]     notify list
-- ARGV         dead-letter cap, then groups of 4: token, action (a|r|d|q),
--              data (r: the new envelope; d: the reason), eta (r)
-- At most 1,000 groups per call (the caller splits larger batches).
-- Returns 1 per settled message, 0 when the lease is gone (fenced).
local now = server_ms()
local cap = tonumber(ARGV[1])
local tokens = {}
for i = 2, #ARGV, 4 do
  tokens[#tokens + 1] = ARGV[i]
end
if #tokens == 0 then
  return {}
end
-- one read and one delete for the whole batch
local recs = redis.call('HMGET', KEYS[12], unpack(tokens))
local out = {}
local held = {}
local woken = false
for n, token in ipairs(tokens) do
  local i = 2 + (n - 1) * 4
  local action = ARGV[i + 1]
  local rec = recs[n]
  if rec then
    held[#held + 1] = token
    if action == 'r' then
      -- same priority, flags and id; delivery count reset; new envelope
      local new = with_deliveries(head_and_id(rec), 0) .. ARGV[i + 2]
      local eta = tonumber(ARGV[i + 3])
      if eta > now then
        redis.call('ZADD', KEYS[11], eta, new)
        local first = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
        if tonumber(first[2]) == eta then woken = true end
      else
        redis.call('RPUSH', waiting(new), new)
        woken = true
      end
    elseif action == 'd' then
      dead_letter(KEYS[14], ARGV[i + 2], rec, cap)
    elseif action == 'q' then
      redis.call('LPUSH', waiting(rec), rec)
      woken = true
    end
    out[n] = 1
  else
    out[n] = 0
  end
end
if #held > 0 then
  redis.call('HDEL', KEYS[12], unpack(held))
end
redis.call('SREM', KEYS[13], unpack(tokens))
if woken then wake(KEYS[15], 1) end
return out
