-- prune_labels: drop jobs whose track expired from one label zset; forget the zset once empty.
-- KEYS[12] label zsets in use  KEYS[13] the label zset  KEYS[14..] the candidates' hashes
-- ARGV[5..] the candidates' jids, in the order of their hashes
-- Returns {0, removed}.
local removed = 0
for i = 14, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[13], ARGV[i - 9])
  end
end
if redis.call('ZCARD', KEYS[13]) == 0 then redis.call('SREM', KEYS[12], KEYS[13]) end
return {0, removed}
