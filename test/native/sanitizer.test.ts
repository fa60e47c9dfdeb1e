// The native engine's scenarios (engine.test.ts: every record kind at every
// byte boundary, mutated streams, hostile records, adopt/close bursts, the
// half-closed grace, KeyUpdates with node:tls) run again on a build of the
// engine with AddressSanitizer and UBSan (scripts/build-native.sh
// --sanitize), loaded into node with libasan preloaded. Any memory error or
// undefined behaviour aborts that run, which fails this test.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BUILD_TIMEOUT_MS = 180_000;
/** The scenarios take about a minute on the shipped build; the sanitizer makes them slower. */
const RUN_TIMEOUT_MS = 900_000;

describe('the native engine under AddressSanitizer and UBSan', () => {
  it('runs every engine scenario with no sanitizer report', () => {
    const build = spawnSync('bash', ['scripts/build-native.sh', '--sanitize'], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
    expect(build.status, build.stderr + build.stdout).toBe(0);
    expect(build.stdout).toMatch(/built build\/fastpath-asan\.node/);
    const libasan = spawnSync(process.env.CC ?? 'cc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
    const run = spawnSync('npx', ['vitest', 'run', 'test/native/engine.test.ts', '--reporter=verbose'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      env: {
        ...process.env,
        BEAMGATE_ENGINE_MODULE: join(ROOT, 'build/fastpath-asan.node'),
        NO_COLOR: '1',
        FORCE_COLOR: '0',
        LD_PRELOAD: libasan,
        // Node itself is not built for LeakSanitizer; memory errors and UB still abort.
        ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1',
        UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
      },
    });
    const out = run.stdout + run.stderr;
    expect(out).not.toMatch(/ERROR: AddressSanitizer|runtime error:|invariant failed/);
    expect(run.status, out.slice(-6000)).toBe(0);
    // The scenarios ran on the sanitizer build, all of them.
    expect(out).toMatch(/the native engine \(fastpath-asan\.node\)/);
    expect(out).toMatch(/Tests\s+\S*\s*\d+ passed/);
    expect(out).not.toMatch(/failed/);
  }, BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS);
});
