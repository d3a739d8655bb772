-- track_set_many: many TRACK SETs in one call; each is judged and applied on its own.
-- KEYS[14..] the jobs' hashes, one per update
-- ARGV[9..] per update, five values: jid, percent, desc given, desc, reserve_until (as track_set)
-- Returns {0, {reply of track_set for each update, in order}, more}.
local replies = {}
for i = 14, #KEYS do
  local at = 9 + (i - 14) * 5
  replies[#replies + 1] = track_set(KEYS[i], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4])
end
return {0, replies, work()}
