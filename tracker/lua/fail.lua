-- fail: an attempt failed; the job becomes failed (retry expected) or dead.
-- KEYS[12] job hash  KEYS[13] payload
-- ARGV[5] jid  ARGV[6] error message  ARGV[7] error type or ''  ARGV[8] '1' to allow a retry
-- Returns {0, track}, {1}, or {2, state, 'not_running'}.
local job = load(KEYS[12], ARGV[5], 'a', 'm', 'e')
if not job then return {1} end
if job.state ~= 'working' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_running'}
end
return {0, fail_job(job, KEYS[13], ARGV[6], ARGV[7], ARGV[8] == '1', '')}
