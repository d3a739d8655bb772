-- reap: fail a working job whose reservation has ended, as if its worker had reported it.
-- Safe to run anywhere at once: a job that was reaped, finished or extended meanwhile is skipped.
-- KEYS[12] job hash  KEYS[13] payload
-- ARGV[5] jid
-- Returns {0, track} when reaped, {1} when the job has no track, {2, state, 'not_expired'} else.
local job = load(KEYS[12], ARGV[5], 'a', 'm', 'e')
if not job then
  redis.call('ZREM', RESERVED, ARGV[5])
  redis.call('ZREM', STATE_KEY.working, ARGV[5])
  return {1}
end
if job.state ~= 'working' or (job.reserve_until or 0) > NOW then
  return {2, job.state, 'not_expired'}
end
return {0, fail_job(job, KEYS[13], 'reservation expired', 'ReservationExpired', true, '')}
