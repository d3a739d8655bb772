-- list: the newest live jobs of some bands (one state's jobs of one queue), each after
-- its own cursor: the caller merges bands across calls (see Listing._band_ids in
-- listing.py), so a call reads only as much as it is asked for.
-- BANDS per band: state, qid (queue id), ms and jid (the cursor: updated_at, or '', and
-- jid), count (most jobs to return)
-- Returns {0, {n, jid, updated_at, ...}}: per band in order, how many it found, then them,
-- newest first (equal times in descending jid order).
prune_working()
local out = {}
for _, band in ipairs(BANDS) do
  local state, qid, ms, jid, count = band.state, tonumber(band.qid), tonumber(band.ms), band.jid,
    tonumber(band.count)
  local key, lo = STATE_KEY[state], qid * BAND
  local horizon = index_horizon(state)
  local low = lo - 1 -- entries above it are alive: older ones expired with their track
  if horizon then low = lo + NOW - horizon end
  local top = lo + BAND - 1
  if ms then top = lo + ms end
  local page = redis.call('ZREVRANGEBYSCORE', key, int(top), '(' .. int(low), 'WITHSCORES',
    'LIMIT', 0, count)
  if ms and #page > 0 and tonumber(page[2]) == top and page[1] >= jid then
    -- the cursor's own millisecond holds jobs it already passed: read on by rank from
    -- the first it did not
    local rank = rank_after(key, int(top), jid)
    page = redis.call('ZREVRANGE', key, rank, rank + count - 1, 'WITHSCORES')
    for i = 1, #page, 2 do
      if tonumber(page[i + 1]) <= low then
        for j = #page, i, -1 do page[j] = nil end
        break
      end
    end
  end
  out[#out + 1] = #page / 2
  for i = 1, #page, 2 do
    out[#out + 1] = page[i]
    out[#out + 1] = int(tonumber(page[i + 1]) - lo)
  end
end
return {0, out}
