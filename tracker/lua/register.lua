-- register: create a job's track. It waits for pending prerequisites (and for a
-- waiting parent batch); otherwise it is released at once.
-- JOB the job's hash  PAYLOAD its hand-off  LABELS_IN_USE label zsets in use (by when due)
-- DEPENDENTS, GATE, OPEN_CHILDREN, RELEASED its sets  STAGED its staged RQ job hash
-- FREE_QUEUE_IDS, BANDS_DUE, QUEUES_RECORDED the queue table's companions (see queue_keys
-- in _common.lua)  PARENT none or one: the parent's key, gate, open (children set) and
-- children (zset)  PREREQUISITES per prerequisite: its key, dependents and released sets
-- LABEL_KEYS the job's label zsets
-- JID, QUEUE, FINGERPRINT, RESERVE_FOR (s), MAX_ATTEMPTS, LABELS (msgpack) or ''
-- BATCH '1' for a batch  DELAY (s)  MISSING_SATISFIED '1' when unknown prerequisites count
-- as done  HANDOFF_TIMEOUT seconds before a hand-off not started is checked, or '' for a
-- job without one  HANDOFF_PROBE where the check looks in RQ: queue, intermediate list,
-- job hash (newline separated)  SHOWN the payload as the track shows it (JSON, args
-- hidden when asked) or ''  PREREQUISITE_JIDS in step with PREREQUISITES  HANDOFF the
-- stored hand-off and STAGED_FIELDS the staged hash (see handoff.py)
-- Returns {0, created (1 or 0), track, more fan-out work (1 or 0)},
-- {2, state, reason}, or {3, 'queue', 'too_many'}.
local key, jid = JOB, JID
local existing = redis.call('HMGET', key, 's', 'h')
if existing[1] then
  if existing[2] == FINGERPRINT then return {0, 0, redis.call('HGETALL', key), 0} end
  return {2, existing[1], 'different_body'}
end

local n_prereqs, n_handoff, n_staged = #PREREQUISITES, #HANDOFF, #STAGED_FIELDS
local parent = PARENT[1]
if parent then
  local got = redis.call('HMGET', parent.key, 's', F_BATCH, 'sl', 'bb')
  parent.state, parent.blocked_by = got[1], got[4]
  if not got[1] then return {2, 'unknown', 'parent_unknown'} end
  if got[2] ~= '1' then return {2, 'unknown', 'parent_not_batch'} end
  if got[3] == '1' then return {2, 'unknown', 'sealed'} end
  if TERMINAL[got[1]] then return {2, 'unknown', 'parent_finished', got[1]} end
end
local prereqs = PREREQUISITES
for i, p in ipairs(prereqs) do p.jid = PREREQUISITE_JIDS[i] end
local label_keys = LABEL_KEYS
if parent then label_keys[#label_keys + 1] = parent.children end

-- A cycle: something this job would wait for already waits for it (see _cycle.lua).
local held = parent and (parent.state == 'waiting' or parent.state == 'paused')
if n_prereqs > 0 or held then
  local targets = {}
  for _, p in ipairs(prereqs) do targets[#targets + 1] = 'S' .. p.key end
  if held then targets[#targets + 1] = 'R' .. parent.key end
  local refused = closes_cycle(key, DEPENDENTS, parent and parent.key, targets)
  if refused then return {2, 'unknown', refused} end
end

local queue_name = QUEUE
local qkeys = queue_keys(FREE_QUEUE_IDS, BANDS_DUE, QUEUES_RECORDED)
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
    done = (score and tonumber(score) % BAND >= NOW - TTL - DONE_TTL) or MISSING_SATISFIED == '1'
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

local fields = {'q', queue_name, F_QID, qid, 'c', int(NOW), 'a', 0, 'm', MAX_ATTEMPTS,
                'rf', RESERVE_FOR, 'h', FINGERPRINT}
if LABELS ~= '' then append(fields, 'l', LABELS) end
if SHOWN ~= '' then append(fields, 'pj', SHOWN) end
-- its entry there expires with its track, at the earliest (see prune_labels.lua)
local due = int(NOW + math.min(TTL, PENDING_TTL))
for _, label_key in ipairs(label_keys) do redis.call('ZADD', LABELS_IN_USE, 'LT', due, label_key) end
if #label_keys > 0 then append(fields, 'lk', table.concat(label_keys, '\n')) end
if n_prereqs > 0 then
  local prerequisite_keys = {}
  for i, p in ipairs(prereqs) do prerequisite_keys[i] = p.key end
  append(fields, 'pt', n_prereqs, 'pq', table.concat(prerequisite_keys, '\n'))
end
if n_prereqs > 0 or parent then append(fields, 'pp', pending) end
if parent then append(fields, F_PARENT, parent.key) end
if held then append(fields, 'gh', 1) end
if #waits_on > 0 then append(fields, 'pl', table.concat(waits_on, '\n')) end
if redis.call('EXISTS', DEPENDENTS) == 1 then append(fields, 'dk', DEPENDENTS, 'dr', RELEASED) end
if BATCH == '1' then append(fields, F_BATCH, '1', 'bt', 0, 'bs', 0, 'bd', 0, 'bp', 0, 'p', 0,
                            'gk', GATE, 'ok', OPEN_CHILDREN) end
if tonumber(DELAY) > 0 then append(fields, 'dl', DELAY) end
if n_handoff > 0 then
  redis.call('DEL', PAYLOAD)
  redis.call('RPUSH', PAYLOAD, unpack(HANDOFF))
  redis.call('PEXPIRE', PAYLOAD, int(PENDING_TTL))
  append(fields, 'pk', PAYLOAD)
  if HANDOFF_TIMEOUT ~= '' then append(fields, 'ht', HANDOFF_TIMEOUT, 'hk', HANDOFF_PROBE) end
  if n_staged > 0 then
    redis.call('DEL', STAGED)
    redis.call('HSET', STAGED, unpack(STAGED_FIELDS))
    redis.call('PEXPIRE', STAGED, int(PENDING_TTL))
    append(fields, 'px', STAGED)
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
