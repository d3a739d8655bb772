-- resume: a paused job goes back to waiting or enqueued, as its prerequisites say.
-- KEYS[12] job hash
-- ARGV[5] jid
-- Returns {0, track}, {1}, or {2, state, 'not_paused'}.
local job = load(KEYS[12], ARGV[5], 'pp')
if not job then return {1} end
if job.state ~= 'paused' then return {2, job.state, 'not_paused'} end
local new_state = 'enqueued'
if (tonumber(job.extra[1]) or 0) > 0 then new_state = 'waiting' end
return {0, commit(job, new_state, {})}
