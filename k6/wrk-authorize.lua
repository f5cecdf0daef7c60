-- wrk script: authorize with a unique idempotency key per request, for finding the
-- highest sustainable rate (wrk is a closed loop and far cheaper per request than k6).
--   wrk -t2 -c64 -d60s --latency -s k6/wrk-authorize.lua http://127.0.0.1:8080
local counter = 0
local thread_id = 0
local run = tostring(os.time())

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"merchantId":"MERCHANT-%d","amount":%d,"currency":"KRW","idempotencyKey":"wrk-%s-%d-%d"}',
    counter % 1000, 1000 + counter % 50000, run, tid or 0, counter)
  return wrk.format("POST", "/api/payments/authorize", { ["Content-Type"] = "application/json" }, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d of %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.requests))
end
