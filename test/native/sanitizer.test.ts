// The native engine's tests run again on a build of the engine with
// AddressSanitizer and UBSan (scripts/build-native.sh --sanitize), loaded into
// node with libasan preloaded: the engine's scenarios (engine.test.ts: every
// record kind at every byte boundary, mutated streams, hostile records,
// adopt/close bursts, the half-closed grace, KeyUpdates with node:tls,
// filtered links) and the firewall's C judge against the TypeScript one
// (judge.test.ts: every operation, real term_to_binary payloads, broken
// headers and fragments, random terms and mutated frames), and the
// distribution handshake walker against the TypeScript one (handshake.test.ts:
// every message kind and refusal, split at every byte, random and mutated
// handshakes). Any memory error or undefined behaviour aborts that run, which
// fails this test.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ASAN_MODULE = join(ROOT, 'build/fastpath-asan.node');
const BUILD_TIMEOUT_MS = 180_000;
/** The scenarios take about a minute on the shipped build; the sanitizer makes them slower. */
const RUN_TIMEOUT_MS = 900_000;

/** Each test file, the variable that points it at the sanitizer build, and the suite title that says it ran there. */
const SUITES = [
  { file: 'test/native/engine.test.ts', moduleVar: 'BEAMGATE_ENGINE_MODULE', title: /the native engine \(fastpath-asan\.node\)/ },
  { file: 'test/native/judge.test.ts', moduleVar: 'BEAMGATE_JUDGE_MODULE', title: /the native judge against the TypeScript one \(fastpath-asan\.node\)/ },
  { file: 'test/native/handshake.test.ts', moduleVar: 'BEAMGATE_HANDSHAKE_MODULE', title: /the native handshake walker against the TypeScript one \(fastpath-asan\.node\)/ },
] as const;

describe('the native engine under AddressSanitizer and UBSan', () => {
  let libasan = '';

  beforeAll(() => {
    const build = spawnSync('bash', ['scripts/build-native.sh', '--sanitize'], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
    expect(build.status, build.stderr + build.stdout).toBe(0);
    expect(build.stdout).toMatch(/built build\/fastpath-asan\.node/);
    libasan = spawnSync(process.env.CC ?? 'cc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  }, BUILD_TIMEOUT_MS);

  it.each(SUITES)('runs $file with no sanitizer report', ({ file, moduleVar, title }) => {
    const run = spawnSync('npx', ['vitest', 'run', file, '--reporter=verbose'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      env: {
        ...process.env,
        [moduleVar]: ASAN_MODULE,
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
    // The tests ran on the sanitizer build (a file whose module is missing skips its suite), all of them.
    expect(out).toMatch(title);
    expect(out).toMatch(/Tests\s+\S*\s*\d+ passed/);
    // (A count, not the word: judge.test.ts has a test that checks a decoder 'stays failed'.)
    expect(out).not.toMatch(/\d+ failed|^\s*×/m);
  }, RUN_TIMEOUT_MS);
});
