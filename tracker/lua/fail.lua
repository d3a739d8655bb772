-- fail: an attempt failed; the job becomes failed (retry expected) or dead.
-- JOB the job's hash  ERROR the error message  ERROR_TYPE its type or ''  RETRY '1' to
-- allow a retry  BACKOFF the first retry's backoff (ms) for a job with a payload
-- ATTEMPT the reporting attempt or ''  TRACEBACK the worker's traceback or '' (at most
-- 8 KiB: model.py cuts it)
-- Returns {0, track, more}, {1}, {2, state, 'not_running' | 'batch_computed'},
-- or {2, state, 'superseded', current attempt, the attempt named}.
local job = load(JOB)
if not job then return {1} end
local fenced = fence(job.state, job.h.a, ATTEMPT)
if fenced then return fenced end
if job.batch then return {2, job.state, 'batch_computed'} end
if job.state ~= 'working' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_running'}
end
local track = fail_job(job, ERROR, ERROR_TYPE, RETRY == '1', tonumber(BACKOFF), TRACEBACK)
return {0, track, work()}
