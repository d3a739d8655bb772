-- reap: fail a working job whose reservation has ended, as if its worker had reported it.
-- Safe to run anywhere at once: a job that was reaped, finished or extended meanwhile is skipped.
-- JOB the job's hash  JID its jid  BACKOFF the first retry's backoff (ms) for a job with a
-- payload
-- Returns {0, track, more} when reaped, {1} when the job has no track, {2, state, 'not_expired'}.
local job = load(JOB)
if not job then
  redis.call('ZREM', RESERVED, JID)
  redis.call('ZREM', STATE_KEY.working, JID)
  return {1}
end
if job.state ~= 'working' or (job.reserve_until or 0) > NOW then
  return {2, job.state, 'not_expired'}
end
local track = fail_job(job, 'reservation expired', 'ReservationExpired', true, tonumber(BACKOFF))
return {0, track, work()}
