-- prune: drop expired entries from the state zsets, band by band (one state's jobs of
-- one queue), from a band on, within a budget; and working jobs that expired unreaped.
-- Maintenance runs it; commits prune a little too.
-- ARGV[9] most bands read and entries dropped, together
-- ARGV[10] the band to start from, 'state index:queue id' ('' for the first)
-- Returns {0, dropped, the band to go on from ('' when every band was read)}.
prune_working()
local budget = tonumber(ARGV[9])
local from_state, from_qid = string.match(ARGV[10], '^(%d+):(%d+)$')
from_state, from_qid = tonumber(from_state) or 1, tonumber(from_qid) or 0
local qids = redis.call('HVALS', QUEUES)
for i = 1, #qids do qids[i] = tonumber(qids[i]) end
table.sort(qids)
local spent, dropped = 0, 0
for s = from_state, #STATES do
  local state = STATES[s]
  local horizon = keep_horizon(state)
  if horizon then
    for _, qid in ipairs(qids) do
      if s > from_state or qid >= from_qid then
        if spent >= budget then return {0, dropped, s .. ':' .. qid} end
        local lo = qid * BAND
        local stale = redis.call('ZRANGEBYSCORE', STATE_KEY[state], int(lo),
          int(lo + NOW - horizon), 'LIMIT', 0, math.max(budget - spent - 1, 1))
        spent = spent + 1 + #stale
        if #stale > 0 then dropped = dropped + redis.call('ZREM', STATE_KEY[state], unpack(stale)) end
        if spent >= budget then return {0, dropped, s .. ':' .. qid} end
      end
    end
  end
end
return {0, dropped, ''}
