-- Recover up to ARGV[3] messages a dead worker held in one queue.
-- flags 3 (acks_late and reject_on_worker_lost): requeued, or dead-lettered once
-- delivered ARGV[2] times (such messages carry no start mark, so a delivery that
-- never started counts too: the price of one write less per task). Otherwise unstarted: requeued (not counted as a
-- delivery); started: dead-lettered as worker lost. A dead-lettered message is also
-- kept in the unrecorded hash until its FAILURE record is written (see
-- unrecorded.lua): a recoverer that dies before writing it leaves it to the next.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     the dead worker's lease hash
-- KEYS[12]     the dead worker's started set
-- KEYS[13]     set of workers holding leases in this queue
-- KEYS[14]     dead-letter list
-- KEYS[15]     notify list
-- KEYS[16]     unrecorded losses (hash token ->
--              '<server ms>:<outcome><worker length>:<worker><record>')
-- ARGV         worker, max deliveries, batch, dead-letter cap, max bytes (at least
--              one message is handled per call; the rest stay for the next call)
-- Returns { leases left, outcome (q|l|m), token, record, ... }.
local now = server_ms()
local pairs_ = redis.call('HRANDFIELD', KEYS[11], tonumber(ARGV[3]), 'WITHVALUES')
local out = { 0 }
local woken = false
local max = tonumber(ARGV[2])
local bytes = 0
for i = 1, #pairs_, 2 do
  local token = pairs_[i]
  local rec = pairs_[i + 1]
  if i > 1 and bytes + #rec > tonumber(ARGV[5]) then break end
  bytes = bytes + #rec
  redis.call('HDEL', KEYS[11], token)
  local started = redis.call('SREM', KEYS[12], token) == 1
  local outcome = 'q'
  if requeue_when_lost(rec) then
    if deliveries(rec) >= max then outcome = 'm' end
  elseif started then
    outcome = 'l'
  else
    rec = with_deliveries(rec, deliveries(rec) - 1)
  end
  if outcome == 'q' then
    redis.call('LPUSH', waiting(rec), rec)
    woken = true
  else
    local reason = 'worker lost'
    if outcome == 'm' then reason = 'delivered too many times' end
    dead_letter(KEYS[14], reason, rec, tonumber(ARGV[4]))
    redis.call('HSET', KEYS[16], token, now .. ':' .. outcome .. #ARGV[1] .. ':' .. ARGV[1] .. rec)
  end
  out[#out + 1] = outcome
  out[#out + 1] = token
  out[#out + 1] = rec
end
local left = redis.call('HLEN', KEYS[11])
if left == 0 then
  redis.call('DEL', KEYS[12])
  redis.call('SREM', KEYS[13], ARGV[1])
end
if woken then wake(KEYS[15], 1) end
out[1] = left
return out
