-- How long a worker name has left before it is declared lost, on the server's clock.
-- KEYS[1]  worker deadlines (zset)
-- ARGV     worker
-- Returns ms left (0 when the deadline has passed), or -1 when the name is unknown.
local now = server_ms()
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then
  return -1
end
return math.max(0, tonumber(deadline) - now)
