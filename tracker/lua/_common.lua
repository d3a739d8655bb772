-- Shared by every script; scripts.py puts it in front of each operation's file.
--
-- KEYS[1]  events stream          KEYS[2]  reservations zset    KEYS[3] queues hash
-- KEYS[4..11] state zsets: waiting paused enqueued working failed success dead cancelled
-- KEYS[12..] the operation's own keys (a job's hash, then its payload, ...)
-- ARGV[1] now in ms, or '' for the server's TIME   ARGV[2] TTL ms
-- ARGV[3] PENDING_TTL ms                           ARGV[4] events kept (approximate)
-- ARGV[5..] the operation's own arguments
--
-- Replies are tables whose first element is a code:
--   {0, ...}                 done
--   {1}                      the job has no track
--   {2, state, reason, ...}  the job's state refuses this (reason is a short code)
--   {3, field, reason}       an input the script alone can judge is invalid

local EVENTS, RESERVED, QUEUES = KEYS[1], KEYS[2], KEYS[3]
local STATES = {'waiting', 'paused', 'enqueued', 'working', 'failed', 'success', 'dead', 'cancelled'}
local STATE_KEY = {}
for i, state in ipairs(STATES) do STATE_KEY[state] = KEYS[3 + i] end
local TERMINAL = {success = true, dead = true, cancelled = true}
local BAND = 4398046511104 -- 2^42: one queue's range of scores in a state zset
local MAX_ERRORS = 10

local NOW = tonumber(ARGV[1])
if not NOW then
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TTL, PENDING_TTL, EVENTS_KEPT = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

-- Lua numbers are doubles; print them whole so scores and times stay exact.
local function int(n) return string.format('%.0f', n) end

-- Entries of `state` older than this many ms before NOW have expired with their track.
local function index_horizon(state)
  if state == 'working' then return nil end -- the reaper ends these, by reservation
  if TERMINAL[state] then return TTL end
  return PENDING_TTL
end

-- Drop a few expired entries from one queue's band; each commit calls this, so the
-- work stays small and the index never grows past what is alive.
local function prune_band(state, qid)
  local horizon = index_horizon(state)
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

-- Write the new state and `fields` of one job, then keep everything derived from
-- it in step: its state index, reservation, expiry, label indexes and the event
-- stream. `job` is what the caller read: {key, jid, state, qid, reserve_until, label_keys}.
-- Returns the track as a flat field/value list.
local function commit(job, new_state, fields)
  local old_state = job.state
  fields[#fields + 1] = 's'
  fields[#fields + 1] = new_state
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = int(NOW)
  redis.call('HSET', job.key, unpack(fields))
  if old_state and old_state ~= new_state then
    redis.call('ZREM', STATE_KEY[old_state], job.jid)
  end
  redis.call('ZADD', STATE_KEY[new_state], int(job.qid * BAND + NOW), job.jid)
  local lifetime
  if new_state == 'working' then
    redis.call('ZADD', RESERVED, int(job.reserve_until), job.jid)
    lifetime = math.max(job.reserve_until - NOW + TTL, 1000)
  else
    if old_state == 'working' then
      redis.call('ZREM', RESERVED, job.jid)
      redis.call('HDEL', job.key, 'r')
    end
    lifetime = TERMINAL[new_state] and TTL or PENDING_TTL
    prune_band(new_state, job.qid)
  end
  redis.call('PEXPIRE', job.key, int(lifetime))
  for _, label_key in ipairs(split_lines(job.label_keys)) do
    redis.call('ZADD', label_key, int(NOW), job.jid)
  end
  local track = redis.call('HGETALL', job.key)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_KEPT, '*', 'jid', job.jid, unpack(track))
  return track
end

-- Read what commit() needs plus `extra` fields (returned as job.extra[i]).
local function load(key, jid, ...)
  local got = redis.call('HMGET', key, 's', 'Q', 'r', 'lk', ...)
  if not got[1] then return nil end
  local extra = {}
  for i = 5, #got do extra[i - 4] = got[i] end
  return {key = key, jid = jid, state = got[1], qid = tonumber(got[2]),
          reserve_until = tonumber(got[3]), label_keys = got[4], extra = extra}
end

-- A failed attempt: record the error, then `failed` if a retry is allowed and
-- attempts remain, else `dead`. Used by fail.lua and by the reaper.
local function fail_job(job, payload_key, message, error_type, retry, source)
  local attempts = tonumber(job.extra[1]) or 0
  local max_attempts = tonumber(job.extra[2]) or 25
  local errors = {}
  if job.extra[3] then errors = cjson.decode(job.extra[3]) end
  local entry = {message = message, at = NOW}
  if error_type ~= '' then entry.type = error_type end
  if source ~= '' then entry.source = source end
  table.insert(errors, 1, entry)
  while #errors > MAX_ERRORS do table.remove(errors) end
  local new_state = 'dead'
  if retry and attempts < max_attempts then new_state = 'failed' end
  if new_state == 'dead' then redis.call('DEL', payload_key) end
  return commit(job, new_state, {'e', cjson.encode(errors)})
end

-- TRACK SET of one job: percent and desc on any unfinished job, reserve_until only
-- later, only while working. A refusal applies nothing. Used by track_set(_many).lua.
local function track_set(key, jid, percent, desc_given, desc, reserve_until)
  local job = load(key, jid)
  if not job then return {1} end
  if TERMINAL[job.state] then return {2, job.state, 'finished'} end
  local fields = {}
  if reserve_until ~= '' then
    local wanted = tonumber(reserve_until)
    if job.state ~= 'working' then return {2, job.state, 'not_working'} end
    if wanted < job.reserve_until then
      return {2, job.state, 'reserve_earlier', int(job.reserve_until)}
    end
    job.reserve_until = wanted
    fields[#fields + 1] = 'r'
    fields[#fields + 1] = int(wanted)
  end
  if percent ~= '' then
    fields[#fields + 1] = 'p'
    fields[#fields + 1] = percent
  end
  if desc_given == '1' then
    fields[#fields + 1] = 'd'
    fields[#fields + 1] = desc
  end
  return {0, commit(job, job.state, fields)}
end
