-- wrk script: POST the AdmissionReview in $BODY_FILE and print one machine-readable line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end

-- With DELAY_MS, each connection pauses between requests: a paced load below saturation, so
-- latencies compare handlers rather than queue lengths.
local pause = tonumber(os.getenv("DELAY_MS") or "")
if pause then
  delay = function() return pause end
end
