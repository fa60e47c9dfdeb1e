// The libFuzzer target over the native record layer and frame scanner
// (native/fuzz/record_fuzz.c), built with AddressSanitizer and UBSan, run
// from its corpus in the repository for a fixed number of inputs with a fixed
// seed: the same run every time. Any sanitizer report, failed invariant or
// crash fails the test and leaves the input that caused it in a temporary
// directory named in the failure.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Inputs per CI run: about 20 s on this 2-core machine, on top of replaying the corpus. */
const RUNS = 100_000;
const BUILD_TIMEOUT_MS = 180_000;
const RUN_TIMEOUT_MS = 300_000;

describe('the record-layer fuzz target', () => {
  it(`builds with ASan and UBSan and survives its corpus and ${RUNS} inputs more`, () => {
    const build = spawnSync('bash', ['scripts/build-fuzz.sh'], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
    expect(build.status, build.stderr + build.stdout).toBe(0);
    const corpus = join(ROOT, 'native/fuzz/corpus');
    expect(readdirSync(corpus).length).toBeGreaterThan(50);
    // A copy: new inputs the run finds do not land in the repository.
    const work = mkdtempSync(join(tmpdir(), 'beamgate-fuzz-'));
    cpSync(corpus, join(work, 'corpus'), { recursive: true });
    const run = spawnSync(join(ROOT, 'build/record-fuzz'), [`-runs=${RUNS}`, '-seed=1', `-artifact_prefix=${work}/`, join(work, 'corpus')], {
      cwd: work,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });
    const out = run.stderr + run.stdout;
    expect(out, `fuzz run failed; inputs in ${work}`).not.toMatch(/ERROR: |runtime error:|invariant failed|deadly signal/);
    expect(run.status, out.slice(-4000)).toBe(0);
    expect(out).toMatch(new RegExp(`Done ${RUNS} runs`));
    rmSync(work, { recursive: true, force: true });
  }, BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS);
});
