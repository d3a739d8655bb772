-- register: create a job's track, enqueued (it has no prerequisites to wait for).
-- KEYS[12] job hash  KEYS[13] payload  KEYS[14] label zsets in use  KEYS[15..] the job's label zsets
-- ARGV[5] jid  ARGV[6] queue  ARGV[7] fingerprint  ARGV[8] reserve_for (s)  ARGV[9] max_attempts
-- ARGV[10] labels (msgpack) or ''  ARGV[11] payload (msgpack) or ''
-- Returns {0, created (1 or 0), track}, or {2, state, 'different_body'}, or {3, 'queue', 'too_many'}.
local key, jid = KEYS[12], ARGV[5]
local existing = redis.call('HMGET', key, 's', 'h')
if existing[1] then
  if existing[2] == ARGV[7] then return {0, 0, redis.call('HGETALL', key)} end
  return {2, existing[1], 'different_body'}
end

local queue = ARGV[6]
local qid = tonumber(redis.call('HGET', QUEUES, queue))
if not qid then
  qid = redis.call('HLEN', QUEUES) + 1
  if qid > 2047 then return {3, 'queue', 'too_many'} end
  redis.call('HSET', QUEUES, queue, qid)
end

local fields = {'q', queue, 'Q', qid, 'c', int(NOW), 'a', 0, 'm', ARGV[9], 'rf', ARGV[8],
                'h', ARGV[7]}
if ARGV[10] ~= '' then
  fields[#fields + 1] = 'l'
  fields[#fields + 1] = ARGV[10]
end
local label_keys = {}
for i = 15, #KEYS do
  label_keys[#label_keys + 1] = KEYS[i]
  redis.call('SADD', KEYS[14], KEYS[i])
end
if #label_keys > 0 then
  fields[#fields + 1] = 'lk'
  fields[#fields + 1] = table.concat(label_keys, '\n')
end
if ARGV[11] ~= '' then redis.call('SET', KEYS[13], ARGV[11], 'PX', int(PENDING_TTL)) end

local job = {key = key, jid = jid, qid = qid}
if #label_keys > 0 then job.label_keys = table.concat(label_keys, '\n') end
return {0, 1, commit(job, 'enqueued', fields)}
