-- track_set: TRACK SET of one job (percent, desc, reserve_until), all or nothing.
-- KEYS[14] job hash
-- ARGV[9] jid  ARGV[10] percent or ''  ARGV[11] '1' when desc is given  ARGV[12] desc
-- ARGV[13] reserve_until (ms) or ''
-- Returns {0, track, more}, {1}, {2, state, 'finished' | 'not_working' | 'batch_percent'},
-- or {2, state, 'reserve_earlier', current reserve_until}.
local reply = track_set(KEYS[14], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
if reply[1] == 0 then reply[3] = work() end
return reply
