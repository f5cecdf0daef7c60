// The reference system's full flow: authorize, capture, refund with short sleeps, at a
// constant arrival rate of iterations.
//
//   BASE_URL default http://127.0.0.1:8080, RATE iterations/s (default 300),
//   DURATION (default 60s), MERCHANTS (default 1000),
//   KEYS_FILE / ADMIN_TOKEN merchant API keys (see lib/merchant-keys.js); neither: no keys
//
// Thresholds are the reference's (failed < 5 %, payment errors < 0.2 %, p95 < 500 ms);
// the numbers that matter are recorded in the README. A refund right after a capture is
// accepted while the capture settles (its refund waits for the capture), so every request
// of an iteration is expected to be answered 200.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';
import exec from 'k6/execution';
import { setupKeys, teardownKeys, headersFor } from './lib/merchant-keys.js';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '300', 10);
const DURATION = __ENV.DURATION || '60s';
const MERCHANTS = parseInt(__ENV.MERCHANTS || '1000', 10);
const RUN_ID = __ENV.RUN_ID || `${Date.now()}`;

const paymentErrors = new Rate('payment_errors');

export const options = {
  scenarios: {
    full_flow: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(100, RATE * 2),
      maxVUs: Math.max(400, RATE * 4),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.05'],
    'http_req_duration{expected_response:true}': ['p(95)<500'],
    payment_errors: ['rate<0.002'],
    // Per-endpoint latency in the summary (the same bound; the numbers go to the README).
    'http_req_duration{name:authorize}': ['p(95)<500'],
    'http_req_duration{name:capture}': ['p(95)<500'],
    'http_req_duration{name:refund}': ['p(95)<500'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return setupKeys(BASE_URL, MERCHANTS);
}

export function teardown(data) {
  teardownKeys(BASE_URL, data);
}

let setupData = null;

function post(path, body, name) {
  const params = { tags: { name }, headers: headersFor(setupData, body.merchantId) };
  return http.post(`${BASE_URL}${path}`, JSON.stringify(body), params);
}

export default function (data) {
  setupData = data;
  const n = exec.scenario.iterationInTest;
  const merchantId = `MERCHANT-${n % MERCHANTS}`;
  const auth = post('/api/payments/authorize', { merchantId, amount: 10000 + (n % 1000), currency: 'KRW', idempotencyKey: `ff-${RUN_ID}-${n}` }, 'authorize');
  const paymentId = auth.status === 200 ? auth.json('paymentId') : null;
  if (!paymentId) {
    paymentErrors.add(true);
    return;
  }
  sleep(0.1 + Math.random() * 0.2);
  const capture = post(`/api/payments/capture/${paymentId}`, { merchantId }, 'capture');
  let ok = check(capture, { 'capture requested': (r) => r.status === 200 });
  sleep(0.5 + Math.random() * 0.5);
  const refund = post(`/api/payments/refund/${paymentId}`, { merchantId, reason: 'k6 full flow', idempotencyKey: `r-${RUN_ID}-${n}` }, 'refund');
  ok = check(refund, { 'refund requested': (r) => r.status === 200 }) && ok;
  paymentErrors.add(!ok);
}
