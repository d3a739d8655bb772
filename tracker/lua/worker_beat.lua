-- worker_beat: a worker says it is alive (or, leaving, that it is gone), and workers
-- silent for too long are forgotten, a few a call.
-- WORKERS hash (name -> record)  WORKER_BEATS heartbeats zset (name by ms)
-- NAME  RECORD (msgpack)  FORGET_AFTER (ms)  LEAVING '1': leaving
-- Returns {0, now}.
local name, forget_after = NAME, tonumber(FORGET_AFTER)
if LEAVING == '1' then
  redis.call('HDEL', WORKERS, name)
  redis.call('ZREM', WORKER_BEATS, name)
else
  redis.call('HSET', WORKERS, name, RECORD)
  redis.call('ZADD', WORKER_BEATS, NOW, name)
end
local gone = redis.call('ZRANGE', WORKER_BEATS, '-inf', NOW - forget_after, 'BYSCORE', 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('HDEL', WORKERS, unpack(gone))
  redis.call('ZREM', WORKER_BEATS, unpack(gone))
end
-- all of it goes once every worker has been silent that long
redis.call('PEXPIRE', WORKERS, forget_after)
redis.call('PEXPIRE', WORKER_BEATS, forget_after)
return {0, NOW}
