-- Shared by the queue scripts (prepended to each one when it is loaded).
--
-- A message record is: priority byte (0-9), flags byte (1 acks_late, 2
-- reject_on_worker_lost), deliveries byte, id length (2 bytes, big endian), id,
-- envelope. The waiting lists of priority 0..9 are always KEYS[1..10].

-- The server's clock in ms.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The waiting list of a record's priority.
local function waiting(rec)
  return KEYS[string.byte(rec, 1) + 1]
end

-- A record's delivery count.
local function deliveries(rec)
  return string.byte(rec, 3)
end

-- The record with another delivery count (kept within 0..255).
local function with_deliveries(rec, d)
  return string.sub(rec, 1, 2) .. string.char(math.max(0, math.min(255, d))) .. string.sub(rec, 4)
end

-- The record's header and id (priority, flags, deliveries, id length, id).
local function head_and_id(rec)
  return string.sub(rec, 1, 5 + string.byte(rec, 4) * 256 + string.byte(rec, 5))
end

-- Whether the record has both acks_late and reject_on_worker_lost: requeued when
-- its worker is lost, started or not.
local function requeue_when_lost(rec)
  return string.byte(rec, 2) % 4 == 3
end

-- nil when the record is well formed, else why it is not.
local function malformed(rec)
  if type(rec) ~= 'string' or #rec < 5 then return 'corrupt record: too short' end
  if string.byte(rec, 1) > 9 then return 'corrupt record: priority byte out of range' end
  if string.byte(rec, 2) > 3 then return 'corrupt record: unknown flags' end
  if 5 + string.byte(rec, 4) * 256 + string.byte(rec, 5) > #rec then
    return 'corrupt record: id longer than the record'
  end
  return nil
end

-- Appends a record to a dead-letter list with its reason, keeping the newest `cap`.
local function dead_letter(list, reason, rec, cap)
  redis.call('RPUSH', list, #reason .. ':' .. reason .. rec)
  redis.call('LTRIM', list, -cap, -1)
end

-- Wakes blocked fetchers: `n` messages are ready (0: the earliest due time moved).
local function wake(notify, n)
  redis.call('RPUSH', notify, n)
  redis.call('LTRIM', notify, -16, -1)
end

