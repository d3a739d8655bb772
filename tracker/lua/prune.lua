-- prune: a page of queues at a time, drop expired entries from each queue's band of
-- every state zset, and forget the queues none of whose jobs is live (their ids go to
-- the free list, for new names). Maintenance walks every page (until the cursor comes
-- back '0'); commits prune a little too. The first page also drops working jobs that
-- expired unreaped, and successes no longer remembered from band 0 (forgotten queues').
-- KEYS[14] the free queue ids list
-- ARGV[9] most entries to drop per band  ARGV[10] the queues hash's HSCAN cursor ('0' first)
-- ARGV[11] queues per page (HSCAN's COUNT, a hint)
-- Returns {0, dropped, next cursor ('0' when the walk is done)}.
local limit, cursor = tonumber(ARGV[9]), ARGV[10]
local dropped = 0
local function drop(state, lo)
  local stale = redis.call('ZRANGEBYSCORE', STATE_KEY[state], int(lo),
    int(lo + NOW - keep_horizon(state)), 'LIMIT', 0, limit)
  if #stale > 0 then dropped = dropped + redis.call('ZREM', STATE_KEY[state], unpack(stale)) end
end
if cursor == '0' then
  prune_working()
  drop('success', 0)
end
local page = redis.call('HSCAN', QUEUES, cursor, 'COUNT', ARGV[11])
local queues = page[2]
for i = 1, #queues, 2 do
  local qid = tonumber(queues[i + 1])
  for _, state in ipairs(STATES) do
    if keep_horizon(state) then drop(state, qid * BAND) end
  end
  forget_queue(queues[i], qid, KEYS[14], limit)
end
return {0, dropped, page[1]}
