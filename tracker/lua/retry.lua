-- retry: a dead, failed or cancelled job that has a payload goes back to its queue,
-- handed over as a release does it. Attempts go on from where they were (max_attempts
-- one more when they are exhausted), errors are kept. What its death or cancel blocked
-- waits again (propagation off); with REVIVE, what it killed waits again too.
-- JOB the job's hash  REVIVE '1' to revive the dependents its death killed
-- Returns {0, track, more}, {1}, or {2, state, 'not_retryable' | 'no_payload' | 'batch_computed'}.
local job = load(JOB)
if not job then return {1} end
local was = job.state
if was ~= 'dead' and was ~= 'failed' and was ~= 'cancelled' then
  return {2, was, 'not_retryable'}
end
if job.batch then return {2, was, 'batch_computed'} end
if not job.payload or redis.call('EXISTS', job.payload) == 0 then return {2, was, 'no_payload'} end
local root = job.jid
if was == 'dead' then root = root_of(job) end
local fields = {}
local attempts, max_attempts = tonumber(job.h.a) or 0, tonumber(job.h.m) or 25
if attempts >= max_attempts then append(fields, 'm', attempts + 1) end
if was == 'failed' then -- its backoff may have handed it over already: once, not twice
  undispatch(job)
  redis.call('ZREM', SCHEDULE, job.key)
end
if job.h.ea then forget(job, 'ea') end
if job.blocked_by then forget(job, 'bb') end
redis.call('PEXPIRE', job.payload, int(PENDING_TTL))
if job.staged then redis.call('PEXPIRE', job.staged, int(PENDING_TTL)) end
local track = commit(job, 'enqueued', fields)
-- after the commit, which drops a check from before: this hand-off is checked as any other
-- (hd and its schedule entry, see check_handoff), and the next start is a new attempt
if not dispatch(job) then -- its hand-off is unreadable: dead again, and what it blocks stays so
  return {0, redis.call('HGETALL', job.key), work()}
end
if was ~= 'failed' then
  add_work('unmark', job.dependents, root)
  if REVIVE == '1' then add_work('revive', job.released, root) end
end
return {0, track, work()}
