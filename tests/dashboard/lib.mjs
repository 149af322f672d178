// What the dashboard's node tests share: the brume CLI, waiting for a condition, and stopping
// and restarting the quickstart's daemons (tests/dashboard/run.sh sets the environment).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const env = process.env;

// Runs `brume ARGS...` against the test's frontend with the admin key; returns its stdout, or
// throws an Error whose message holds its stderr.
export function brume(args) {
  try {
    return execFileSync(env.BRUME_CLI, ['--endpoint', env.BRUME_FRONTEND_ENDPOINT,
      '--api-key-file', env.BRUME_ADMIN_KEY_FILE, ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
  } catch (e) {
    throw new Error(`brume ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

// Runs `brume ARGS...` without waiting; resolves to {code, stdout, stderr}.
export async function brumeAsync(args) {
  return new Promise((resolve) => {
    const p = spawn(env.BRUME_CLI, ['--endpoint', env.BRUME_FRONTEND_ENDPOINT,
      '--api-key-file', env.BRUME_ADMIN_KEY_FILE, ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls cond (async, truthy when met) every 200 ms until timeoutMs; throws what otherwise.
export async function waitFor(cond, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      if (await cond()) return;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${what}${last ? ` (${last.message})` : ''}`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Stops one of the quickstart's daemons (counting, placement, worker, frontend) with SIGTERM
// and waits until its process is gone.
export async function stopDaemon(name) {
  const pid = Number(readFileSync(`${env.BRUME_RUN_DIR}/${name}.pid`, 'utf8').trim());
  process.kill(pid, 'SIGTERM');
  await waitFor(async () => !alive(pid), 30000, `${name} (pid ${pid}) to exit`);
}

// Starts again whatever of the quickstart is not running (deploy/quickstart.sh is idempotent).
// Its last step invokes hello-c, which can fail for a second while the frontend's channel to a
// daemon that just came back waits out its reconnect backoff: then it runs once more.
export async function restartDaemons() {
  const run = () => execFileSync(env.BRUME_QUICKSTART, ['start'],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300000 });
  try {
    run();
  } catch {
    await sleep(2000);
    run();
  }
}
