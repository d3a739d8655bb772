-- track_set_many: many TRACK SETs in one call; each is judged and applied on its own.
-- KEYS[12..] the jobs' hashes, one per update
-- ARGV[5..] per update, five values: jid, percent, desc given, desc, reserve_until (as track_set)
-- Returns {0, {reply of track_set for each update, in order}}.
local replies = {}
for i = 12, #KEYS do
  local at = 5 + (i - 12) * 5
  replies[#replies + 1] = track_set(KEYS[i], ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3],
    ARGV[at + 4])
end
return {0, replies}
