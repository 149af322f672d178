// The operator dashboard in a real browser: Debian's headless Chromium driven by playwright-core
// against the single-node Brume that tests/dashboard/run.sh started. It checks what an operator
// does: a wrong key is refused; the admin key logs in; the host and the functions this test
// creates appear; invocations through the CLI move the invocation count and the recent list; an
// asynchronous one is counted accepted, then ended, in the event queue panel; a flood on a
// function with reserved concurrency 2 shows two in flight on the concurrency chart and a
// throttle in the throttles table; with counting stopped the page says which daemon is down and
// keeps showing the rest. Screenshots of each step go to $BRUME_ARTIFACTS.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { brume, brumeAsync, waitFor, stopDaemon, restartDaemons } from './lib.mjs';

const base = process.env.BRUME_DASH_URL;
const adminKey = readFileSync(process.env.BRUME_ADMIN_KEY_FILE, 'utf8').trim();
const hostId = process.env.BRUME_HOST_ID;
const artifacts = process.env.BRUME_ARTIFACTS;
const FLOOD = 'dash-flood';

function step(msg) {
  console.log(`browser: ${msg}`);
}

// A function that sleeps 3 s: long enough for a flood of callers to overlap.
function makeSleepZip() {
  const dir = mkdtempSync(join(tmpdir(), 'brume-dash-'));
  writeFileSync(join(dir, 'handler.sh'), '#!/bin/sh\ncat >/dev/null\nsleep 3\necho \'{"slept": 3}\'\n');
  chmodSync(join(dir, 'handler.sh'), 0o755);
  execFileSync('zip', ['-q', '-j', join(dir, 'f.zip'), join(dir, 'handler.sh')]);
  return join(dir, 'f.zip');
}

const intText = async (loc) => Number((await loc.textContent()).trim());

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  // Root in a container: no sandbox. This machine has no network: no background services.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused login answers 401, which the browser reports as a console error by itself.
    if (m.type() === 'error' && !/401|403/.test(m.text())) problems.push(`console: ${m.text()}`);
  });

  step('a wrong key is refused');
  await page.goto(`${base}/?refresh=500`);
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.fill('#api-key', adminKey.slice(0, -4) + '0000');
  await page.click('#login-button');
  await waitFor(async () => (await page.locator('#login-error').textContent()).trim() !== '',
    10000, 'no login error shown');
  assert.equal(await page.locator('#dashboard').isVisible(), false);
  await page.screenshot({ path: `${artifacts}/01-login-refused.png`, fullPage: true });

  step('the admin key logs in; the host and the functions appear');
  await page.fill('#api-key', adminKey);
  await page.click('#login-button');
  await page.locator('#dashboard').waitFor({ state: 'visible', timeout: 10000 });
  await page.locator('#login-form').waitFor({ state: 'hidden' });
  const host = page.locator(`#hosts [data-host-id="${hostId}"]`);
  await host.waitFor({ state: 'visible', timeout: 15000 });
  assert.match((await host.locator('.accelerator').textContent()).trim(), /^(KVM|TCG)$/);
  await host.locator('.mem-bar').waitFor({ state: 'visible' });
  await page.locator('#functions tr[data-function="admin/hello-c"]').waitFor({ timeout: 15000 });
  await page.locator('#status.ok').waitFor({ timeout: 15000 });

  brume(['function', 'create', FLOOD, '--handler-mode', 'exec', '--handler', 'handler.sh',
    '--timeout', '20s', '--zip', makeSleepZip()]);
  brume(['concurrency', 'put', FLOOD, '2']);
  const floodRow = page.locator(`#functions tr[data-function="admin/${FLOOD}"]`);
  await floodRow.waitFor({ timeout: 15000 });
  await waitFor(async () => (await floodRow.locator('.reserved').textContent()).includes('2'),
    15000, `reserved concurrency 2 not shown for ${FLOOD}`);
  await page.screenshot({ path: `${artifacts}/02-dashboard.png`, fullPage: true });

  step('invocations through the CLI move the count and the recent list');
  const helloRow = page.locator('#functions tr[data-function="admin/hello-c"]');
  const before = await intText(helloRow.locator('.invocations'));
  const totalBefore = await intText(page.locator('#summary-invocations'));
  for (let i = 0; i < 3; i++) {
    brume(['invoke', 'hello-c', '--payload', '{"name":"browser"}', '--request-id', `browser-${i}`]);
  }
  await waitFor(async () => (await intText(helloRow.locator('.invocations'))) === before + 3,
    15000, 'the function row did not count 3 more invocations');
  await waitFor(async () => (await intText(page.locator('#summary-invocations'))) >= totalBefore + 3,
    15000, 'the summary did not count 3 more invocations');
  await page.locator('#recent tr[data-request-id="browser-2"]').waitFor({ timeout: 15000 });

  step('an asynchronous invocation: accepted, then ended, in the event queue panel');
  const ended = page.locator('#event-counts tr[data-event-count="ended/succeeded"] .count');
  await ended.waitFor({ timeout: 15000 });
  const acceptedBefore = await intText(page.locator('#events-accepted'));
  const endedBefore = await intText(ended);
  brume(['invoke', 'hello-c', '--async', '--payload', '{"name":"browser-event"}']);
  await waitFor(async () => (await intText(page.locator('#events-accepted'))) === acceptedBefore + 1,
    15000, 'the event queue panel did not count the accepted event');
  await waitFor(async () => (await intText(ended)) === endedBefore + 1, 30000,
    'the event queue panel did not count the event that succeeded');
  assert.match((await page.locator('#events-depth').textContent()).trim(), /^\d+$/);
  await page.locator('#events').screenshot({ path: `${artifacts}/03-event-queue.png` });

  step('a flood on reserved concurrency 2: two in flight on the chart, a throttle in the table');
  const throttleRow = page.locator(
    `#throttles tr[data-throttle="admin/${FLOOD}/ReservedFunctionConcurrentInvocationLimitExceeded"]`);
  const throttlesBefore = (await throttleRow.count()) ? await intText(throttleRow.locator('.count')) : 0;
  const rowThrottlesBefore = await intText(floodRow.locator('.throttles'));
  const callers = [];
  for (let i = 0; i < 6; i++) {
    callers.push(brumeAsync(['invoke', FLOOD, '--no-retry', '--payload', '{}',
      '--request-id', `flood-${i}`]));
  }
  const results = await Promise.all(callers);
  const ran = results.filter((r) => r.code === 0).length;
  const refused = results.filter((r) => /ReservedFunctionConcurrentInvocationLimitExceeded/
    .test(r.stderr)).length;
  step(`flood: ${ran} ran, ${refused} throttled`);
  assert.ok(ran >= 2, `only ${ran} of the flood ran: ${JSON.stringify(results)}`);
  assert.ok(refused >= 1, 'nothing of the flood was throttled');
  await throttleRow.waitFor({ timeout: 15000 });
  await waitFor(async () => (await intText(throttleRow.locator('.count')))
    === throttlesBefore + refused, 15000, `the throttles table does not count ${refused} more`);
  await waitFor(async () => (await intText(floodRow.locator('.throttles')))
    === rowThrottlesBefore + refused, 15000, 'the function row does not count the throttles');
  // The chart of the flooded function: its series appears and peaks at the reserved 2.
  const option = `function:admin/${FLOOD}`;
  await waitFor(async () => (await page.locator(`#chart-select option[value="${option}"]`).count()) === 1,
    15000, `no chart series ${option}`);
  await page.selectOption('#chart-select', option);
  await waitFor(async () => (await page.getAttribute('#chart-svg', 'data-series')) === option
    && Number(await page.getAttribute('#chart-svg', 'data-peak')) === 2, 15000,
  'the chart does not show 2 in flight for the flooded function');
  await page.screenshot({ path: `${artifacts}/04-after-flood.png`, fullPage: true });

  step('counting down: the page says which daemon, and keeps the rest');
  // The asynchronous invocation above ran hello-c too: what the row shows now must stay.
  const helloCount = await intText(helloRow.locator('.invocations'));
  assert.ok(helloCount >= before + 3);
  await stopDaemon('counting');
  try {
    await page.locator('#status.degraded .down-daemon[data-daemon="counting"]')
      .waitFor({ timeout: 15000 });
    assert.ok(await host.isVisible());
    assert.ok(await helloRow.isVisible());
    assert.equal(await intText(helloRow.locator('.invocations')), helloCount);
    await page.screenshot({ path: `${artifacts}/05-counting-down.png`, fullPage: true });
  } finally {
    await restartDaemons();
  }
  await page.locator('#status.ok').waitFor({ timeout: 30000 });

  step('a wide screen');
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForTimeout(1200);
  await page.screenshot({ path: `${artifacts}/06-wide.png`, fullPage: true });

  step('logout returns to the login form');
  await page.click('#logout-button');
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });
  assert.equal(await page.locator('#dashboard').isVisible(), false);
  assert.deepEqual(problems, [], 'the page logged errors');
  step('passed');
} catch (e) {
  if (page) await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`browser: FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`browser: the page also logged:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
