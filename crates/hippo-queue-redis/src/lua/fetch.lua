-- Lease up to ARGV[1] messages (and at most ARGV[4] bytes of them, at least one) of
-- one queue to a worker, highest priority first, FIFO within a priority, after moving
-- at most ARGV[3] due delayed messages to their waiting lists. Due times are read on
-- the server's clock.
-- KEYS[1..10]  waiting lists, priority 0..9
-- KEYS[11]     delayed zset
-- KEYS[12]     the worker's lease hash (token -> record)
-- KEYS[13]     fencing-token counter
-- KEYS[14]     set of workers holding leases in this queue
-- KEYS[15]     dead-letter list
-- KEYS[16]     the queue's pause flag: while it exists nothing is leased (due delayed
--              messages still move to their waiting lists)
-- ARGV         max, worker, due batch, max bytes, dead-letter cap
-- Every record is checked before it is leased or moved: one that is not a message
-- record (written by something else, or corrupt) goes to the dead letters and the
-- others are served as usual, so nothing is lost on a bad record.
-- Returns { ms until the next delayed message is due or -1, first token, record,
-- record, ... }; the records' delivery counts are already increased, and their tokens
-- are consecutive.
local now = server_ms()
local max = tonumber(ARGV[1])
local max_bytes = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])

local function dead(rec, reason)
  dead_letter(KEYS[15], reason, rec, cap)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[11], 0, #due - 1)
  for _, rec in ipairs(due) do
    local why = malformed(rec)
    if why then
      dead(rec, why)
    else
      redis.call('RPUSH', waiting(rec), rec)
    end
  end
end

local recs = {}
local bytes = 0
-- Popped in chunks, so that the script never holds much more than the byte budget.
local function pop(key)
  local got = redis.call('LPOP', key, math.min(64, max - #recs))
  if not got then return false end
  for i, rec in ipairs(got) do
    if #recs > 0 and bytes + #rec > max_bytes then
      -- over the byte budget: the rest goes back to the head, in order
      for j = #got, i, -1 do
        redis.call('LPUSH', key, got[j])
      end
      bytes = max_bytes
      return false
    end
    local why = malformed(rec)
    if why then
      dead(rec, why)
    else
      recs[#recs + 1] = rec
      bytes = bytes + #rec
    end
  end
  return true
end

if redis.call('EXISTS', KEYS[16]) == 0 then
  for p = 9, 0, -1 do
    while #recs < max and bytes < max_bytes and pop(KEYS[p + 1]) do end
    if #recs >= max or bytes >= max_bytes then break end
  end
end

-- Takes #recs consecutive tokens. The counter only starts again from zero if it was
-- lost (evicted, deleted): a repeated token would overwrite a lease a worker still
-- holds, so a counter that has just been created is first moved past this worker's
-- leases and past the server's clock in microseconds (beyond any count the lost
-- counter can have reached, and beyond an earlier restart's).
local function take_tokens(n)
  local last = redis.call('INCRBY', KEYS[13], n)
  if last ~= n then return last - n + 1 end
  -- restarted: above this worker's leases and above the server's clock in
  -- microseconds, which grows faster than any counter of messages
  local clock = redis.call('TIME')
  local top = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  for _, t in ipairs(redis.call('HKEYS', KEYS[12])) do
    top = math.max(top, tonumber(t))
  end
  redis.call('SET', KEYS[13], string.format('%d', top))
  return redis.call('INCRBY', KEYS[13], n) - n + 1
end

local out = { -1, 0 }
if #recs > 0 then
  local first = take_tokens(#recs)
  out[2] = first
  local fields = {}
  for i, rec in ipairs(recs) do
    local leased = with_deliveries(rec, deliveries(rec) + 1)
    fields[#fields + 1] = first + i - 1
    fields[#fields + 1] = leased
    out[#out + 1] = leased
  end
  redis.call('HSET', KEYS[12], unpack(fields))
  redis.call('SADD', KEYS[14], ARGV[2])
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end
return out
