-- prune_labels: drop jobs whose track expired from one label (or children) zset; forget
-- the zset once empty.
-- KEYS[14] label zsets in use  KEYS[15] the zset  KEYS[16..] candidates (job keys, its members)
-- Returns {0, removed}.
local removed = 0
for i = 16, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[15], KEYS[i])
  end
end
if redis.call('ZCARD', KEYS[15]) == 0 then redis.call('SREM', KEYS[14], KEYS[15]) end
return {0, removed}
