// The libFuzzer targets over the native data plane (native/fuzz/: the record
// layer and frame scanner, the firewall's judge, a filtered link's gate, the
// distribution handshake walker),
// built with AddressSanitizer and UBSan, each run from its corpus in the repository for a fixed number of inputs with a fixed
// seed: the same run every time. Any sanitizer report, failed invariant or
// crash fails the test and leaves the input that caused it in a temporary
// directory named in the failure.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Inputs per CI run: about 20 s on this 2-core machine, on top of replaying the corpus. */
const RUNS = 100_000;
const BUILD_TIMEOUT_MS = 180_000;
const RUN_TIMEOUT_MS = 300_000;

/**
 * Each target: its binary, its seed corpus and how many seeds it holds at least, and the inputs a CI run adds
 * (about 20 s on this machine for the record layer, a few for the others).
 */
const TARGETS: { name: string; binary: string; corpus: string; seeds: number; runs: number }[] = [
  { name: 'the record layer and frame scanner', binary: 'build/record-fuzz', corpus: 'native/fuzz/corpus', seeds: 50, runs: RUNS },
  { name: "the firewall's native judge", binary: 'build/judge-fuzz', corpus: 'native/fuzz/judge-corpus', seeds: 50, runs: 200_000 },
  { name: "a filtered link's gate over the judge", binary: 'build/gate-fuzz', corpus: 'native/fuzz/judge-corpus', seeds: 50, runs: 200_000 },
  // A few valid handshakes of both sides (written by test/native/handshake.test.ts); about 4 s here.
  { name: 'the distribution handshake walker', binary: 'build/handshake-fuzz', corpus: 'native/fuzz/handshake-corpus', seeds: 10, runs: 300_000 },
];

describe('the native fuzz targets', () => {
  beforeAll(() => {
    const build = spawnSync('bash', ['scripts/build-fuzz.sh'], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
    expect(build.status, build.stderr + build.stdout).toBe(0);
  }, BUILD_TIMEOUT_MS);

  it.each(TARGETS)('$name: built with ASan and UBSan, survives its corpus and $runs inputs more', ({ binary, corpus: dir, seeds, runs }) => {
    const corpus = join(ROOT, dir);
    expect(readdirSync(corpus).length).toBeGreaterThanOrEqual(seeds);
    // A copy: new inputs the run finds do not land in the repository.
    const work = mkdtempSync(join(tmpdir(), 'beamgate-fuzz-'));
    cpSync(corpus, join(work, 'corpus'), { recursive: true });
    const run = spawnSync(join(ROOT, binary), [`-runs=${runs}`, '-seed=1', `-artifact_prefix=${work}/`, join(work, 'corpus')], {
      cwd: work,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });
    const out = run.stderr + run.stdout;
    expect(out, `fuzz run failed; inputs in ${work}`).not.toMatch(/ERROR: |runtime error:|invariant failed|deadly signal/);
    expect(run.status, out.slice(-4000)).toBe(0);
    expect(out).toMatch(new RegExp(`Done ${runs} runs`));
    rmSync(work, { recursive: true, force: true });
  }, RUN_TIMEOUT_MS);
});
