-- pause: hold a waiting or enqueued job back until it is resumed (an enqueued job
-- is taken back out of its queue).
-- JOB the job's hash
-- Returns {0, track, 0}, {1}, or {2, state, 'not_pausable'}.
local job = load(JOB)
if not job then return {1} end
if job.state ~= 'waiting' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_pausable'}
end
if job.state == 'enqueued' then undispatch(job) end
return {0, commit(job, 'paused', {}), 0}
