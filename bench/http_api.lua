-- wrk's script for bench/http_api.py: `wrk ... -s http_api.lua URL -- JOBS get|post`.
-- Walks jobs job-00000 .. job-<JOBS-1>: GET /jobs/{jid}, or POST /jobs/{jid}/track with
-- {"percent": n, "desc": "copying files k/40"}. Prints one RESULT line of JSON at the end.
local jobs, post, n = 1000, false, 0

init = function(args)
  jobs = tonumber(args[1]) or jobs
  post = args[2] == "post"
end

request = function()
  n = n + 1
  local path = string.format("/jobs/job-%05d", n % jobs)
  if not post then
    return wrk.format("GET", path)
  end
  local body = string.format('{"percent":%d,"desc":"copying files %d/40"}', n % 101, n % 40)
  return wrk.format("POST", path .. "/track", {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
