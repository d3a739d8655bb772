-- track_set: TRACK SET of one job (percent, desc, reserve_until), all or nothing.
-- KEYS[12] job hash
-- ARGV[5] jid  ARGV[6] percent or ''  ARGV[7] '1' when desc is given  ARGV[8] desc
-- ARGV[9] reserve_until (ms) or ''
-- Returns {0, track}, {1}, {2, state, 'finished'}, {2, state, 'not_working'},
-- or {2, state, 'reserve_earlier', current reserve_until}.
return track_set(KEYS[12], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
