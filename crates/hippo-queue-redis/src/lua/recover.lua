-- Recover up to ARGV[3] messages a dead worker held in one queue.
-- Unstarted: requeued. Started with acks_late and reject_on_worker_lost (flags 3):
-- requeued, or dead-lettered once delivered ARGV[2] times. Other started ones:
-- dead-lettered as worker lost.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     message hash
-- KEYS[12]     lease hash
-- KEYS[13]     the dead worker's held set
-- KEYS[14]     delivery-count hash
-- KEYS[15]     dead-letter list
-- KEYS[16]     notify list
-- ARGV         worker, max deliveries, batch, dead-letter cap
-- Returns { ids still held, id, outcome (q|l|m), envelope, ... }.
local ids = redis.call('SPOP', KEYS[13], tonumber(ARGV[3]))
local out = { 0 }
local wake = 0
for _, id in ipairs(ids) do
  local l = redis.call('HGET', KEYS[12], id)
  if l then
    local _, started, w = string.match(l, '^(%d+)|(%d)|(.*)$')
    local v = redis.call('HGET', KEYS[11], id)
    if w == ARGV[1] and v then
      redis.call('HDEL', KEYS[12], id)
      local outcome = 'q'
      if started == '0' then
        redis.call('HINCRBY', KEYS[14], id, -1)
      elseif string.byte(v, 2) % 4 ~= 3 then
        outcome = 'l'
      elseif tonumber(redis.call('HGET', KEYS[14], id) or '0') >= tonumber(ARGV[2]) then
        outcome = 'm'
      end
      local body = string.sub(v, 3)
      if outcome == 'q' then
        redis.call('LPUSH', KEYS[string.byte(v, 1) + 1], id)
        wake = 1
      else
        redis.call('HDEL', KEYS[11], id)
        redis.call('HDEL', KEYS[14], id)
        local reason = 'worker lost'
        if outcome == 'm' then reason = 'delivered too many times' end
        redis.call('RPUSH', KEYS[15], #id .. ':' .. id .. #reason .. ':' .. reason .. body)
        redis.call('LTRIM', KEYS[15], -tonumber(ARGV[4]), -1)
      end
      out[#out + 1] = id
      out[#out + 1] = outcome
      out[#out + 1] = body
    end
  end
end
if wake == 1 then
  redis.call('RPUSH', KEYS[16], 1)
  redis.call('LTRIM', KEYS[16], -16, -1)
end
out[1] = redis.call('SCARD', KEYS[13])
return out
