-- Pause or resume one queue, durably: while paused, fetch leases nothing from it
-- (workers stay up and keep their other queues). Resuming wakes blocked fetchers.
-- KEYS[1]      the queue's pause flag
-- KEYS[2]      notify list
-- ARGV[1]      1 to pause, 0 to resume
-- Returns 1 if the state changed, 0 if it already was so.
if ARGV[1] == '1' then
  if redis.call('SET', KEYS[1], server_ms(), 'NX') then return 1 end
  return 0
end
local changed = redis.call('DEL', KEYS[1])
if changed == 1 then wake(KEYS[2], 1) end
return changed
