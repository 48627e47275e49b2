-- Store task records of one result shard under the fencing rule: a ready record
-- (SUCCESS, FAILURE, REVOKED, REJECTED) is never replaced, and a write under an older
-- lease (fence) than the stored one is refused. Fence -1 means "no lease".
-- KEYS         pairs: record hash, waiter key
-- ARGV[1]      notification channel
-- ARGV[2..]    groups of 6: id, state, fence, ready (0|1), ttl ms, encoded record
-- A ready record is announced on the channel when a waiter key exists.
-- Returns 1 per stored record, 0 per refused one.
local final = { SUCCESS = true, FAILURE = true, REVOKED = true, REJECTED = true }
local out = {}
local k = 1
for i = 2, #ARGV, 6 do
  local key = KEYS[k]
  local waiter = KEYS[k + 1]
  k = k + 2
  local cur = redis.call('HMGET', key, 's', 'f')
  local fence = tonumber(ARGV[i + 2])
  local ok = 1
  if cur[1] and final[cur[1]] then
    ok = 0
  elseif cur[2] and fence >= 0 and tonumber(cur[2]) >= 0 and fence < tonumber(cur[2]) then
    ok = 0
  end
  if ok == 1 then
    redis.call('HSET', key, 's', ARGV[i + 1], 'f', ARGV[i + 2], 'd', ARGV[i + 5])
    redis.call('PEXPIRE', key, ARGV[i + 4])
    if ARGV[i + 3] == '1' and redis.call('EXISTS', waiter) == 1 then
      redis.call('PUBLISH', ARGV[1], ARGV[i])
    end
  end
  out[#out + 1] = ok
end
return out
