-- success: the job finished well; from working or enqueued. A second success is a no-op.
-- Its dependents lose a pending prerequisite and are released at zero; its batch rolls up.
-- JOB the job's hash  ATTEMPT the reporting attempt or ''
-- Returns {0, track, more}, {1}, {2, state, 'not_running' | 'batch_computed'},
-- or {2, state, 'superseded', current attempt, the attempt named}.
local job = load(JOB)
if not job then return {1} end
local fenced = fence(job.state, job.h.a, ATTEMPT)
if fenced then return fenced end
if job.state == 'success' then return {0, redis.call('HGETALL', job.key), 0} end
if job.batch then return {2, job.state, 'batch_computed'} end
if job.state ~= 'working' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_running'}
end
local was = job.state
local track = commit(job, 'success', {})
settle(job, was)
return {0, track, work()}
