-- worker_beat: a worker says it is alive (or, leaving, that it is gone), and workers
-- silent for too long are forgotten, a few a call.
-- KEYS[14] workers hash (name -> record)   KEYS[15] heartbeats zset (name by ms)
-- ARGV[9] name   ARGV[10] record (msgpack)   ARGV[11] forget after (ms)   ARGV[12] '1': leaving
-- Returns {0, now}.
local name, forget_after = ARGV[9], tonumber(ARGV[11])
if ARGV[12] == '1' then
  redis.call('HDEL', KEYS[14], name)
  redis.call('ZREM', KEYS[15], name)
else
  redis.call('HSET', KEYS[14], name, ARGV[10])
  redis.call('ZADD', KEYS[15], NOW, name)
end
local gone = redis.call('ZRANGE', KEYS[15], '-inf', NOW - forget_after, 'BYSCORE', 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('HDEL', KEYS[14], unpack(gone))
  redis.call('ZREM', KEYS[15], unpack(gone))
end
-- all of it goes once every worker has been silent that long
redis.call('PEXPIRE', KEYS[14], forget_after)
redis.call('PEXPIRE', KEYS[15], forget_after)
return {0, NOW}
