-- Send chosen dead letters of one queue back to its waiting lists (tail of their
-- priority's list), their delivery count reset; other dead letters stay in order.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     dead-letter list
-- KEYS[12]     notify list
-- ARGV[1]      index of the first entry to look at
-- ARGV[2]      how many entries to look at (bounds the call)
-- ARGV[3..]    task ids to requeue
-- A malformed record stays where it is.
-- Returns { index to look at next (-1: the end was reached), requeued ids... }.
local first = tonumber(ARGV[1])
local page = tonumber(ARGV[2])
local wanted = {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local entries = redis.call('LRANGE', KEYS[11], first, first + page - 1)
local out = { 0 }
local removed = 0
local tomb = '\0hq-requeued\0'
for i, e in ipairs(entries) do
  local colon = string.find(e, ':', 1, true)
  local len = colon and tonumber(string.sub(e, 1, colon - 1))
  if len then
    local rec = string.sub(e, colon + 1 + len)
    if malformed(rec) == nil then
      local id = string.sub(rec, 6, 5 + string.byte(rec, 4) * 256 + string.byte(rec, 5))
      if wanted[id] then
        redis.call('RPUSH', waiting(rec), with_deliveries(rec, 0))
        redis.call('LSET', KEYS[11], first + i - 1, tomb)
        removed = removed + 1
        out[#out + 1] = id
      end
    end
  end
end
if removed > 0 then
  redis.call('LREM', KEYS[11], 0, tomb)
  wake(KEYS[12], removed)
end
if #entries < page then
  out[1] = -1
else
  out[1] = first + page - removed
end
return out
