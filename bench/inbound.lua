-- wrk script for bench/bench_inbound.py: POST pre-signed Twilio webhooks, each once.
--
-- The request file has one request per line: "<X-Twilio-Signature>\t<urlencoded form>".
-- Thread k of n takes lines k, k+n, k+2n, ... so no two threads send the same
-- MessageSid. A thread that runs out starts again from its first line; the Python side
-- counts the stored messages to tell whether that happened (a repeat is a duplicate
-- delivery, which the app acknowledges without work, and would flatter the figures).
-- done() prints one JSON line that bench_inbound.py parses.

local request_file = os.getenv("BENCH_INBOUND_REQUESTS")
local thread_count = tonumber(os.getenv("BENCH_INBOUND_THREADS") or "1")
local next_id = 0

function setup(thread)
  thread:set("thread_index", next_id)
  next_id = next_id + 1
end

function init(args)
  prepared = {}
  position = 0
  local n = 0
  for line in io.lines(request_file) do
    if n % thread_count == thread_index then
      local signature, body = line:match("^([^\t]*)\t(.*)$")
      prepared[#prepared + 1] = wrk.format("POST", "/twilio/sms", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = signature,
      }, body)
    end
    n = n + 1
  end
end

function request()
  position = position + 1
  if position > #prepared then
    position = 1
  end
  return prepared[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "mean_us": %.1f, '
      .. '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
end
