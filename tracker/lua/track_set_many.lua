-- track_set_many: many TRACK SETs in one call; each is judged and applied on its own.
-- Called in the hot layout (begin_hot, see _common.lua): KEYS[8..] the jobs' hashes
-- ARGV[6..] per update, six values: jid, percent, desc given, desc, reserve_until, attempt
-- Returns {0, {reply of track_set for each update, in order}}.
local replies = {}
for i = 8, #KEYS do
  local at = 6 + (i - 8) * 6
  replies[#replies + 1] = track_set(KEYS[i], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4],
    ARGV[at + 5], false)
end
return {0, replies}
