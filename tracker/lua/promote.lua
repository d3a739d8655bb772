-- promote: enqueue delayed jobs whose time has come (and hand them to their queue).
-- Any number of processes may run it at once.
-- Returns {0, {jobs enqueued, 1 when more may be due}}.
local due = redis.call('ZRANGEBYSCORE', SCHEDULE, '-inf', int(NOW), 'LIMIT', 0, BUDGET)
local enqueued = 0
for _, key in ipairs(due) do
  redis.call('ZREM', SCHEDULE, key)
  local job = load(key)
  if job and job.state == 'waiting' and job.pending <= 0 and not job.blocked_by
      and job.eligible_at and job.eligible_at <= NOW then
    forget(job, 'ea')
    forget(job, 'dl') -- the delay is served: a pause and resume later does not restart it
    commit(job, 'enqueued', {})
    dispatch(job)
    enqueued = enqueued + 1
  end
end
local more = 0
if #due >= BUDGET then more = 1 end
return {0, {enqueued, more}}
