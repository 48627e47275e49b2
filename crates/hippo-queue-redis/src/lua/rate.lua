-- Take a start slot of a rate-limited task (GCRA, no burst): starts are spaced at
-- least ARGV[1] ms apart across every worker.
-- KEYS[1]  the task's next allowed start (ms)
-- ARGV     interval (ms); the server's clock is used
-- Returns 0 when the task may start now, else the ms to wait.
local now = server_ms()
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then
  return tat - now
end
local nxt = math.max(tat, now) + interval
redis.call('SET', KEYS[1], nxt, 'PX', interval * 2 + 1000)
return 0
