-- wrk script for the closed-loop probe: POST a unique address per request, then
-- print one JSON line with the figures the harness reads (after "BENCH ").
-- The prefix comes from the WRK_PREFIX environment variable.
local prefix = os.getenv("WRK_PREFIX") or "wrk"
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = string.format('{"email": "%s-%d-%d@example.com"}', prefix, tid, counter)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "status_errors": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
end
