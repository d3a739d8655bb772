-- fail: an attempt failed; the job becomes failed (retry expected) or dead.
-- KEYS[14] job hash
-- ARGV[9] jid  ARGV[10] error message  ARGV[11] error type or ''  ARGV[12] '1' to allow a retry
-- ARGV[13] the first retry's backoff (ms) for a job with a payload
-- ARGV[14] the reporting attempt or ''
-- Returns {0, track, more}, {1}, {2, state, 'not_running' | 'batch_computed'},
-- or {2, state, 'superseded', current attempt, the attempt named}.
local job = load(KEYS[14])
if not job then return {1} end
local fenced = fence(job.state, job.h.a, ARGV[14])
if fenced then return fenced end
if job.batch then return {2, job.state, 'batch_computed'} end
if job.state ~= 'working' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_running'}
end
local track = fail_job(job, ARGV[10], ARGV[11], ARGV[12] == '1', tonumber(ARGV[13]))
return {0, track, work()}
