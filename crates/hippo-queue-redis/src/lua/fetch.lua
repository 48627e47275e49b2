-- Lease up to ARGV[2] messages of one queue to a worker, highest priority first,
-- FIFO within a priority, after moving at most ARGV[4] due delayed messages to
-- their waiting lists.
-- KEYS[1..10]  waiting lists, priority 0..9
-- KEYS[11]     delayed zset
-- KEYS[12]     the worker's lease hash (token -> record)
-- KEYS[13]     fencing-token counter
-- KEYS[14]     set of workers holding leases in this queue
-- ARGV         now, max, worker, due batch
-- Returns { next due eta or -1, first token, record, record, ... }; the records'
-- delivery counts are already increased, and their tokens are consecutive.
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[11], 0, #due - 1)
  for _, rec in ipairs(due) do
    redis.call('RPUSH', KEYS[string.byte(rec, 1) + 1], rec)
  end
end
local recs = {}
for p = 9, 0, -1 do
  if #recs >= max then break end
  local got = redis.call('LPOP', KEYS[p + 1], max - #recs)
  if got then
    for _, rec in ipairs(got) do recs[#recs + 1] = rec end
  end
end
local out = { -1, 0 }
if #recs > 0 then
  local last = redis.call('INCRBY', KEYS[13], #recs)
  local first = last - #recs + 1
  out[2] = first
  local fields = {}
  for i, rec in ipairs(recs) do
    local d = string.byte(rec, 3)
    if d < 255 then d = d + 1 end
    local leased = string.sub(rec, 1, 2) .. string.char(d) .. string.sub(rec, 4)
    fields[#fields + 1] = first + i - 1
    fields[#fields + 1] = leased
    out[#out + 1] = leased
  end
  redis.call('HSET', KEYS[12], unpack(fields))
  redis.call('SADD', KEYS[14], ARGV[3])
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = nxt[2] end
return out
