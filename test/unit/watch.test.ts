// The configuration file watcher, on real files: a change is reported once,
// after two polls agree, with the files that changed; a file still being
// written is not reported until it settles; a removed file, a file replaced by
// a rename and a swapped symlink are changes too; a new path is a change.

import { mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigWatcher } from '../../src/config/watch.js';

describe('configuration file watcher', () => {
  let dir: string;
  let paths: string[];
  let reports: string[][];
  let watcher: ConfigWatcher;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bg-watch-'));
    paths = ['roster.yaml', 'ca.pem', 'cert.pem'].map((f) => join(dir, f));
    for (const p of paths) writeFileSync(p, `first ${p}\n`);
    reports = [];
    // The timer is never left to fire in these tests: they step poll() themselves.
    watcher = new ConfigWatcher({ paths: () => paths, intervalMs: 3_600_000, onChange: (changed) => reports.push(changed) });
    await watcher.start();
  });
  afterEach(() => {
    watcher.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const polls = async (n: number) => {
    for (let i = 0; i < n; i++) await watcher.poll();
  };

  it('reports nothing while nothing changes', async () => {
    await polls(5);
    expect(reports).toEqual([]);
  });

  it('reports a change once, after the second poll that sees it, with the changed file', async () => {
    writeFileSync(paths[1]!, 'second\n');
    await polls(1);
    expect(reports).toEqual([]);
    await polls(1);
    expect(reports).toEqual([[paths[1]]]);
    await polls(3);
    expect(reports).toHaveLength(1);
  });

  it('waits while a file keeps changing, then reports every file changed since the last report', async () => {
    writeFileSync(paths[2]!, 'cert half written');
    await polls(1);
    writeFileSync(paths[2]!, 'cert written\n');
    await polls(1);
    writeFileSync(paths[0]!, 'roster edited\n');
    await polls(1);
    expect(reports).toEqual([]);
    await polls(1);
    expect(reports).toEqual([[paths[0], paths[2]].sort()]);
  });

  it('a removed file is a change, and so is its return', async () => {
    unlinkSync(paths[0]!);
    await polls(2);
    writeFileSync(paths[0]!, 'back\n');
    await polls(2);
    expect(reports).toEqual([[paths[0]], [paths[0]]]);
  });

  it('sees a file replaced by a rename and a swapped symlink', async () => {
    const staged = join(dir, 'staged.pem');
    writeFileSync(staged, `first ${paths[1]}\n`); // the same bytes, but a new file
    renameSync(staged, paths[1]!);
    await polls(2);
    expect(reports).toEqual([[paths[1]]]);

    // Kubernetes-style: the watched path is a link to a versioned file, then to another.
    const v1 = join(dir, 'v1.pem');
    const v2 = join(dir, 'v2.pem');
    writeFileSync(v1, 'v1\n');
    writeFileSync(v2, 'v2\n');
    unlinkSync(paths[2]!);
    symlinkSync(v1, paths[2]!);
    await polls(2);
    const link = join(dir, 'link.tmp');
    symlinkSync(v2, link);
    renameSync(link, paths[2]!);
    await polls(2);
    expect(reports.slice(1)).toEqual([[paths[2]], [paths[2]]]);
  });

  it('a path the configuration names for the first time is a change', async () => {
    const key = join(dir, 'key.pem');
    writeFileSync(key, 'key\n');
    paths = [...paths, key];
    await polls(2);
    expect(reports).toEqual([[key]]);
  });
});
