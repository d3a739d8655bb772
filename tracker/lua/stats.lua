-- stats: how many live jobs each queue has in each state (pruning what expired).
-- Returns {0, {queue, state, count, queue, state, count, ...}} for every non-zero count.
prune_working()
local queues = redis.call('HGETALL', QUEUES)
local out = {}
for i = 1, #queues, 2 do
  local lo = tonumber(queues[i + 1]) * BAND
  for _, state in ipairs(STATES) do
    local horizon = index_horizon(state)
    local low = int(lo)
    if horizon then low = '(' .. int(lo + NOW - horizon) end
    local count = redis.call('ZCOUNT', STATE_KEY[state], low, int(lo + BAND - 1))
    if count > 0 then
      out[#out + 1] = queues[i]
      out[#out + 1] = state
      out[#out + 1] = count
    end
  end
end
return {0, out}
