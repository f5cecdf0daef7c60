// Drives the admin dashboard end to end in Debian's headless Chromium, through
// playwright-core (the driver library only; no browser download).
//
//   DASHBOARD_URL  the page, e.g. http://127.0.0.1:8087/admin
//   ADMIN_TOKEN    the admin token
//   SCREENSHOTS    folder for the screenshots
//   DLQ_TOPIC      the DLQ topic holding one dead letter to replay
//
// Steps: load; a wrong token is refused; log in; start a short k6 run from the Tests tab
// and wait for its report; check the throughput chart gained points; replay the dead
// letter from the System tab; the merchant_auth = off warning; create and roll a merchant
// API key from the Keys tab (the secret shown once, the list without it). Prints one JSON line of what it saw; exits 1 on any failure.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const url = process.env.DASHBOARD_URL;
const token = process.env.ADMIN_TOKEN;
const shots = process.env.SCREENSHOTS || 'screenshots';
const dlqTopic = process.env.DLQ_TOPIC || 'settlement.dlq';
mkdirSync(shots, { recursive: true });

const seen = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.screenshot({ path: `${shots}/1-login.png` });

  await page.fill('#token', 'not-the-token');
  await page.click('#login');
  await page.waitForSelector('#login-error:has-text("token refused")', { timeout: 5000 });
  seen.wrongTokenRefused = true;

  await page.fill('#token', token);
  await page.click('#login');
  await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('#kpi-total').textContent !== '–', null, { timeout: 10000 });
  seen.paymentsKpi = await page.textContent('#kpi-total');
  const pointsBefore = Number(await page.getAttribute('#chart-throughput', 'data-points'));

  await page.click('nav button[data-tab="tests"]');
  await page.waitForSelector('#k6-scenario option', { state: 'attached', timeout: 10000 });
  await page.selectOption('#k6-scenario', 'authorize');
  await page.fill('#k6-rate', '50');
  await page.fill('#k6-duration', '6');
  await page.click('#k6-start');
  await page.waitForSelector('#k6-status .RUNNING', { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('#k6-progress').textContent.length > 0, null, { timeout: 20000 });
  await page.screenshot({ path: `${shots}/2-k6-running.png` });
  await page.waitForSelector('#report-title', { timeout: 90000 });
  seen.reportTitle = await page.textContent('#report-title');
  seen.k6Status = await page.textContent('#k6-status');
  await page.screenshot({ path: `${shots}/3-k6-report.png`, fullPage: true });

  await page.click('nav button[data-tab="overview"]');
  await page.waitForFunction((before) => {
    const svg = document.querySelector('#chart-throughput');
    const max = Number((svg.querySelector('text')?.textContent || 'max 0').replace('max ', ''));
    return Number(svg.dataset.points) > before && max >= 20;
  }, pointsBefore, { timeout: 20000 });
  seen.chartPoints = Number(await page.getAttribute('#chart-throughput', 'data-points'));
  seen.chartMax = await page.textContent('#chart-throughput text');
  await page.screenshot({ path: `${shots}/4-overview-chart.png`, fullPage: true });

  await page.click('nav button[data-tab="system"]');
  await page.waitForSelector('#breakers td', { timeout: 10000 });
  await page.selectOption('#dlq-topic', dlqTopic);
  await page.click('#dlq-load');
  await page.waitForSelector('#dlq button.replay', { timeout: 15000 });
  await page.click('#dlq button.replay');
  await page.waitForSelector('#dlq button.replay:has-text("Replayed")', { timeout: 15000 });
  seen.replayMessage = await page.textContent('#message');
  await page.screenshot({ path: `${shots}/5-dlq-replayed.png`, fullPage: true });

  await page.waitForSelector('#auth-mode .FAILED:has-text("merchant_auth = off")', { timeout: 10000 });
  seen.authModeWarning = await page.textContent('#auth-mode');
  await page.click('nav button[data-tab="keys"]');
  await page.fill('#keys-merchant', 'M-DASHBOARD');
  await page.click('#keys-create');
  await page.waitForFunction(() => document.querySelector('#keys-secret').textContent.startsWith('prk_'), null, { timeout: 10000 });
  const first = await page.textContent('#keys-secret');
  await page.waitForSelector('#keys button[data-roll]', { timeout: 10000 });
  await page.click('#keys button[data-roll]');
  await page.waitForFunction((old) => {
    const t = document.querySelector('#keys-secret').textContent;
    return t.startsWith('prk_') && t !== old;
  }, first, { timeout: 10000 });
  await page.waitForSelector('#keys td:has-text("expiring")', { timeout: 10000 });
  const table = await page.textContent('#keys');
  if (table.includes(first.split('_').pop())) throw new Error('the key list shows a secret');
  seen.keysListed = (await page.$$('#keys tbody tr')).length;
  await page.screenshot({ path: `${shots}/6-keys.png`, fullPage: true });

  if (consoleErrors.length) throw new Error(`page errors: ${consoleErrors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), ...seen }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
