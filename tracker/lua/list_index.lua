-- list_index: walk a label or children zset (job keys by updated_at) newest first, from a
-- cursor, keeping the jobs of the states and queue asked for; at most a budget of entries
-- is read, so a filter that matches little costs a bounded call, and the caller goes on
-- from the cursor this returns.
-- INDEX the zset  STATE_NAMES states, comma separated ('' for all)  QUEUE ('' for all)
-- AFTER_MS cursor updated_at (ms) or ''  AFTER_KEY cursor job key: entries after both
-- WANT most jobs to return  READS most entries to read
-- Returns {0, {jid, updated_at, ...}, resume}: the jobs found, newest first; resume is
-- '' when the zset is read to its end or enough were found, else 'ms\njob key' of the
-- last entry read (the cursor to go on from).
local index, want, budget = INDEX, tonumber(WANT), tonumber(READS)
local wanted = {}
for _, state in ipairs(STATE_NAMES ~= '' and split_lines(string.gsub(STATE_NAMES, ',', '\n')) or STATES) do
  wanted[state] = true
end
local qid = false
if QUEUE ~= '' then
  qid = redis.call('HGET', QUEUES, QUEUE)
  if not qid then return {0, {}, ''} end
end

local rank = 0
if AFTER_MS ~= '' then rank = rank_after(index, AFTER_MS, AFTER_KEY) end

local found, read, stop = {}, 0, nil
while read < budget do
  local size = math.min(budget - read, 100)
  local page = redis.call('ZREVRANGE', index, rank, rank + size - 1, 'WITHSCORES')
  for i = 1, #page, 2 do
    local key = page[i]
    local got = redis.call('HMGET', key, 's', F_QID)
    read, stop = read + 1, {page[i + 1], key}
    if got[1] and wanted[got[1]] and (not qid or got[2] == qid) then
      found[#found + 1] = jid_of(key)
      found[#found + 1] = page[i + 1]
      if #found == want * 2 then return {0, found, ''} end
    end
  end
  if #page < size * 2 then return {0, found, ''} end -- the zset's end
  rank = rank + size
end
return {0, found, stop[1] .. '\n' .. stop[2]}
