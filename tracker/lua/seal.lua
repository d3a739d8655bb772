-- seal: a batch takes no more children; it succeeds once every child has.
-- JOB the job's hash
-- Returns {0, track, more}, {1}, or {2, state, 'not_batch' | 'finished'}.
local job = load(JOB)
if not job then return {1} end
if not job.batch then return {2, job.state, 'not_batch'} end
if job.h.sl == '1' then return {0, redis.call('HGETALL', job.key), 0} end
if TERMINAL[job.state] then return {2, job.state, 'finished'} end
job.h.sl = '1'
redis.call('HSET', job.key, 'sl', '1')
batch_changed(job)
local more = work() -- read the track after the work, which may move the batch again
return {0, redis.call('HGETALL', job.key), more}
