-- resume: a paused job goes back to waiting (prerequisites pending or blocked, or its
-- delay still running) or on, as if released now.
-- JOB the job's hash
-- Returns {0, track, more}, {1}, or {2, state, 'not_paused'}.
local job = load(JOB)
if not job then return {1} end
if job.state ~= 'paused' then return {2, job.state, 'not_paused'} end
if job.pending > 0 or job.blocked_by then
  commit(job, 'waiting', {})
elseif job.eligible_at and job.eligible_at > NOW then
  commit(job, 'waiting', {})
  redis.call('ZADD', SCHEDULE, int(job.eligible_at), job.key)
elseif job.eligible_at then
  forget(job, 'ea')
  forget(job, 'dl')
  commit(job, 'enqueued', {})
  dispatch(job)
else
  release(job)
end
-- the work may move the job again (a batch whose released children finish it)
local more = work()
return {0, redis.call('HGETALL', job.key), more}
