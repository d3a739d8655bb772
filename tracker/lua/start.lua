-- start: a worker takes the job; from enqueued or failed only, so two workers never both run it.
-- JOB the job's hash  RESERVE_FOR (s) for this attempt, or '' for the job's own
-- Returns {0, track, 0}, {1}, or {2, state, 'not_startable'}.
local job = load(JOB)
if not job then return {1} end
if job.state ~= 'enqueued' and job.state ~= 'failed' then
  return {2, job.state, 'not_startable'}
end
local reserve_for = tonumber(RESERVE_FOR) or tonumber(job.h.rf)
job.reserve_until = NOW + reserve_for * 1000
local attempts = (tonumber(job.h.a) or 0) + 1
return {0, commit(job, 'working', {'a', attempts, 'r', int(job.reserve_until)}), 0}
