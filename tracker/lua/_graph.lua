-- The dependency graph, shared by every script after _common.lua: releases,
-- failure propagation, batch roll-up, and the queue hand-off.
--
-- Work that spreads through the graph (a job with 100,000 dependents) is a list
-- of tasks: this call does at most BUDGET commits' worth (a queue hand-off counts
-- as one more), well within the few ms a call may take, and pushes what is left
-- onto the fan-out list for drain.lua, so no call blocks Redis for long. Each
-- task consumes a set with SPOP in the same script that acts on the members, so
-- every edge is followed exactly once, whoever runs the task and however often
-- a process dies in between.
--
-- A task is {kind, set key, root jid, reason, SSCAN cursor, when (ms) its work began,
-- the set that keeps what a release or kill pops (see keys.py: dr; may be absent)};
-- kinds:
--   release  members lose one pending prerequisite; at zero they are released
--   open     the same for the children a batch held while it waited
--   kill     members become dead (failure propagation on)
--   mark     members stay waiting, blocked_by the root (propagation off; not consumed)
--   cancel   members are cancelled (a cancelled batch's unfinished children)
--   unmark   members blocked_by the root wait again as before, or blocked by the job
--            in `reason` (its retry; not consumed)
--   revive   dead members the root's death killed wait again (a retry with dependents)

local function add_work(kind, set_key, root, reason, kept)
  if set_key then
    WORK[#WORK + 1] = {kind, set_key, root or '', reason or '', '0', int(NOW), kept or ''}
  end
end

-- The queue hand-off, as registration stored it (see handoff.py): the version of its
-- format, then one list element per argument, each command preceded by its number of
-- arguments, the first command the undo of the others. Stored split, since a fan-out
-- replays thousands of them. HANDOFF_VERSION is handoff.py's too (a test holds them
-- together): a hand-off stored in another format is not read.
local HANDOFF_VERSION = 'v1'

-- Why the stored hand-off `stored` (its list) cannot be replayed, or nil when it can.
local function unreadable(stored)
  if #stored == 0 then return 'none is stored (its list expired or was deleted)' end
  if stored[1] ~= HANDOFF_VERSION then
    return "it is stored in format '" .. string.sub(stored[1], 1, 32)
      .. "', and this tracker reads " .. HANDOFF_VERSION
  end
  return nil
end

-- Runs the undo (`undo` true) or every other command of a readable hand-off.
local function replay(stored, undo)
  local count = tonumber(stored[2])
  if undo then return redis.call(unpack(stored, 3, count + 2)) end
  local i = count + 3
  while i <= #stored do
    count = tonumber(stored[i])
    redis.call(unpack(stored, i + 1, i + count))
    i = i + count + 1
  end
end

-- Budget units of replaying a hand-off: it costs about half a release without one
-- (bench/release_breakdown.py), counted whole.
local HANDOFF_COST = 1
-- What releasing a member of a set costs at most in the common case: its commit and
-- its hand-off (a batch's release or a kill may cost more; work() then gives back).
local RELEASE_COST = 1 + HANDOFF_COST

local fail_job

-- A job handed to its queue is due for a look (check_handoff) `ht` seconds later, in
-- the schedule: one entry per job, its next due moment. commit() takes it out once the
-- job leaves the state it was handed in (started, paused, cancelled, finished).
-- Returns true, or false when the job's hand-off is unreadable: then the job is failed
-- instead, dead with error type HandoffUnreadable (no retry, which would replay the same
-- hand-off; no attempt counted, none ran), and what depends on it follows as on any
-- failure. It never waits `enqueued` in no queue.
local function dispatch(job)
  if not job.payload then return true end
  local stored = redis.call('LRANGE', job.payload, 0, -1)
  local wrong = unreadable(stored)
  if wrong then
    fail_job(job, 'the hand-off to queue ' .. job.h.q .. ' is unreadable: ' .. wrong,
      'HandoffUnreadable', false)
    return false
  end
  SPENT = SPENT + HANDOFF_COST
  replay(stored, false)
  if job.h.ht then
    local at = int(NOW + tonumber(job.h.ht) * 1000)
    redis.call('HSET', job.key, 'hd', at)
    job.h.hd = at
    redis.call('ZADD', SCHEDULE, at, job.key)
  end
  return true
end

-- An unreadable hand-off has nothing to undo that can be known (its release fails the job).
local function undispatch(job)
  if not job.payload then return end
  local stored = redis.call('LRANGE', job.payload, 0, -1)
  if not unreadable(stored) then replay(stored, true) end
end

local settle, release

-- HINCRBY that keeps the loaded copy of the hash in step.
local function bump(job, field, by)
  local value = redis.call('HINCRBY', job.key, field, by)
  job.h[field] = tostring(value)
  return value
end

-- SPEC section 5: floor(sum of children's percent, success counting 100) over the
-- children, one more while unsealed, at most 99 until the batch succeeds.
local function batch_percent(h)
  local children = tonumber(h.bt)
  if h.sl ~= '1' then children = children + 1 end
  if children == 0 then return 0 end
  return math.min(99, math.floor((tonumber(h.bp) + 100 * tonumber(h.bs)) / children))
end

local rollup

-- SPEC 3: cancelling a batch cancels its unfinished children, nested ones included.
-- That cancel travels down through the open-children sets, a set (or a chunk) at a
-- time, so something else may reach a job below it first: a failure passed on by a
-- dependency, a child that ended badly, a nested batch's last child. Whatever
-- reaches first, the cancel wins, so that the outcome never depends on the order in
-- which sets are popped. True when the batch `parent_key` is cancelled, or is an
-- unfinished batch below a cancelled one: the cancel will reach its children.
local function cancel_coming(parent_key)
  while parent_key do
    local got = redis.call('HMGET', parent_key, 's', F_PARENT)
    if got[1] == 'cancelled' then return true end
    if not got[1] or TERMINAL[got[1]] then return false end
    parent_key = got[2]
  end
  return false
end

local function finish_batch_if_done(batch)
  if batch.state ~= 'working' then return false end
  local c = batch.h
  if c.sl ~= '1' or tonumber(c.bd) > 0 or tonumber(c.bs) ~= tonumber(c.bt) then
    return false
  end
  if cancel_coming(batch.parent) then return false end
  commit(batch, 'success', {})
  settle(batch, 'working')
  return true
end

-- A batch's counters changed: it ends if its children decided it, else it keeps
-- its percent in `p`, like any job, and passes a change on to its own batch.
local function batch_changed(batch)
  if finish_batch_if_done(batch) then return end
  local old = batch.percent or 0
  local new = batch_percent(batch.h)
  commit(batch, batch.state, {'p', new})
  batch.percent = new
  if new ~= old then rollup(batch, batch.state, new - old) end
end

-- A child moved (old_state -> child.state) or its percent changed by `delta`:
-- keep its batch's running sums, and end the batch when the children decide it.
rollup = function(child, old_state, delta)
  if not child.parent then return end
  local batch = load(child.parent)
  if not batch or TERMINAL[batch.state] then return end
  local state = child.state
  if state == 'success' and old_state ~= 'success' then
    bump(batch, 'bs', 1)
    if (child.percent or 0) ~= 0 then bump(batch, 'bp', -child.percent) end
    redis.call('SREM', batch.open_children, child.key)
  elseif (state == 'dead' or state == 'cancelled') and not TERMINAL[old_state] then
    local was = batch.state
    if cancel_coming(batch.parent) then -- as if the cancel had come first
      commit(batch, 'cancelled', {})
      settle(batch, was)
      return
    end
    bump(batch, 'bd', 1)
    redis.call('SREM', batch.open_children, child.key)
    local root = child.jid
    if state == 'dead' then root = root_of(child) end
    commit(batch, 'dead', {'e', with_error(batch, 'child ' .. child.jid .. ' is ' .. state,
      'ChildFailed', root)})
    settle(batch, was)
    return
  elseif delta ~= 0 then
    bump(batch, 'bp', delta)
  end
  batch_changed(batch)
end

-- A job whose prerequisites all succeeded goes on: a batch starts working (and
-- lets its children go), a delayed job waits in the schedule, any other job is
-- enqueued and handed to its queue. `since`: when it became releasable (the success
-- that started the release task), for the event's release latency `rl`.
release = function(job, since)
  if job.batch then
    commit(job, 'working', {})
    add_work('open', job.gate)
    finish_batch_if_done(job)
  elseif job.delay and job.delay > 0 then
    local at = NOW + job.delay * 1000
    commit(job, 'waiting', {'ea', int(at)})
    redis.call('ZADD', SCHEDULE, int(at), job.key)
  else
    commit(job, 'enqueued', {}, since and math.max(NOW - since, 0))
    dispatch(job)
  end
end

-- What follows from a job reaching its current state from `old_state`.
settle = function(job, old_state)
  local state = job.state
  if not TERMINAL[state] then return end
  if old_state == 'enqueued' or old_state == 'failed' then undispatch(job) end
  if state == 'success' then
    if job.staged then redis.call('DEL', job.payload, job.staged)
    elseif job.payload then redis.call('DEL', job.payload) end
  elseif job.payload then -- kept for a retry (retry.lua), as long as the track
    redis.call('PEXPIRE', job.payload, int(TTL))
    if job.staged then redis.call('PEXPIRE', job.staged, int(TTL)) end
  end
  if state == 'success' then
    add_work('release', job.dependents, nil, nil, job.released)
  else
    for _, set_key in ipairs(split_lines(job.prerequisite_sets)) do
      redis.call('SREM', set_key, job.key)
    end
    local root = job.jid
    if state == 'dead' then root = root_of(job) end
    local kind = PROPAGATE and 'kill' or 'mark'
    add_work(kind, job.dependents, root, 'prerequisite ' .. job.jid .. ' is ' .. state,
      job.released)
    if job.batch and state == 'cancelled' then
      add_work('cancel', job.open_children)
    elseif job.batch then
      add_work(kind, job.gate, root, 'batch ' .. job.jid .. ' is ' .. state)
    end
  end
  rollup(job, old_state, 0)
end

-- One of the job's pending prerequisites succeeded (`held_by_batch`: its waiting batch
-- was released). Nothing else is read until the count reaches zero: a job waiting for
-- many prerequisites carries a long `pl`, and reading its hash at each of them made a
-- fan-in quadratic in bytes. The whole job is loaded once, when it may be released.
local function decrement(key, held_by_batch, since)
  if held_by_batch then redis.call('HDEL', key, 'gh') end
  if redis.call('HINCRBY', key, 'pp', -1) > 0 then return end
  local job = load(key)
  if not job then -- its track had expired: the hash HINCRBY made goes with its one field
    redis.call('HDEL', key, 'pp')
  elseif job.state == 'waiting' and not job.blocked_by then
    release(job, since)
  end
end

local function kill(key, root, reason)
  local job = load(key)
  if not job or TERMINAL[job.state] then return end
  local was = job.state
  if cancel_coming(job.parent) then
    commit(job, 'cancelled', {})
  else
    commit(job, 'dead', {'e', with_error(job, reason, 'PrerequisiteFailed', root)})
  end
  settle(job, was)
end

local function mark(key, root)
  local job = load(key)
  if not job or TERMINAL[job.state] or job.blocked_by then return end
  commit(job, job.state, {'bb', root})
  add_work('mark', job.dependents, root)
  if job.batch then add_work('mark', job.gate, root) end
end

-- The state of a job that has a set `set_key` of {ns}:d:<jid> or {ns}:g:<jid>, read
-- from the state indexes (they hold jids): 'success', 'dead', 'cancelled' or nil.
-- Those key prefixes have the length of a job key's, so jid_of reads the jid off them.
local function ended_state(set_key)
  local jid = jid_of(set_key)
  for _, state in ipairs({'success', 'dead', 'cancelled'}) do
    if redis.call('ZSCORE', STATE_KEY[state], jid) then return state end
  end
  return nil
end

-- The root of a blocking or killing failure was retried (retry.lua): what its mark
-- blocked waits as if it never had, and is released if nothing else is pending;
-- unless another prerequisite of it ended badly too: then that one (or `instead`,
-- the blocker found above it) blocks it, and what it blocks.
local function unmark(key, root, instead)
  local job = load(key)
  if not job or TERMINAL[job.state] or job.blocked_by ~= root then return end
  local blocker = instead ~= '' and instead or nil
  if not blocker then
    for _, set_key in ipairs(split_lines(job.prerequisite_sets)) do
      local ended = ended_state(set_key)
      if ended == 'dead' or ended == 'cancelled' then
        blocker = jid_of(set_key)
        break
      end
    end
  end
  if blocker then
    commit(job, job.state, {'bb', blocker})
  else
    forget(job, 'bb')
    if job.state == 'waiting' and job.pending <= 0 then
      release(job)
    else
      commit(job, job.state, {})
    end
  end
  add_work('unmark', job.dependents, root, blocker)
  if job.batch then add_work('unmark', job.gate, root, blocker) end
end

-- A dependent that the root's death killed waits again for what is still pending
-- (it rejoins those sets), or is released; then so do the dependents its death
-- killed. A batch, a batch's child, and a job with another dead or cancelled
-- prerequisite stay dead.
local function revive(key, root)
  local job = load(key)
  if not job or job.state ~= 'dead' or job.batch or job.parent then return end
  local newest = job.errors and cjson.decode(job.errors)[1]
  if not newest or newest.type ~= 'PrerequisiteFailed' or newest.source ~= root then return end
  local waits = {}
  for _, set_key in ipairs(split_lines(job.prerequisite_sets)) do
    local ended = ended_state(set_key)
    if ended == 'dead' or ended == 'cancelled' then return end
    if ended ~= 'success' then waits[#waits + 1] = set_key end
  end
  for _, set_key in ipairs(waits) do
    redis.call('SADD', set_key, key)
    redis.call('PEXPIRE', set_key, int(PENDING_TTL))
  end
  local fields = {'pp', #waits}
  if #waits > 0 then
    append(fields, 'pl', table.concat(waits, '\n'))
  elseif job.prerequisite_sets then
    forget(job, 'pl')
  end
  job.pending = #waits
  if #waits > 0 then
    commit(job, 'waiting', fields)
  else
    redis.call('HSET', job.key, unpack(fields))
    for i = 1, #fields, 2 do job.h[fields[i]] = fields[i + 1] end
    release(job)
  end
  add_work('revive', job.released, root)
end

local function cancel_job(key)
  local job = load(key)
  if not job or TERMINAL[job.state] then return end
  local was = job.state
  commit(job, 'cancelled', {})
  settle(job, was)
end

-- Run this call's tasks within the budget; leave the rest on the fan-out list.
-- Returns 1 when the fan-out list holds work for drain.lua, else 0.
local function work()
  local i = 1
  while i <= #WORK do
    local task = WORK[i]
    i = i + 1
    local kind, set_key, root, reason = task[1], task[2], task[3], task[4]
    local room = BUDGET - SPENT
    if room <= 0 then
      redis.call('RPUSH', FANOUT, table.concat(task, '\t'))
    elseif kind == 'mark' or kind == 'unmark' then
      local scan = redis.call('SSCAN', set_key, task[5], 'COUNT', room)
      local each = kind == 'mark' and mark or unmark
      for _, key in ipairs(scan[2]) do each(key, root, task[4]) end
      if scan[1] ~= '0' then
        task[5] = scan[1]
        redis.call('RPUSH', FANOUT, table.concat(task, '\t'))
      end
    else
      -- Pop what the room left would release if each member cost RELEASE_COST, and
      -- again while room is left, at most `room` members in all: popping `room` at
      -- once gave most of them back (SADD) when they carried a hand-off.
      local cap, handled, left, spent_out = room, 0, true, false
      while left and not spent_out do
        local want = math.min(math.ceil((BUDGET - SPENT) / RELEASE_COST), cap - handled)
        if want <= 0 then break end
        local members = redis.call('SPOP', set_key, want)
        if task[7] and task[7] ~= '' and #members > 0 then -- kept while its track lives
          redis.call('SADD', task[7], unpack(members))
          redis.call('PEXPIRE', task[7], int(TTL))
        end
        -- fewer than asked for: the set is gone (nothing here adds to a set being consumed)
        left = #members >= want
        handled = handled + #members
        for m, key in ipairs(members) do
          if SPENT >= BUDGET then -- costlier than hoped: the rest goes back for the next call
            redis.call('SADD', set_key, unpack(members, m))
            left, spent_out = true, true
            break
          end
          if kind == 'release' or kind == 'open' then
            decrement(key, kind == 'open', tonumber(task[6]))
          elseif kind == 'kill' then
            kill(key, root, reason)
          elseif kind == 'revive' then
            revive(key, root)
          else
            cancel_job(key)
          end
        end
      end
      if left and redis.call('EXISTS', set_key) == 1 then
        redis.call('RPUSH', FANOUT, table.concat(task, '\t'))
      end
    end
  end
  WORK = {}
  if redis.call('LLEN', FANOUT) > 0 then return 1 end
  return 0
end

-- TRACK SET of one job: percent and desc on any unfinished job, reserve_until only
-- later, only while working. A refusal applies nothing. It is the hot path, so it
-- reads the hash once, for what it judges by and the track its event carries, and
-- writes only what changed. Used by track_set(_many).lua: a child's TRACK SET may
-- touch its batch, never finish it.
-- `attempt` ('' for none): the attempt the writer runs; another attempt's write is refused
-- (fencing: a stale attempt never writes into its successor).
-- Returns {0, state}, {0, state, track} when `returning`, or a refusal.
local function track_set(key, percent, desc_given, desc, reserve_until, attempt, returning)
  local h = fields_of(key)
  local state = h.s
  if not state then return {1} end
  local fenced = fence(state, h.a, attempt)
  if fenced then return fenced end
  if TERMINAL[state] then return {2, state, 'finished'} end
  local jid = jid_of(key)
  local was_percent = tonumber(h.p) or 0
  local fields, n = {'u', NOW_TEXT}, 2
  local extended = nil
  if reserve_until ~= '' then
    local wanted, current = tonumber(reserve_until), tonumber(h.r)
    if state ~= 'working' then return {2, state, 'not_working'} end
    if h[F_BATCH] == '1' then return {2, state, 'batch_reserve'} end
    if wanted < current then return {2, state, 'reserve_earlier', int(current)} end
    if wanted > current then
      extended = wanted
      fields[n + 1], fields[n + 2], n = 'r', int(wanted), n + 2
    end
  end
  if percent ~= '' then
    if h[F_BATCH] == '1' then return {2, state, 'batch_percent'} end
    fields[n + 1], fields[n + 2], n = 'p', percent, n + 2
  end
  if desc_given == '1' then fields[n + 1], fields[n + 2], n = 'd', desc, n + 2 end
  redis.call('HSET', key, unpack(fields))
  for i = 1, n, 2 do h[fields[i]] = fields[i + 1] end
  redis.call('ZADD', STATE_KEY[state], int(tonumber(h[F_QID]) * BAND + NOW), jid)
  local expiry = nil
  if extended then
    redis.call('ZADD', RESERVED, int(extended), jid)
    expiry = extended - NOW + TTL
  elseif state ~= 'working' then
    expiry = PENDING_TTL
  end
  if expiry then -- what it needs until it ends lives as long as it (as in commit())
    redis.call('PEXPIRE', key, int(expiry))
    if h.pk then redis.call('PEXPIRE', h.pk, int(expiry)) end
    if h.px then redis.call('PEXPIRE', h.px, int(expiry)) end
    if h.dk then redis.call('PEXPIRE', h.dk, int(expiry)) end
  end
  if h.lk then
    for _, label_key in ipairs(split_lines(h.lk)) do
      redis.call('ZADD', label_key, NOW_TEXT, key)
    end
  end
  local track, size = track_of(h)
  add_event(jid, nil, track)
  if h[F_PARENT] and percent ~= '' and tonumber(percent) ~= was_percent then
    rollup(load(key), state, tonumber(percent) - was_percent)
  end
  if not returning then return {0, state} end
  return {0, state, replied(h, track, size)}
end

-- A failed attempt: record the error, then `failed` if a retry is allowed and
-- attempts remain, else `dead`. Used by fail.lua and by the reaper.
-- A job with a payload goes back to its queue after `backoff` ms, doubling with each
-- attempt up to 32 times (the schedule, see promote.lua); others wait for their worker.
fail_job = function(job, message, error_type, retry, backoff, traceback)
  local attempts = tonumber(job.h.a) or 0
  local max_attempts = tonumber(job.h.m) or 25
  local new_state = 'dead'
  if retry and attempts < max_attempts then new_state = 'failed' end
  local was = job.state
  local fields = {'e', with_error(job, message, error_type, '', traceback)}
  local again = nil
  if new_state == 'failed' and job.payload and backoff then
    again = NOW + backoff * 2 ^ math.min(math.max(attempts - 1, 0), 5)
    append(fields, 'ea', int(again))
  end
  local track = commit(job, new_state, fields)
  if again then redis.call('ZADD', SCHEDULE, int(again), job.key) end
  settle(job, was)
  return track
end

-- A hand-off looked at again: after MAX_REHANDS it is given up, HANDOFF_CONFIRM_MS is
-- the most a second look waits, and HANDOFF_SCAN bounds the search of a long RQ queue.
local MAX_REHANDS, HANDOFF_CONFIRM_MS, HANDOFF_SCAN = 3, 5000, 1000

-- A job handed to its RQ queue `ht` seconds ago and not started (promote.lua). Still in
-- its queue, it waits for a busy worker: looked at again `ht` later. Taken from its queue
-- (in the queue's intermediate list, where RQ's dequeue moves it, or in neither), a worker
-- may be starting it right now: looked at once more, shortly after. Still not started
-- then, its worker died between the dequeue and the start: the job goes back to its queue
-- (a job started meanwhile by a slow worker is refused by start to the other: it never
-- runs twice at once), at most MAX_REHANDS times; then it fails with HandoffLost, as a
-- failed attempt (it counts as one, so that hand-offs that keep getting lost end dead).
-- Beyond the first HANDOFF_SCAN entries of a queue, RQ's own status of the job says
-- whether it is still queued. Returns 'waiting', 'looked', 'rehanded', 'lost', or
-- 'unreadable' (its hand-off, see dispatch).
local function check_handoff(job, backoff)
  local timeout = tonumber(job.h.ht) * 1000
  local probe = split_lines(job.h.hk)
  local queue, taken, rq_job = probe[1], probe[2], probe[3]
  local waiting = false
  if not redis.call('LPOS', taken, job.jid, 'MAXLEN', HANDOFF_SCAN) then
    waiting = redis.call('LPOS', queue, job.jid, 'MAXLEN', HANDOFF_SCAN) ~= false
    if not waiting and redis.call('LLEN', queue) > HANDOFF_SCAN then
      waiting = redis.call('HGET', rq_job, 'status') == 'queued'
    end
  end
  local outcome, at = 'waiting', NOW + timeout
  if waiting then
    if job.h.hl then forget(job, 'hl') end
  elseif not job.h.hl then
    outcome, at = 'looked', NOW + math.min(timeout, HANDOFF_CONFIRM_MS)
    redis.call('HSET', job.key, 'hl', NOW_TEXT)
  else
    redis.call('LREM', taken, 0, job.jid)
    local handed = (tonumber(job.h.hn) or 0) + 1
    forget(job, 'hl')
    if handed > MAX_REHANDS then
      forget(job, 'hd')
      forget(job, 'hn')
      bump(job, 'a', 1)
      fail_job(job, 'not started after ' .. handed .. ' hand-offs to queue ' .. job.h.q,
        'HandoffLost', true, backoff)
      return 'lost'
    end
    undispatch(job) -- no second copy, wherever in its queue a stale one may sit
    commit(job, job.state, {'hn', handed}) -- the event says it was handed again
    if not dispatch(job) then return 'unreadable' end
    return 'rehanded'
  end
  redis.call('HSET', job.key, 'hd', int(at))
  redis.call('ZADD', SCHEDULE, int(at), job.key)
  return outcome
end
