-- prune: drop expired entries from the state zsets' bands (one state's jobs of one
-- queue) that are due, within a budget; and working jobs that expired unreaped.
-- Maintenance runs it; commits prune a little too. A band is due when its oldest entry
-- may have expired (entries only ever get newer, so the band is never due sooner than
-- recorded); a queue's bands are recorded due when it is first seen.
-- KEYS[14] bands by when due (zset of 'state:queue id')  KEYS[15] queue ids recorded (set)
-- ARGV[9] most Redis calls and entries dropped, together
-- Returns {0, dropped, more (1 when more is due now, 0 otherwise)}.
prune_working()
local due_key, recorded, budget = KEYS[14], KEYS[15], tonumber(ARGV[9])
local spent, unrecorded = 2, false
local qids = redis.call('HVALS', QUEUES)
if #qids > 0 then
  local known = redis.call('SMISMEMBER', recorded, unpack(qids))
  for i, qid in ipairs(qids) do
    if known[i] == 0 then
      if spent >= budget / 2 then
        unrecorded = true
        break
      end
      for _, state in ipairs(STATES) do
        if keep_horizon(state) then redis.call('ZADD', due_key, 'NX', NOW_TEXT, state .. ':' .. qid) end
      end
      redis.call('SADD', recorded, qid)
      spent = spent + 8
    end
  end
end

local dropped = 0
local bands = redis.call('ZRANGEBYSCORE', due_key, '-inf', NOW_TEXT, 'LIMIT', 0,
  math.max(1, math.floor((budget - spent) / 3)))
for _, band in ipairs(bands) do
  local room = budget - spent - 3
  if room <= 0 then break end
  local state, qid = string.match(band, '^(%a+):(%d+)$')
  local horizon, key, lo = keep_horizon(state), STATE_KEY[state], tonumber(qid) * BAND
  local stale = redis.call('ZRANGEBYSCORE', key, int(lo), int(lo + NOW - horizon), 'LIMIT', 0, room)
  spent = spent + 3 + #stale
  if #stale > 0 then dropped = dropped + redis.call('ZREM', key, unpack(stale)) end
  if #stale == room then
    redis.call('ZADD', due_key, NOW_TEXT, band) -- the budget ended its read: more next call
  else
    local oldest = redis.call('ZRANGEBYSCORE', key, int(lo), int(lo + BAND - 1), 'WITHSCORES',
      'LIMIT', 0, 1)
    local due = NOW + horizon
    if #oldest > 0 then due = tonumber(oldest[2]) - lo + horizon end
    redis.call('ZADD', due_key, int(due), band)
  end
end
local more = unrecorded or #redis.call('ZRANGEBYSCORE', due_key, '-inf', NOW_TEXT, 'LIMIT', 0, 1) > 0
return {0, dropped, more and 1 or 0}
