-- Move dead letters of one queue back to the tail of their priority's waiting list,
-- their delivery count reset, and wake fetchers. Only the first ARGV[1] entries are
-- looked at (a bounded batch); a corrupt record stays where it is.
-- KEYS[1..10]  waiting lists
-- KEYS[11]     dead list
-- KEYS[12]     notify list
-- ARGV[1]      how many entries to look at, from the oldest
-- ARGV[2..]    the task ids to move
-- Returns the ids moved.
local wanted = {}
for i = 2, #ARGV do
  wanted[ARGV[i]] = true
end
-- an entry starts with the reason's length: this never equals one
local tombstone = '-moved'
local entries = redis.call('LRANGE', KEYS[11], 0, tonumber(ARGV[1]) - 1)
local moved = {}
for i, entry in ipairs(entries) do
  local len = string.match(entry, '^(%d+):')
  if len then
    local rec = string.sub(entry, #len + 2 + tonumber(len))
    if not malformed(rec) then
      local head = head_and_id(rec)
      local id = string.sub(head, 6)
      if wanted[id] then
        wanted[id] = nil
        local fresh = with_deliveries(rec, 0)
        redis.call('RPUSH', waiting(fresh), fresh)
        redis.call('LSET', KEYS[11], i - 1, tombstone)
        moved[#moved + 1] = id
      end
    end
  end
end
if #moved > 0 then
  redis.call('LREM', KEYS[11], #moved, tombstone)
  wake(KEYS[12], #moved)
end
return moved
