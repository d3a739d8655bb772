-- list: the newest live jobs by state and queue, after a cursor, as jids with their times.
-- ARGV[9] states, comma separated ('' for all)  ARGV[10] queue ('' for all)
-- ARGV[11] cursor updated_at (ms) or ''  ARGV[12] cursor jid  ARGV[13] limit
-- Returns {0, {jid, updated_at, ...}}: up to limit + 1 entries, newest first; an extra
-- entry means there is a next page.
prune_working()
local limit = tonumber(ARGV[13])
local want = limit + 1
local states = STATES
if ARGV[9] ~= '' then states = split_lines(string.gsub(ARGV[9], ',', '\n')) end
local qids = {}
if ARGV[10] ~= '' then
  local qid = redis.call('HGET', QUEUES, ARGV[10])
  if qid then qids[1] = tonumber(qid) end
else
  local all = redis.call('HVALS', QUEUES)
  for i = 1, #all do qids[i] = tonumber(all[i]) end
end
local cursor_ms, cursor_jid = tonumber(ARGV[11]), ARGV[12]
local top = cursor_ms or (BAND - 1)

local found = {}
for _, state in ipairs(states) do
  local horizon = index_horizon(state)
  for _, qid in ipairs(qids) do
    local lo = qid * BAND
    local low = int(lo)
    if horizon then low = '(' .. int(lo + NOW - horizon) end
    local offset, taken = 0, 0
    while taken < want do
      local page = redis.call('ZREVRANGEBYSCORE', STATE_KEY[state], int(lo + top), low,
        'WITHSCORES', 'LIMIT', offset, want)
      for i = 1, #page, 2 do
        local ms = tonumber(page[i + 1]) - lo
        -- equal times come in descending jid order: skip those the cursor already passed
        if not (cursor_ms and ms == cursor_ms and page[i] >= cursor_jid) then
          found[#found + 1] = {ms, page[i]}
          taken = taken + 1
        end
      end
      if #page < want * 2 then break end
      offset = offset + want
    end
  end
end
table.sort(found, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] > b[2]
end)
local out = {}
for i = 1, math.min(#found, want) do
  out[#out + 1] = found[i][2]
  out[#out + 1] = int(found[i][1])
end
return {0, out}
