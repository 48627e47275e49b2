-- Store task records of one result shard under the fencing rule: a ready record
-- (SUCCESS, FAILURE, REVOKED, REJECTED) is never replaced, and a write under an older
-- lease (fence) than the stored one is refused. Fence -1 means "no lease".
-- A stored value is "<STATE>|<fence>|<encoded record>".
-- KEYS         pairs: record key, waiter key
-- ARGV[1]      notification channel
-- ARGV[2..]    groups of 6: id, state, fence, ttl ms, announce (1|0), encoded record
-- A ready record is published ("<id length>:<id><encoded record>") when its sender
-- asked for it (announce) or a waiter key exists.
-- Returns 1 per stored record, 0 per refused one.
local final = { SUCCESS = true, FAILURE = true, REVOKED = true, REJECTED = true }
local out = {}
local k = 1
for i = 2, #ARGV, 6 do
  local key = KEYS[k]
  local state = ARGV[i + 1]
  local fence = tonumber(ARGV[i + 2])
  local ok = 1
  local head = redis.call('GETRANGE', key, 0, 40)
  if head ~= '' then
    local cur, cf = string.match(head, '^(%u+)|(-?%d+)|')
    if cur and final[cur] then
      ok = 0
    elseif cf and fence >= 0 and tonumber(cf) >= 0 and fence < tonumber(cf) then
      ok = 0
    end
  end
  if ok == 1 then
    redis.call('SET', key, state .. '|' .. ARGV[i + 2] .. '|' .. ARGV[i + 5], 'PX', ARGV[i + 3])
    if final[state] and (ARGV[i + 4] == '1' or redis.call('EXISTS', KEYS[k + 1]) == 1) then
      local id = ARGV[i]
      redis.call('PUBLISH', ARGV[1], #id .. ':' .. id .. ARGV[i + 5])
    end
  end
  k = k + 2
  out[#out + 1] = ok
end
return out
