-- The top of tracker's function library; scripts.py puts _graph.lua after it and
-- registers each operation's file as one function. This part runs once, when the
-- library is loaded: every call then starts with begin() (generated from interface.py),
-- which binds the namespace's constants below (from the call, or from BOUND when the
-- call names them by their token), then calls started(). Each operation's own keys and
-- arguments are bound to names by a prelude generated from its declaration in
-- interface.py: scripts use names only.
--
-- Keys of jobs reached through data (dependents, children, parents) are never
-- built here: registration stores the key names keys.py built, and scripts read them.
--
-- Replies are tables whose first element is a code:
--   {0, ...}                 done
--   {1}                      the job has no track
--   {2, state, reason, ...}  the job's state refuses this (reason is a short code); for
--                            'superseded', then the current attempt and the one named
--   {3, field, reason}       an input the script alone can judge is invalid

local STATES = {'waiting', 'paused', 'enqueued', 'working', 'failed', 'success', 'dead', 'cancelled'}
local TERMINAL = {success = true, dead = true, cancelled = true}
local BAND = 4398046511104 -- 2^42: one queue's range of scores in a state zset
local MAX_QUEUES = 2047 -- the ids a band can take: 2^53 / BAND - 1 (band 0 is no queue's)
local MAX_ERRORS = 10

-- TRACK_FIELDS (generated from fields.py, above this file): the fields of a job's hash
-- that its events and replies carry, those the track is decoded from (decode_track() in
-- records.py), always in this order. The rest (key names, the fingerprint, the sets a
-- job waits in, its prerequisites' jids) is the scripts' own, and streaming it for every
-- change cost a release as much as its own writes; and entries sharing their fields in
-- order keep the names once in the stream.

local EVENTS, RESERVED, QUEUES, SCHEDULE, FANOUT
local STATE_KEY = {}
local NOW_TEXT -- NOW as int() prints it
local NOW, TTL, PENDING_TTL, DONE_TTL, EVENTS_KEPT, JOB_PREFIX_LEN, PROPAGATE, BUDGET
local WORK, SPENT = {}, 0 -- this call's fan-out tasks (see _graph.lua)

-- The namespaces' constants (their shared keys and settings, see interface.py) by the
-- token calls name them with: kept by the first call that carries them, so that later
-- calls need not send them. The library's memory, not data: a restart or a reload of the
-- library empties it, and a call naming a token it lacks is answered UNBOUND (begin()).
-- Tokens are digests of the constants, so one token always means the same constants.
local BOUND, BOUND_COUNT, MAX_BOUND = {}, 0, 256

local function bind(token, constants)
  if BOUND_COUNT >= MAX_BOUND then BOUND, BOUND_COUNT = {}, 0 end -- a bound on memory only
  if not BOUND[token] then BOUND_COUNT = BOUND_COUNT + 1 end
  BOUND[token] = constants
end

-- What every call starts with once begin() bound the constants: the time (ms, '' for
-- the server's) and this call's fan-out work.
local function started(now)
  NOW = tonumber(now)
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  NOW_TEXT = string.format('%.0f', NOW)
  WORK, SPENT = {}, 0
end

-- Lua numbers are doubles; print them whole so scores and times stay exact.
local function int(n) return string.format('%.0f', n) end

local function jid_of(job_key) return string.sub(job_key, JOB_PREFIX_LEN + 1) end

-- Entries of `state` older than this many ms before NOW have expired with their track.
local function index_horizon(state)
  if state == 'working' then return nil end -- the reaper ends these, by reservation
  if TERMINAL[state] then return TTL end
  return PENDING_TTL
end

-- How long an index keeps entries: a success is remembered DONE_TTL past its track.
local function keep_horizon(state)
  if state == 'success' then return TTL + DONE_TTL end
  return index_horizon(state)
end

-- The rank, in ZREVRANGE's order, of the first entry of zset `key` after (`score`, a
-- number as int() prints it, and `member`): past every entry scored higher, and past
-- those of `score` whose member sorts after `member`, by bisection, since many jobs may
-- share a millisecond. What a listing's cursor stands for.
local function rank_after(key, score, member)
  local rank = redis.call('ZCOUNT', key, '(' .. score, '+inf')
  local high = rank + redis.call('ZCOUNT', key, score, score)
  while rank < high do
    local middle = math.floor((rank + high) / 2)
    if redis.call('ZREVRANGE', key, middle, middle)[1] < member then
      high = middle
    else
      rank = middle + 1
    end
  end
  return rank
end

-- Drop a few expired entries from one queue's band; each commit calls this, so the
-- work stays small and the index never grows past what is alive.
local function prune_band(state, qid)
  local horizon = keep_horizon(state)
  if not horizon then return end
  local lo = qid * BAND
  local stale = redis.call('ZRANGEBYSCORE', STATE_KEY[state], int(lo), int(lo + NOW - horizon),
    'LIMIT', 0, 16)
  if #stale > 0 then redis.call('ZREM', STATE_KEY[state], unpack(stale)) end
end

-- Working jobs whose reservation ended more than TTL ago have expired unreaped.
local function prune_working()
  local stale = redis.call('ZRANGEBYSCORE', RESERVED, '-inf', int(NOW - TTL), 'LIMIT', 0, 100)
  if #stale > 0 then
    redis.call('ZREM', RESERVED, unpack(stale))
    redis.call('ZREM', STATE_KEY.working, unpack(stale))
  end
end

local function split_lines(text)
  local out = {}
  if text then for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end end
  return out
end

local function append(list, ...)
  for _, value in ipairs({...}) do list[#list + 1] = value end
end

-- The keys of the queue table's companions (KEYS an operation that adds or forgets
-- queues is given): `free` the list of freed ids, `due` the zset of the state zsets'
-- bands by when each is next due for the pruner ('<state>:<queue id>'), `recorded` the
-- hash of the queue ids whose bands are in `due` (id -> name: what the pruner, which
-- knows a band by its id, forgets a queue by).
local function queue_keys(free, due, recorded)
  return {free = free, due = due, recorded = recorded}
end

-- Record queue `qid` (named `name`) for the pruner: its bands of the states that expire
-- (all but working) due at `at`, or `nil` for when their first entry may expire (the
-- bands of an id just given out are empty: a queue is forgotten only once they are).
local function record_queue(qkeys, name, qid, at)
  redis.call('HSET', qkeys.recorded, qid, name)
  for _, state in ipairs(STATES) do
    local horizon = index_horizon(state)
    if horizon then
      redis.call('ZADD', qkeys.due, 'LT', int(at or NOW + horizon), state .. ':' .. qid)
    end
  end
end

-- Take queue `qid` out of the pruner's records (forgotten, or recorded under a name
-- that no longer has it); returns the Redis calls spent.
local function unrecord_queue(qkeys, qid)
  local bands = {}
  for _, state in ipairs(STATES) do
    if index_horizon(state) then bands[#bands + 1] = state .. ':' .. qid end
  end
  redis.call('ZREM', qkeys.due, unpack(bands))
  redis.call('HDEL', qkeys.recorded, qid)
  return 2
end

-- The id of queue `name` (its band), given one when the name is new: an id a forgotten
-- queue freed (`qkeys.free`, a list), else the next one; a new name's id is recorded
-- for the pruner. Ids in use and freed ones are always 1..(HLEN + LLEN), so a namespace
-- made before queues were forgotten (no free list, ids 1..HLEN) needs nothing. Returns
-- nil when MAX_QUEUES queues are in use.
local function queue_id(name, qkeys)
  local qid = redis.call('HGET', QUEUES, name)
  if qid then return tonumber(qid) end
  qid = redis.call('LPOP', qkeys.free)
  if not qid then
    qid = redis.call('HLEN', QUEUES) + 1
    if qid > MAX_QUEUES then return nil end
  end
  redis.call('HSET', QUEUES, name, qid)
  record_queue(qkeys, name, qid, nil)
  return tonumber(qid)
end

-- Forget queue `name` (id `qid`) if none of its jobs is live, so that a namespace may
-- see any number of queue names over its life: its name leaves the queues hash, its id
-- goes to `qkeys.free` for the next new name and leaves the pruner's records (a reused
-- id starts clean, recorded again by queue_id). Its band must first hold nothing that a
-- reader of the next queue with that id could see: expired entries are dropped, and
-- successes still remembered (for dependents registered later, which look them up by
-- jid whatever the band) move to band 0, which is no queue's (due for the pruner when
-- the oldest moved is no longer remembered). At most `room` entries are moved or
-- dropped; a band holding more is finished by a later call.
-- Returns whether it was forgotten, and the room left (0 when the room ran out).
local function forget_queue(name, qid, qkeys, room)
  local lo = qid * BAND
  local top = int(lo + BAND - 1)
  for _, state in ipairs(STATES) do
    local horizon = index_horizon(state)
    local low = int(lo)
    if horizon then low = '(' .. int(lo + NOW - horizon) end
    if redis.call('ZCOUNT', STATE_KEY[state], low, top) > 0 then return false, room end
  end
  local remembered = NOW - TTL - DONE_TTL
  for _, state in ipairs(STATES) do
    local key = STATE_KEY[state]
    local stale = redis.call('ZRANGEBYSCORE', key, int(lo), top, 'WITHSCORES', 'LIMIT', 0, room + 1)
    local count = #stale / 2
    local take = math.min(count, room)
    local dropped, moved = {}, {}
    for i = 1, take do
      local ms = tonumber(stale[2 * i]) - lo
      if state == 'success' and ms >= remembered then
        append(moved, int(ms), stale[2 * i - 1])
      else
        dropped[#dropped + 1] = stale[2 * i - 1]
      end
    end
    if #dropped > 0 then redis.call('ZREM', key, unpack(dropped)) end
    if #moved > 0 then
      redis.call('ZADD', key, unpack(moved))
      -- the oldest moved comes first
      redis.call('ZADD', qkeys.due, 'LT', int(tonumber(moved[1]) + TTL + DONE_TTL), 'success:0')
    end
    room = room - take
    if count > take then return false, 0 end
  end
  redis.call('HDEL', QUEUES, name)
  redis.call('RPUSH', qkeys.free, qid)
  unrecord_queue(qkeys, qid)
  return true, room
end

-- A job's hash as a table by field name (HGETALL: one pass over a small hash, where
-- HMGET of the fields a track may have looks each one up).
local function fields_of(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- A job read from its hash (every field, in job.h), or nil when it has no track.
local function load(key)
  local h = fields_of(key)
  if not h[F_QID] then return nil end -- every track has a queue id, even mid-registration
  return {key = key, jid = jid_of(key), h = h, state = h.s, qid = tonumber(h[F_QID]),
          reserve_until = tonumber(h.r), label_keys = h.lk, parent = h[F_PARENT],
          pending = tonumber(h.pp) or 0, dependents = h.dk, released = h.dr,
          batch = h[F_BATCH] == '1',
          percent = tonumber(h.p), prerequisite_sets = h.pl, payload = h.pk, staged = h.px,
          gate = h.gk, open_children = h.ok, errors = h.e, delay = tonumber(h.dl),
          blocked_by = h.bb, eligible_at = tonumber(h.ea)}
end

-- Fencing: the refusal of a write that names an attempt (`attempt`, '' for none) that
-- is not running: another than the job's current one (`current`, its field a), or the
-- current one once it ended while the job goes on (reaped: failed, or enqueued again).
-- Returns nil when the write may go on. A reaped attempt's worker may wake up after the
-- next attempt started: it must not write into it.
local function fence(state, current, attempt)
  if attempt == '' then return nil end
  if tonumber(attempt) ~= (tonumber(current) or 0) or (state ~= 'working' and not TERMINAL[state])
  then
    return {2, state, 'superseded', current or '0', attempt}
  end
end

-- HDEL that keeps the loaded copy of the hash in step.
local function forget(job, field)
  redis.call('HDEL', job.key, field)
  job.h[field] = nil
end

-- The track of a loaded hash, as a flat field/value list of TRACK_FIELDS; and its length.
local function track_of(h)
  local track, n = {}, 0
  for i = 1, #TRACK_FIELDS do
    local field = TRACK_FIELDS[i]
    local value = h[field]
    if value then track[n + 1], track[n + 2], n = field, value, n + 2 end
  end
  return track, n
end

-- The whole track for a reply: an event's (track_of's list and its length), then what
-- events leave out because it may weigh kilobytes (the payload shown, the tracebacks).
local function replied(h, track, size)
  if h.pj then track[size + 1], track[size + 2], size = 'pj', h.pj, size + 2 end
  if h.tb then track[size + 1], track[size + 2] = 'tb', h.tb end
  return track
end

-- Append the event of a change of job `jid` to the stream: `jid`, `w` the state it left
-- ('' for a new job; none for a TRACK SET), `track` (track_of's flat list: the whole
-- track, in TRACK_FIELDS' order), then `rl` the release latency in ms (`release_ms`,
-- when given). A reader needs nothing else; and entries of one shape keep the field
-- names once per stream node.
local function add_event(jid, was, track, release_ms)
  local size = #track
  if release_ms then track[size + 1], track[size + 2] = 'rl', int(release_ms) end
  if was then
    redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_KEPT, '*', 'jid', jid, 'w', was,
      unpack(track))
  else
    redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_KEPT, '*', 'jid', jid, unpack(track))
  end
  track[size + 1], track[size + 2] = nil, nil
end

-- Write the new state and `fields` of one job, then keep everything derived from
-- it in step: its state index, reservation, expiry, label indexes and the event
-- stream. `release_ms` (optional): the release latency, for the event alone, never stored.
-- Returns the track as a flat field/value list (TRACK_FIELDS, then the payload shown
-- and the tracebacks, which its event leaves out).
local function commit(job, new_state, fields, release_ms)
  SPENT = SPENT + 1 -- the unit of a call's budget (see work() in _graph.lua)
  local old_state = job.state
  local n = #fields
  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 's', new_state, 'u', NOW_TEXT
  redis.call('HSET', job.key, unpack(fields))
  local h = job.h
  local reserved_until = tonumber(h.r)
  for i = 1, n + 4, 2 do h[fields[i]] = fields[i + 1] end
  if old_state ~= new_state then
    if old_state then redis.call('ZREM', STATE_KEY[old_state], job.jid) end
    if TERMINAL[new_state] then prune_band(new_state, job.qid) end
    if h.hd then -- its hand-off's check is moot (see dispatch in _graph.lua)
      redis.call('ZREM', SCHEDULE, job.key)
      redis.call('HDEL', job.key, 'hd', 'hl', 'hn')
      h.hd, h.hl, h.hn = nil, nil, nil
    end
  end
  redis.call('ZADD', STATE_KEY[new_state], int(job.qid * BAND + NOW), job.jid)
  -- the expiry follows the state, and a working job's reservation
  local expiry = nil
  if new_state == 'working' and job.reserve_until then
    if old_state ~= new_state or job.reserve_until ~= reserved_until then
      redis.call('ZADD', RESERVED, int(job.reserve_until), job.jid)
      expiry = math.max(job.reserve_until - NOW + TTL, 1000)
    end
  else
    if old_state == 'working' and h.r then
      redis.call('ZREM', RESERVED, job.jid)
      forget(job, 'r')
      job.reserve_until = nil
    end
    expiry = TERMINAL[new_state] and TTL or PENDING_TTL
  end
  if expiry then
    redis.call('PEXPIRE', job.key, int(expiry))
    if not TERMINAL[new_state] then
      -- what it will need until it ends lives as long as it (settle() sees to the rest)
      if job.payload then redis.call('PEXPIRE', job.payload, int(expiry)) end
      if job.staged then redis.call('PEXPIRE', job.staged, int(expiry)) end
      if job.dependents then redis.call('PEXPIRE', job.dependents, int(expiry)) end
    end
  end
  if job.label_keys then
    for _, label_key in ipairs(split_lines(job.label_keys)) do
      redis.call('ZADD', label_key, NOW_TEXT, job.key)
    end
  end
  job.state = new_state
  local track, size = track_of(h)
  add_event(job.jid, old_state or '', track, release_ms)
  return replied(h, track, size)
end

-- Prepend an error to the job's history (newest first, MAX_ERRORS kept); returns the JSON.
-- A traceback (optional) goes to `tb`, a JSON list kept in step with the history: it is
-- not a track field, so events never carry up to 80 KiB of tracebacks (TRACK GET does).
local function with_error(job, message, error_type, source, traceback)
  local errors = {}
  if job.errors then errors = cjson.decode(job.errors) end
  local entry = {message = message, at = NOW}
  if error_type ~= '' then entry.type = error_type end
  if source ~= '' then entry.source = source end
  table.insert(errors, 1, entry)
  while #errors > MAX_ERRORS do table.remove(errors) end
  job.errors = cjson.encode(errors)
  if (traceback and traceback ~= '') or job.h.tb then
    local tracebacks = {}
    if job.h.tb then tracebacks = cjson.decode(job.h.tb) end
    table.insert(tracebacks, 1, traceback or '')
    while #tracebacks > #errors do table.remove(tracebacks) end
    job.h.tb = cjson.encode(tracebacks)
    redis.call('HSET', job.key, 'tb', job.h.tb)
  end
  return job.errors
end

-- The job a failure started from: the source of the newest error, or the job itself.
local function root_of(job)
  if job.errors then
    local newest = cjson.decode(job.errors)[1]
    if newest and newest.source then return newest.source end
  end
  return job.jid
end
