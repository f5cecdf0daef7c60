// Authorize at a constant arrival rate (an open model: latency does not slow the
// generator down, so queueing shows up in the percentiles instead of hiding).
//
//   BASE_URL  default http://127.0.0.1:8080
//   RATE      requests per second, default 1050
//   DURATION  default 60s
//   MERCHANTS distinct merchants (spread over both shards), default 1000
//   KEYS_FILE / ADMIN_TOKEN  merchant API keys (see lib/merchant-keys.js); neither: no keys
//
// Every request carries a unique idempotency key. Thresholds are the reference system's
// (failed < 5 %, p95 < 500 ms, payment errors < 0.2 %) so the check passes on a loaded CI
// machine; the real numbers are recorded in the README's benchmark section.
import http from 'k6/http';
import { check } from 'k6';
import { Rate } from 'k6/metrics';
import exec from 'k6/execution';
import { setupKeys, teardownKeys, headersFor } from './lib/merchant-keys.js';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '1050', 10);
const DURATION = __ENV.DURATION || '60s';
const MERCHANTS = parseInt(__ENV.MERCHANTS || '1000', 10);
const RUN_ID = __ENV.RUN_ID || `${Date.now()}`;

const paymentErrors = new Rate('payment_errors');

export const options = {
  scenarios: {
    authorize: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(50, Math.ceil(RATE / 10)),
      maxVUs: Math.max(200, RATE),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.05'],
    http_req_duration: ['p(95)<500'],
    payment_errors: ['rate<0.002'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return setupKeys(BASE_URL, MERCHANTS);
}

export function teardown(data) {
  teardownKeys(BASE_URL, data);
}

export default function (data) {
  const n = exec.scenario.iterationInTest;
  const merchantId = `MERCHANT-${n % MERCHANTS}`;
  const body = JSON.stringify({
    merchantId,
    amount: 1000 + (n % 50000),
    currency: 'KRW',
    idempotencyKey: `k6-${RUN_ID}-${n}`,
  });
  const res = http.post(`${BASE_URL}/api/payments/authorize`, body, {
    headers: headersFor(data, merchantId),
    tags: { name: 'authorize' },
  });
  let ok = false;
  try {
    ok = res.status === 200 && res.json('paymentId') > 0 && res.json('status') === 'AUTHORIZED';
  } catch (e) {
    ok = false;
  }
  paymentErrors.add(!ok);
  check(res, { 'authorized': () => ok });
}
