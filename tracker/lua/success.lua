-- success: the job finished well; from working or enqueued. A second success is a no-op.
-- KEYS[12] job hash  KEYS[13] payload
-- ARGV[5] jid
-- Returns {0, track}, {1}, or {2, state, 'not_running'}.
local job = load(KEYS[12], ARGV[5])
if not job then return {1} end
if job.state == 'success' then return {0, redis.call('HGETALL', job.key)} end
if job.state ~= 'working' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_running'}
end
redis.call('DEL', KEYS[13])
return {0, commit(job, 'success', {})}
