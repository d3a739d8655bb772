-- track_set_many: many TRACK SETs in one call; each is judged and applied on its own.
-- JOBS the jobs' hashes  UPDATES in step with them: percent, desc_given, desc,
-- reserve_until, attempt (as track_set.lua's)
-- Returns {0, {reply of track_set for each update, in order}}.
local replies = {}
for i, key in ipairs(JOBS) do
  local u = UPDATES[i]
  replies[i] = track_set(key, u.percent, u.desc_given, u.desc, u.reserve_until, u.attempt, false)
end
return {0, replies}
