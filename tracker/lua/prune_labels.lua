-- prune_labels: drop jobs whose track expired from the label (and children) zsets that
-- are due, as the zset of zsets in use says, within a budget; forget a zset once empty.
-- A zset is due when its oldest entry may have expired: an entry is updated with its
-- job, and a track lives at least min(TTL, PENDING_TTL) past its last update. Entries
-- older than that whose track lives on (a long wait, a long reservation) put the zset
-- off until the soonest of them may end.
-- LABELS_IN_USE label zsets in use, by when due  LABELS_IN_USE_UNSCORED the same, unscored
-- (older versions)  READS most entries (and zsets) to read
-- Returns {0, removed, more (1 when more is due now, 0 otherwise)}.
local in_use, unscored, budget = LABELS_IN_USE, LABELS_IN_USE_UNSCORED, tonumber(READS)
local horizon = math.min(TTL, PENDING_TTL)
for _, index in ipairs(redis.call('SPOP', unscored, 100)) do
  redis.call('ZADD', in_use, 'LT', NOW_TEXT, index)
end

local removed, read = 0, 0
local due = redis.call('ZRANGEBYSCORE', in_use, '-inf', NOW_TEXT, 'LIMIT', 0,
  math.max(1, math.floor(budget / 4)))
for _, index in ipairs(due) do
  local room = budget - read - 4 -- the zset's own reads and writes count four
  if room <= 0 then break end
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', int(NOW - horizon), 'LIMIT', 0, room)
  read = read + 4 + #old
  local gone, soonest = {}, nil
  for _, job_key in ipairs(old) do
    local left = redis.call('PTTL', job_key)
    if left == -2 then
      gone[#gone + 1] = job_key
    elseif left >= 0 and (not soonest or left < soonest) then
      soonest = left
    end
  end
  if #gone > 0 then removed = removed + redis.call('ZREM', index, unpack(gone)) end
  if redis.call('ZCARD', index) == 0 then
    redis.call('ZREM', in_use, index)
  elseif #gone > 0 and #old == room then
    redis.call('ZADD', in_use, NOW_TEXT, index) -- the budget ended its read: more next call
  else
    -- every entry older than the horizon was read: the next due is the newer entries'
    -- oldest, or a live old entry's end (some time later, if it has no end: a stray)
    local due = soonest and NOW + math.max(soonest, 1)
    local newer = redis.call('ZRANGEBYSCORE', index, '(' .. int(NOW - horizon), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    if #newer > 0 then due = math.min(due or math.huge, tonumber(newer[2]) + horizon) end
    redis.call('ZADD', in_use, int(due or NOW + horizon), index)
  end
end
local more = #redis.call('ZRANGEBYSCORE', in_use, '-inf', NOW_TEXT, 'LIMIT', 0, 1)
if more == 0 then more = redis.call('SCARD', unscored) end
return {0, removed, math.min(more, 1)}
