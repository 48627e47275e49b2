-- Losses of one queue whose FAILURE record is still unwritten some time after their
-- recovery (the recoverer died, or its write failed): up to ARGV[1] of them, each
-- left in place until its record is written (HDEL by the writer).
-- KEYS[1]  unrecorded losses (hash token ->
--          '<server ms>:<outcome><worker length>:<worker><record>', see recover.lua)
-- ARGV     most entries, least age in ms
-- Returns { token, outcome (l|m, or ? for an entry not in that form), worker,
-- record, ... }.
local now = server_ms()
local pairs_ = redis.call('HRANDFIELD', KEYS[1], tonumber(ARGV[1]), 'WITHVALUES')
local out = {}
for i = 1, #pairs_, 2 do
  local v = pairs_[i + 1]
  local at, outcome, len, rest = string.match(v, '^(%d+):([lm])(%d+):(.*)$')
  if not at then
    out[#out + 1] = pairs_[i]
    out[#out + 1] = '?'
    out[#out + 1] = ''
    out[#out + 1] = v
  elseif now - tonumber(at) >= tonumber(ARGV[2]) then
    len = tonumber(len)
    out[#out + 1] = pairs_[i]
    out[#out + 1] = outcome
    out[#out + 1] = string.sub(rest, 1, len)
    out[#out + 1] = string.sub(rest, len + 1)
  end
end
return out
