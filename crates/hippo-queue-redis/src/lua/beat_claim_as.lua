-- Claim one tick of a beat entry: record it, with its claimer, as the entry's last
-- tick only if it is newer than the stored one. A claim of the stored tick by the
-- scheduler that stored it succeeds again (its first reply was lost).
-- KEYS[1]  last-tick hash (entry name -> "<tick>:<beat id>", or "<tick>" when the
--          claimer is unnamed; tick in ms, decimal; and "#runs:<entry name>" -> the
--          ticks claimed, counted here: entry names cannot hold '#')
-- ARGV[1]  entry name
-- ARGV[2]  tick (ms, decimal; below 2^53, so exact as a Lua number)
-- ARGV[3]  the claiming scheduler's id ("" for an unnamed claim, never recognised)
-- Returns 1 when the caller owns the tick and must send it, 0 when it (or a newer
-- tick) was claimed already by another. The rule is `decide_claim` in the core's
-- beat/store.rs. A stored value that does not start with a number is overwritten.
local tick = tonumber(ARGV[2])
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last then
  local stored = tonumber(string.match(last, '^(%d+)'))
  if stored and stored > tick then
    return 0
  end
  if stored and stored == tick then
    local by = string.match(last, '^%d+:(.*)$')
    if ARGV[3] ~= '' and by == ARGV[3] then
      return 1
    end
    return 0
  end
end
local value = ARGV[2]
if ARGV[3] ~= '' then
  value = value .. ':' .. ARGV[3]
end
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('HINCRBY', KEYS[1], '#runs:' .. ARGV[1], 1)
return 1
