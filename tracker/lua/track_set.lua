-- track_set: TRACK SET of one job (percent, desc, reserve_until), all or nothing.
-- JOB the job's hash  PERCENT or ''  DESC_GIVEN '1' when DESC is given
-- RESERVE_UNTIL (ms) or ''  ATTEMPT the writer's attempt or ''  RETURNING '1' to reply
-- with the track
-- Returns {0, state} or {0, state, track}; {1};
-- {2, state, 'finished' | 'not_working' | 'batch_reserve' | 'batch_percent'};
-- {2, state, 'reserve_earlier', current reserve_until};
-- or {2, state, 'superseded', current attempt, the attempt named}.
return track_set(JOB, PERCENT, DESC_GIVEN, DESC, RESERVE_UNTIL, ATTEMPT, RETURNING == '1')
