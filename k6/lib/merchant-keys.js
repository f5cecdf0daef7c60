// Merchant API keys for the scenarios (issue 14). With merchant_auth = "required" every
// payment request carries `Authorization: Bearer <key of its merchant>`:
//
//   KEYS_FILE   a JSON object {merchantId: key} made beforehand (cargo xtask bench does
//               this once, outside its CPU measurement), or
//   ADMIN_TOKEN a write-scoped admin token: setup() creates one key per merchant through
//               the admin API and teardown() revokes them (the dashboard's runner).
//
// With neither, no key is sent: the scenarios run unchanged against merchant_auth = "off".
import http from 'k6/http';

const FILE_KEYS = __ENV.KEYS_FILE ? JSON.parse(open(__ENV.KEYS_FILE)) : null;

export function setupKeys(baseUrl, merchants) {
  if (FILE_KEYS || !__ENV.ADMIN_TOKEN) return { keys: null, created: [] };
  const admin = { headers: { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` }, tags: { name: 'setup' } };
  const keys = {};
  const created = [];
  for (let start = 0; start < merchants; start += 25) {
    const batch = [];
    for (let i = start; i < Math.min(merchants, start + 25); i++) {
      batch.push(['POST', `${baseUrl}/api/admin/merchants/MERCHANT-${i}/keys`, null, admin]);
    }
    http.batch(batch).forEach((res, j) => {
      if (res.status !== 201) throw new Error(`key for MERCHANT-${start + j}: ${res.status} ${res.body}`);
      keys[`MERCHANT-${start + j}`] = res.json('key');
      created.push([`MERCHANT-${start + j}`, res.json('keyId')]);
    });
  }
  return { keys, created };
}

export function teardownKeys(baseUrl, data) {
  if (!data || !data.created.length) return;
  const admin = { headers: { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` }, tags: { name: 'setup' } };
  for (let start = 0; start < data.created.length; start += 25) {
    http.batch(data.created.slice(start, start + 25).map(([m, id]) =>
      ['DELETE', `${baseUrl}/api/admin/merchants/${m}/keys/${id}`, null, admin]));
  }
}

// The request headers for `merchantId`: JSON, and its key when there is one.
export function headersFor(data, merchantId) {
  const keys = FILE_KEYS || (data && data.keys);
  const headers = { 'Content-Type': 'application/json' };
  if (keys) headers.Authorization = `Bearer ${keys[merchantId]}`;
  return headers;
}
