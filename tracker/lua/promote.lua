-- promote: hand jobs whose time has come to their queue: delayed jobs (waiting ->
-- enqueued, their event's `rl` counting from eligible_at) and failed jobs whose retry
-- backoff ended (they stay failed until started); and look at hand-offs not started in
-- time (check_handoff in _graph.lua). Any number of processes may run it at once.
-- BACKOFF the first retry's backoff (ms), for a job whose hand-offs were lost
-- Returns {0, {jobs handed over (again, too), 1 when more may be due}}.
local due = redis.call('ZRANGEBYSCORE', SCHEDULE, '-inf', int(NOW), 'LIMIT', 0, BUDGET)
local handed = 0
for _, key in ipairs(due) do
  redis.call('ZREM', SCHEDULE, key)
  local job = load(key)
  if job and job.eligible_at and job.eligible_at <= NOW then
    if job.state == 'waiting' and job.pending <= 0 and not job.blocked_by then
      forget(job, 'ea')
      forget(job, 'dl') -- the delay is served: a pause and resume later does not restart it
      commit(job, 'enqueued', {}, NOW - job.eligible_at)
      if dispatch(job) then handed = handed + 1 end
    elseif job.state == 'failed' then
      forget(job, 'ea')
      if dispatch(job) then handed = handed + 1 end
    end
  elseif job and job.h.hd and tonumber(job.h.hd) <= NOW
      and (job.state == 'enqueued' or job.state == 'failed') then
    if check_handoff(job, tonumber(BACKOFF)) == 'rehanded' then handed = handed + 1 end
  end
end
local more = 0
if #due >= BUDGET then more = 1 end
return {0, {handed, more, work()}}
