-- prune: drop expired entries from the state zsets' bands (one state's jobs of one
-- queue) that are due, within a budget; forget the queues none of whose jobs is live
-- (their ids go to the free list, for new names); and drop working jobs that expired
-- unreaped. Maintenance runs it; commits prune a little too.
-- A band is due when its oldest entry may have expired, or its oldest live one may have
-- ended (then the queue may have no live job left: a band found without one checks the
-- others, and forgets the queue when none has). Entries only ever get newer, so a band
-- is never due sooner than recorded. A queue's bands are recorded when it gets its id
-- (queue_id in _common.lua) and leave with it; band 0 (successes remembered for
-- forgotten queues) is recorded while it holds any. Queue ids in the table but not in
-- the records (namespaces made before records were kept) are recorded here, due now:
-- that reads the two tables whole (at most MAX_QUEUES each), only while their sizes
-- differ, so a call with nothing due reads nothing whatever the queues.
-- BANDS_DUE bands by when due (zset of 'state:queue id')  QUEUES_RECORDED queue ids
-- recorded (hash id -> name)  FREE_QUEUE_IDS the free queue ids list
-- READS most Redis calls and entries dropped, together
-- Returns {0, dropped, more (1 when more is due now, 0 otherwise)}.
prune_working()
local qkeys = queue_keys(FREE_QUEUE_IDS, BANDS_DUE, QUEUES_RECORDED)
local budget = tonumber(READS)
local spent, unrecorded = 4, false

if redis.call('HLEN', QUEUES) ~= redis.call('HLEN', qkeys.recorded) then
  local named, by_id = redis.call('HGETALL', QUEUES), {}
  for i = 1, #named, 2 do by_id[named[i + 1]] = named[i] end
  local recorded = redis.call('HGETALL', qkeys.recorded)
  spent = spent + 2
  for i = 1, #recorded, 2 do
    if by_id[recorded[i]] ~= recorded[i + 1] then
      spent = spent + unrecord_queue(qkeys, recorded[i])
    else
      by_id[recorded[i]] = nil
    end
  end
  for qid, name in pairs(by_id) do
    if spent >= budget / 2 then
      unrecorded = true
      break
    end
    record_queue(qkeys, name, qid, NOW)
    spent = spent + 8
  end
  redis.call('ZADD', qkeys.due, 'NX', NOW_TEXT, 'success:0') -- what an older version moved
end

local dropped, gone = 0, {}
local bands = redis.call('ZRANGEBYSCORE', qkeys.due, '-inf', NOW_TEXT, 'LIMIT', 0,
  math.max(1, math.floor((budget - spent) / 3)))
-- One due band, with `room` for the entries it may drop.
local function prune_band_due(band, state, qid, room)
  local key, lo, keep = STATE_KEY[state], qid * BAND, keep_horizon(state)
  local top = int(lo + BAND - 1)
  local stale = redis.call('ZRANGEBYSCORE', key, int(lo), int(lo + NOW - keep), 'LIMIT', 0, room)
  spent = spent + 3 + #stale
  if #stale > 0 then dropped = dropped + redis.call('ZREM', key, unpack(stale)) end
  if #stale == room then
    redis.call('ZADD', qkeys.due, NOW_TEXT, band) -- the budget ended its read: more next call
  else
    local oldest = redis.call('ZRANGEBYSCORE', key, int(lo), top, 'WITHSCORES', 'LIMIT', 0, 1)
    spent = spent + 1
    if qid == 0 then -- band 0: remembered successes only, no queue's
      if #oldest > 0 then
        redis.call('ZADD', qkeys.due, int(tonumber(oldest[2]) + keep), band)
      else
        redis.call('ZREM', qkeys.due, band)
      end
    else
      local live_horizon = index_horizon(state)
      local live = oldest
      if keep ~= live_horizon then -- a success older than the TTL is remembered, not live
        live = redis.call('ZRANGEBYSCORE', key, '(' .. int(lo + NOW - live_horizon), top,
          'WITHSCORES', 'LIMIT', 0, 1)
        spent = spent + 1
      end
      local forgotten, due = false, nil
      if #live == 0 then -- none of this band's jobs is live: perhaps none of the queue's
        local name = redis.call('HGET', qkeys.recorded, qid)
        spent = spent + 2
        if name and redis.call('HGET', QUEUES, name) == tostring(qid) then
          local left
          forgotten, left = forget_queue(name, qid, qkeys, math.max(budget - spent, 16))
          spent = spent + 8 + math.max(budget - spent, 16) - left
          if forgotten then gone[qid] = true end
          if not forgotten and left == 0 then due = NOW end -- more to move: next call
        else -- a record the queue table no longer has: drop it (the id is recorded again
          -- above, under its new name, if it is in use)
          spent = spent + unrecord_queue(qkeys, qid)
          forgotten = true
          gone[qid] = true
        end
      end
      if not forgotten then
        if not due then
          due = NOW + live_horizon -- the band's next entry is newer than NOW
          if #oldest > 0 then due = tonumber(oldest[2]) - lo + keep end
          if #live > 0 then due = math.min(due, tonumber(live[2]) - lo + live_horizon) end
        end
        redis.call('ZADD', qkeys.due, int(due), band)
      end
    end
  end
end
for _, band in ipairs(bands) do
  local room = budget - spent - 3
  if room <= 0 then break end
  local state, qid = string.match(band, '^(%a+):(%d+)$')
  qid = tonumber(qid)
  -- a band of a queue this call forgot went with it
  if not gone[qid] then prune_band_due(band, state, qid, room) end
end
local more = unrecorded or #redis.call('ZRANGEBYSCORE', qkeys.due, '-inf', NOW_TEXT, 'LIMIT', 0, 1) > 0
return {0, dropped, more and 1 or 0}
