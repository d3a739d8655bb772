-- pause: hold a waiting or enqueued job back until it is resumed.
-- KEYS[12] job hash
-- ARGV[5] jid
-- Returns {0, track}, {1}, or {2, state, 'not_pausable'}.
local job = load(KEYS[12], ARGV[5])
if not job then return {1} end
if job.state ~= 'waiting' and job.state ~= 'enqueued' then
  return {2, job.state, 'not_pausable'}
end
return {0, commit(job, 'paused', {})}
