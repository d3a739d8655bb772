-- drain: carry on fan-out work left by earlier calls, within the budget.
-- Any number of processes may drain at once: each task consumes its set atomically.
-- Returns {0, more fan-out work (1 or 0)}.
local tasks = redis.call('LRANGE', FANOUT, 0, 99)
redis.call('LTRIM', FANOUT, #tasks, -1)
for _, encoded in ipairs(tasks) do
  local task = {}
  for part in string.gmatch(encoded .. '\t', '([^\t]*)\t') do task[#task + 1] = part end
  WORK[#WORK + 1] = task
end
return {0, work()}
