-- wrk script for the benchmark: POST a JSON body, print one machine-readable line at the end.
-- Environment: BENCH_BODY (the JSON body), BENCH_AUTH (Authorization header value, default "Bearer sk-bench"),
--              BENCH_HEADERS (optional extra headers, "Name: value" separated by newlines).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH") or "Bearer sk-bench"
local extra = os.getenv("BENCH_HEADERS")
if extra then
  for line in string.gmatch(extra, "[^\n]+") do
    local k, v = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
    if k then wrk.headers[k] = v end
  end
end

-- no response() callback: defining one makes wrk parse every reply into Lua and slows the driver down;
-- non-2xx/3xx replies are still counted in summary.errors.status.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
