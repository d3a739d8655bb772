-- register: create a job's track. It waits for pending prerequisites (and for a
-- waiting parent batch); otherwise it is released at once.
-- KEYS[14] job hash  KEYS[15] payload  KEYS[16] label zsets in use (by when due)
-- KEYS[17] its dependents set  KEYS[18] its gate set  KEYS[19] its open-children set
-- KEYS[20] its staged RQ job hash  KEYS[21] its released-dependents set
-- KEYS[22] the free queue ids list  KEYS[23] the state bands due for the pruner
-- KEYS[24] the queue ids recorded there (see queue_keys in _common.lua)
-- then, when it has a parent: the parent's hash, gate set, open-children set, children zset;
-- then per prerequisite: its hash, dependents set and released-dependents set; then the
-- job's label zsets.
-- ARGV[9] jid  ARGV[10] queue  ARGV[11] fingerprint  ARGV[12] reserve_for (s)
-- ARGV[13] max_attempts  ARGV[14] labels (msgpack) or ''  ARGV[15] '1' for a batch
-- ARGV[16] delay (s)  ARGV[17] '1' when unknown prerequisites count as done
-- ARGV[18] '1' when it has a parent  ARGV[19] number of prerequisites  ARGV[20] length of
-- the stored hand-off  ARGV[21] length of the staged RQ job hash (fields and values)
-- ARGV[22] seconds before a hand-off not started is checked, or '' for a job without one
-- ARGV[23] where the check looks in RQ: queue, intermediate list, job hash (newline separated);
-- then the prerequisites' jids, the hand-off, the staged hash (see handoff.py); last, the
-- payload as the track shows it (JSON, args hidden when asked) or ''.
-- Returns {0, created (1 or 0), track, more fan-out work (1 or 0)},
-- {2, state, reason}, or {3, 'queue', 'too_many'}.
local key, jid = KEYS[14], ARGV[9]
local existing = redis.call('HMGET', key, 's', 'h')
if existing[1] then
  if existing[2] == ARGV[11] then return {0, 0, redis.call('HGETALL', key), 0} end
  return {2, existing[1], 'different_body'}
end

local has_parent, n_prereqs, n_handoff = ARGV[18] == '1', tonumber(ARGV[19]), tonumber(ARGV[20])
local n_staged = tonumber(ARGV[21])
local at = 25
local parent
if has_parent then
  parent = {key = KEYS[25], gate = KEYS[26], open = KEYS[27], children = KEYS[28]}
  local got = redis.call('HMGET', parent.key, 's', 'B', 'sl', 'bb')
  parent.state, parent.blocked_by = got[1], got[4]
  if not got[1] then return {2, 'unknown', 'parent_unknown'} end
  if got[2] ~= '1' then return {2, 'unknown', 'parent_not_batch'} end
  if got[3] == '1' then return {2, 'unknown', 'sealed'} end
  if TERMINAL[got[1]] then return {2, 'unknown', 'parent_finished', got[1]} end
  at = 29
end
local prereqs = {}
for i = 1, n_prereqs do
  prereqs[i] = {key = KEYS[at], dependents = KEYS[at + 1], released = KEYS[at + 2],
                jid = ARGV[23 + i]}
  at = at + 3
end
local label_keys = {}
for i = at, #KEYS do label_keys[#label_keys + 1] = KEYS[i] end
if parent then label_keys[#label_keys + 1] = parent.children end

-- A cycle: something this job would wait for already waits for it (see _cycle.lua).
local held = parent and (parent.state == 'waiting' or parent.state == 'paused')
if n_prereqs > 0 or held then
  local targets = {}
  for _, p in ipairs(prereqs) do targets[#targets + 1] = 'S' .. p.key end
  if held then targets[#targets + 1] = 'R' .. parent.key end
  local refused = closes_cycle(key, KEYS[17], parent and parent.key, targets)
  if refused then return {2, 'unknown', refused} end
end

local queue_name = ARGV[10]
local qkeys = queue_keys(KEYS[22], KEYS[23], KEYS[24])
local qid = queue_id(queue_name, qkeys)
if not qid then
  -- every id is taken: forget a sample of the queues that have no live job left (the
  -- pruner forgets them all; this is for namespaces that no maintenance looks after)
  prune_working()
  local room, sample = BUDGET * 4, redis.call('HRANDFIELD', QUEUES, 32, 'WITHVALUES')
  for i = 1, #sample, 2 do
    if room <= 0 then break end
    room = select(2, forget_queue(sample[i], tonumber(sample[i + 1]), qkeys, room))
  end
  qid = queue_id(queue_name, qkeys)
  if not qid then return {3, 'queue', 'too_many'} end
end

-- Prerequisites: done, pending (this job joins its dependents), or dead / cancelled.
local pending, waits_on, blocked_by, failed = 0, {}, nil, nil
for _, p in ipairs(prereqs) do
  local got = redis.call('HMGET', p.key, 's', 'bb', 'e')
  local state = got[1]
  local done = state == 'success'
  if not state then
    local score = redis.call('ZSCORE', STATE_KEY.success, p.jid)
    done = (score and tonumber(score) % BAND >= NOW - TTL - DONE_TTL) or ARGV[17] == '1'
  end
  if state == 'dead' or state == 'cancelled' then
    pending = pending + 1 -- it never succeeded: as for a dependent registered before it ended
    if not failed then
      local root = p.jid
      if state == 'dead' then root = root_of({jid = p.jid, errors = got[3]}) end
      failed = {root = root, reason = 'prerequisite ' .. p.jid .. ' is ' .. state}
    end
  elseif not done then
    pending = pending + 1
    waits_on[#waits_on + 1] = p.dependents
    redis.call('SADD', p.dependents, key)
    redis.call('PEXPIRE', p.dependents, int(PENDING_TTL))
    if state then redis.call('HSET', p.key, 'dk', p.dependents, 'dr', p.released) end
    if got[2] then blocked_by = got[2] end
  end
end
if held then
  if parent.blocked_by then blocked_by = parent.blocked_by end
  pending = pending + 1
  waits_on[#waits_on + 1] = parent.gate
  redis.call('SADD', parent.gate, key)
  redis.call('PEXPIRE', parent.gate, int(PENDING_TTL))
end

local fields = {'q', queue_name, 'Q', qid, 'c', int(NOW), 'a', 0, 'm', ARGV[13], 'rf', ARGV[12],
                'h', ARGV[11]}
if ARGV[14] ~= '' then append(fields, 'l', ARGV[14]) end
if ARGV[#ARGV] ~= '' then append(fields, 'pj', ARGV[#ARGV]) end
-- its entry there expires with its track, at the earliest (see prune_labels.lua)
local due = int(NOW + math.min(TTL, PENDING_TTL))
for _, label_key in ipairs(label_keys) do redis.call('ZADD', KEYS[16], 'LT', due, label_key) end
if #label_keys > 0 then append(fields, 'lk', table.concat(label_keys, '\n')) end
if n_prereqs > 0 then
  local prerequisite_keys = {}
  for i, p in ipairs(prereqs) do prerequisite_keys[i] = p.key end
  append(fields, 'pt', n_prereqs, 'pq', table.concat(prerequisite_keys, '\n'))
end
if n_prereqs > 0 or parent then append(fields, 'pp', pending) end
if parent then append(fields, 'P', parent.key) end
if held then append(fields, 'gh', 1) end
if #waits_on > 0 then append(fields, 'pl', table.concat(waits_on, '\n')) end
if redis.call('EXISTS', KEYS[17]) == 1 then append(fields, 'dk', KEYS[17], 'dr', KEYS[21]) end
if ARGV[15] == '1' then append(fields, 'B', '1', 'bt', 0, 'bs', 0, 'bd', 0, 'bp', 0, 'p', 0,
                               'gk', KEYS[18], 'ok', KEYS[19]) end
if tonumber(ARGV[16]) > 0 then append(fields, 'dl', ARGV[16]) end
if n_handoff > 0 then
  local first = 24 + n_prereqs
  redis.call('DEL', KEYS[15])
  redis.call('RPUSH', KEYS[15], unpack(ARGV, first, first + n_handoff - 1))
  redis.call('PEXPIRE', KEYS[15], int(PENDING_TTL))
  append(fields, 'pk', KEYS[15])
  if ARGV[22] ~= '' then append(fields, 'ht', ARGV[22], 'hk', ARGV[23]) end
  if n_staged > 0 then
    first = first + n_handoff
    redis.call('DEL', KEYS[20])
    redis.call('HSET', KEYS[20], unpack(ARGV, first, first + n_staged - 1))
    redis.call('PEXPIRE', KEYS[20], int(PENDING_TTL))
    append(fields, 'px', KEYS[20])
  end
end
redis.call('HSET', key, unpack(fields))
-- a success remembered from this jid's previous life no longer stands for it
redis.call('ZREM', STATE_KEY.success, jid)

if parent then
  local batch = load(parent.key)
  bump(batch, 'bt', 1)
  redis.call('SADD', parent.open, key)
  redis.call('PEXPIRE', parent.open, int(PENDING_TTL))
  batch_changed(batch)
end

local job = load(key)
local track
if failed and PROPAGATE then
  track = commit(job, 'dead', {'e', with_error(job, failed.reason, 'PrerequisiteFailed',
    failed.root)})
  settle(job, nil)
elseif failed or blocked_by or pending > 0 then
  local extra = {}
  if failed then blocked_by = failed.root end
  if blocked_by then append(extra, 'bb', blocked_by) end
  track = commit(job, 'waiting', extra)
  if blocked_by then add_work('mark', job.dependents, blocked_by) end
else
  release(job)
end
local more = work()
-- a released job's track is read after the work, which may move it again
return {0, 1, track or redis.call('HGETALL', key), more}
