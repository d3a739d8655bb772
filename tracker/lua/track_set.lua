-- track_set: TRACK SET of one job (percent, desc, reserve_until), all or nothing.
-- Called in the hot layout (begin_hot, see _common.lua): KEYS[8] the job's hash
-- ARGV[6] jid  ARGV[7] percent or ''  ARGV[8] '1' when desc is given  ARGV[9] desc
-- ARGV[10] reserve_until (ms) or ''  ARGV[11] the writer's attempt or ''
-- ARGV[12] '1' to reply with the track
-- Returns {0, state} or {0, state, track}; {1};
-- {2, state, 'finished' | 'not_working' | 'batch_reserve' | 'batch_percent'};
-- {2, state, 'reserve_earlier', current reserve_until};
-- or {2, state, 'superseded', current attempt, the attempt named}.
return track_set(KEYS[8], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12] == '1')
