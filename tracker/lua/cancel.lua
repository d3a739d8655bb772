-- cancel: any unfinished job becomes cancelled; its worker learns it at its next report.
-- A cancelled batch cancels its unfinished children; dependents follow failure propagation.
-- JOB the job's hash
-- Returns {0, track, more}, {1}, or {2, state, 'finished'}.
local job = load(JOB)
if not job then return {1} end
if TERMINAL[job.state] then return {2, job.state, 'finished'} end
local was = job.state
local track = commit(job, 'cancelled', {})
settle(job, was)
return {0, track, work()}
