-- Store task records of one result shard under the fencing rule: a ready record
-- (SUCCESS, FAILURE, REVOKED, REJECTED) is never replaced, and a write under an older
-- lease (fence) than the stored one is refused. Fence -1 means "no lease".
-- A stored value is "<STATE>|<fence>|<encoded record>".
-- KEYS[1]      the shard's history index (zset id -> expiry deadline ms)
-- KEYS[2..]    pairs: record key, waiter key (at most 256 pairs)
-- ARGV[1]      notification channel
-- ARGV[2]      largest stored value published with its announcement
-- ARGV[3]      1: trim the index of entries whose deadline passed (the caller asks
--              about once a second per shard), 0: leave it
-- ARGV[4..]    groups of 6: id, state, fence, ttl ms, announce (1|0), stored value
-- A ready record is published ("<id length>:<id><stored value>") when its sender
-- asked for it (announce) or a waiter key exists; a larger value is announced
-- without it ("<id length>:<id>"), and the waiter reads it back.
-- A stored record is indexed under its expiry deadline (the server's clock), all of a
-- call's records with one ZADD.
-- Returns 1 per stored record, 0 per refused one.
local final = { SUCCESS = true, FAILURE = true, REVOKED = true, REJECTED = true }
local waiter_keys = {}
for k = 3, #KEYS, 2 do
  waiter_keys[#waiter_keys + 1] = KEYS[k]
end
-- one look for the whole batch: is anyone waiting for one of these?
local watched = #waiter_keys > 0 and redis.call('EXISTS', unpack(waiter_keys)) > 0
local out = {}
local index = {}
local k = 2
local now = server_ms()
if ARGV[3] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
local announce_max = tonumber(ARGV[2])
for i = 4, #ARGV, 6 do
  local key = KEYS[k]
  local state = ARGV[i + 1]
  local value = ARGV[i + 5]
  local ok = 1
  -- the common case, a first record, in one call
  if not redis.call('SET', key, value, 'NX', 'PX', ARGV[i + 3]) then
    local fence = tonumber(ARGV[i + 2])
    local head = redis.call('GETRANGE', key, 0, 40)
    local cur, cf = string.match(head, '^(%u+)|(-?%d+)|')
    if cur and final[cur] then
      ok = 0
    elseif cf and fence >= 0 and tonumber(cf) >= 0 and fence < tonumber(cf) then
      ok = 0
    else
      redis.call('SET', key, value, 'PX', ARGV[i + 3])
    end
  end
  if ok == 1 then
    index[#index + 1] = now + tonumber(ARGV[i + 3])
    index[#index + 1] = ARGV[i]
  end
  if ok == 1 and final[state]
      and (ARGV[i + 4] == '1' or (watched and redis.call('EXISTS', KEYS[k + 1]) == 1)) then
    local id = ARGV[i]
    if #value > announce_max then value = '' end
    redis.call('PUBLISH', ARGV[1], #id .. ':' .. id .. value)
  end
  k = k + 2
  out[#out + 1] = ok
end
if #index > 0 then
  redis.call('ZADD', KEYS[1], unpack(index))
end
return out
