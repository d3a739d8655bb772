-- prune: drop expired entries from every queue's band of every state zset, and
-- working jobs that expired unreaped. Maintenance runs it; commits prune a little too.
-- ARGV[9] most entries to drop per band
-- Returns {0, dropped}.
prune_working()
local limit = tonumber(ARGV[9])
local dropped = 0
local qids = redis.call('HVALS', QUEUES)
for _, state in ipairs(STATES) do
  local horizon = keep_horizon(state)
  if horizon then
    for _, qid in ipairs(qids) do
      local lo = tonumber(qid) * BAND
      local stale = redis.call('ZRANGEBYSCORE', STATE_KEY[state], int(lo), int(lo + NOW - horizon),
        'LIMIT', 0, limit)
      if #stale > 0 then dropped = dropped + redis.call('ZREM', STATE_KEY[state], unpack(stale)) end
    end
  end
end
return {0, dropped}
