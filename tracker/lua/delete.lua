-- delete: forget a finished job: its hash, its hand-off, its entries in every index
-- (a success is no longer remembered: a dependent registered later finds it unknown).
-- Jobs that still name it keep their own state; sets a fan-out may still consume are
-- left to expire.
-- JOB the job's hash  PAYLOAD its hand-off  STAGED its staged RQ job hash
-- RELEASED its released-dependents set  CHILDREN its children zset
-- Returns {0, state it had}, {1}, or {2, state, 'not_finished'}.
local job = load(JOB)
if not job then return {1} end
local was = job.state
if not TERMINAL[was] then return {2, was, 'not_finished'} end
redis.call('ZREM', STATE_KEY[was], job.jid)
redis.call('ZREM', STATE_KEY.success, job.jid)
redis.call('ZREM', SCHEDULE, job.key)
for _, label_key in ipairs(split_lines(job.label_keys)) do
  redis.call('ZREM', label_key, job.key)
end
redis.call('DEL', job.key, PAYLOAD, STAGED, RELEASED, CHILDREN)
add_event(job.jid, was, {'s', 'unknown', 'u', NOW_TEXT, 'q', job.h.q})
return {0, was}
