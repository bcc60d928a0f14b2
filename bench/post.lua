-- wrk script: a payment callback with Basic auth and a JSON body.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic c2hvcDpiZW5jaC1zZWNyZXQ="
wrk.headers["X-Request-Id"] = "bench-req-1"
wrk.body = '{"order":{"id":"ORD-10001","amount":99.5},"status":"SUCCESS"}'

local non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
