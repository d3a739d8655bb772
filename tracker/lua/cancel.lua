-- cancel: any unfinished job becomes cancelled; its worker learns it at its next report.
-- KEYS[12] job hash  KEYS[13] payload
-- ARGV[5] jid
-- Returns {0, track}, {1}, or {2, state, 'finished'}.
local job = load(KEYS[12], ARGV[5])
if not job then return {1} end
if TERMINAL[job.state] then return {2, job.state, 'finished'} end
redis.call('DEL', KEYS[13])
return {0, commit(job, 'cancelled', {})}
