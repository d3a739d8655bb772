-- delete: forget a finished job: its hash, its hand-off, its entries in every index
-- (a success is no longer remembered: a dependent registered later finds it unknown).
-- Jobs that still name it keep their own state; sets a fan-out may still consume are
-- left to expire.
-- KEYS[14] job hash  KEYS[15] payload  KEYS[16] staged RQ job hash
-- KEYS[17] its released-dependents set  KEYS[18] its children zset
-- ARGV[9] jid
-- Returns {0, state it had}, {1}, or {2, state, 'not_finished'}.
local job = load(KEYS[14])
if not job then return {1} end
local was = job.state
if not TERMINAL[was] then return {2, was, 'not_finished'} end
redis.call('ZREM', STATE_KEY[was], job.jid)
redis.call('ZREM', STATE_KEY.success, job.jid)
redis.call('ZREM', SCHEDULE, job.key)
for _, label_key in ipairs(split_lines(job.label_keys)) do
  redis.call('ZREM', label_key, job.key)
end
redis.call('DEL', job.key, KEYS[15], KEYS[16], KEYS[17], KEYS[18])
add_event(job.jid, was, {'s', 'unknown', 'u', NOW_TEXT, 'q', job.h.q})
return {0, was}
