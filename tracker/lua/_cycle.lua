-- The cycle check of register.lua, shared after _graph.lua.
--
-- Events, not jobs, are followed: R(j) "j is released" and S(j) "j succeeded". What
-- waits for what among unfinished jobs: R(j) waits for S(p) of each prerequisite p
-- whose dependents set still holds j, and for R(b) while its batch b holds it in its
-- gate; S(j) waits for R(j) and, for a batch, for S(c) of each unfinished child. A
-- job that ended (or has no track) waits for nothing and nothing waits for it: its
-- success is done, its death decides its dependents at once.
--
-- Registering a job adds edges from its release R(new) to what it would wait for (the
-- targets), and S(parent) -> S(new). Every cycle they close runs from R(new) through
-- existing edges to a target, so two searches walk towards each other, one down from
-- R(new) (what follows from it: the jobs already waiting for the new one) and one up
-- from the targets (what they wait for: their prerequisites and children), each
-- taking a step while it has spent no more than the other. Whichever side runs out
-- first proves there is no cycle; meeting proves one. So a job that 100,000 others
-- wait for, registered with a prerequisite of its own, costs what that prerequisite's
-- ancestors cost, and the other way round. Every step is bounded (sets are read with
-- SSCAN, long prerequisite lists a slice at a time) and the whole search stops at
-- CYCLE_BUDGET Redis calls: only a graph large on both sides is refused for its size.

local CYCLE_BUDGET = 600 -- Redis calls: within the 5 ms a call may take (bench/scale.py)
local CYCLE_SCAN = 50 -- set members read per step, and prerequisites checked per step

-- 'cycle', 'graph_too_large', or nil when registering `key` closes no cycle.
-- `dependents`: the key's dependents set (jobs registered before it that wait for it);
-- `parent`: its batch's key or nil; `targets`: the nodes R(key) would wait for.
local function closes_cycle(key, dependents, parent, targets)
  local spent = 0
  local states = {} -- job key -> state, false when it has no track
  local function alive(job_key)
    if job_key == key then return true end -- registered by this very call
    local state = states[job_key]
    if state == nil then
      state = redis.call('HGET', job_key, 's') or false
      spent = spent + 1
      states[job_key] = state
    end
    return state and not TERMINAL[state]
  end

  local down = {seen = {}, queue = {}, head = 1, spent = 0}
  local up = {seen = {}, queue = {}, head = 1, spent = 0}
  down.other, up.other = up, down

  -- true when `node` joins `side` where the other side already is: a cycle
  local function reach(side, node)
    if side.seen[node] or not alive(string.sub(node, 2)) then return false end
    side.seen[node] = true
    if side.other.seen[node] then return true end
    side.queue[#side.queue + 1] = node
    return false
  end

  -- R(key) and S(key) are where the down side starts; S(parent) waits for S(key).
  down.seen['R' .. key], down.seen['S' .. key] = true, true
  down.queue[1] = {set = dependents, cursor = '0', as = 'R'}
  if parent then reach(down, 'S' .. parent) end
  for _, node in ipairs(targets) do
    if reach(up, node) then return 'cycle' end
  end

  local function scan(side, item)
    local got = redis.call('SSCAN', item.set, item.cursor, 'COUNT', CYCLE_SCAN)
    spent = spent + 1
    if got[1] ~= '0' then
      item.cursor = got[1]
      side.queue[#side.queue + 1] = item
    end
    for _, member in ipairs(got[2]) do
      if reach(side, item.as .. member) then return true end
    end
    return false
  end

  -- a slice of a waiting job's prerequisites (job keys, one a line): those it still waits for
  local function prerequisites(item)
    local n = 0
    while n < CYCLE_SCAN do
      local stop = string.find(item.text, '\n', item.at, true)
      local line = string.sub(item.text, item.at, (stop or 0) - 1)
      item.at = stop and stop + 1 or #item.text + 1
      n = n + 1
      if line == '' then -- nothing: the text's end
      elseif line == key then -- the new job, whose dependents set is at hand
        spent = spent + 1
        if redis.call('SISMEMBER', dependents, item.job) == 1 then return true end
      elseif alive(line) then
        local set = redis.call('HGET', line, 'dk')
        spent = spent + 2
        if set and redis.call('SISMEMBER', set, item.job) == 1 and reach(up, 'S' .. line) then
          return true
        end
      end
      if not stop then return false end
    end
    up.queue[#up.queue + 1] = item
    return false
  end

  local function step(side)
    local node = side.queue[side.head]
    side.head = side.head + 1
    local before = spent
    local found
    if type(node) == 'table' then
      if node.set then found = scan(side, node) else found = prerequisites(node) end
    else
      local kind, job_key = string.sub(node, 1, 1), string.sub(node, 2)
      local h = redis.call('HMGET', job_key, 'dk', F_PARENT, 'gk', 'ok', 'pq')
      spent = spent + 1
      if side == down and kind == 'R' then
        found = reach(down, 'S' .. job_key)
        if h[3] then down.queue[#down.queue + 1] = {set = h[3], cursor = '0', as = 'R'} end
      elseif side == down then
        if h[1] then down.queue[#down.queue + 1] = {set = h[1], cursor = '0', as = 'R'} end
        found = h[2] and reach(down, 'S' .. h[2])
      elseif kind == 'S' then
        found = reach(up, 'R' .. job_key)
        if h[4] then up.queue[#up.queue + 1] = {set = h[4], cursor = '0', as = 'S'} end
      else
        if h[5] then up.queue[#up.queue + 1] = {text = h[5], at = 1, job = job_key} end
        if h[2] and alive(h[2]) then
          local gate = redis.call('HGET', h[2], 'gk')
          spent = spent + 2
          found = gate and redis.call('SISMEMBER', gate, job_key) == 1 and reach(up, 'R' .. h[2])
        end
      end
    end
    side.spent = side.spent + spent - before
    return found
  end

  while true do
    local down_done, up_done = down.head > #down.queue, up.head > #up.queue
    if down_done or up_done then return nil end
    if spent >= CYCLE_BUDGET then return 'graph_too_large' end
    local side = down
    if not up_done and up.spent < down.spent then side = up end
    if step(side) then return 'cycle' end
  end
end
