// Every relative link in the repository's Markdown (README.md, SECURITY.md,
// docs/*.md, certs/README.md and any other .md of ours) resolves: the file it
// names exists, and its #anchor is made by a heading of the target file, by
// GitHub's rules. The checker itself is tested first on files made here, so a
// checker that finds nothing cannot pass for a clean tree.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { anchors, brokenLinks, links, markdownFiles, slug } from '../helpers/markdown.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('the Markdown link checker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bg-docs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes the anchors GitHub makes', () => {
    expect(slug('Faults covered (`test/integration/faults.test.ts`)')).toBe('faults-covered-testintegrationfaultstestts');
    expect(slug('Latest results (this machine, one run)')).toBe('latest-results-this-machine-one-run');
    expect(slug('A compromised peer gateway (its key, or root on its host)')).toBe('a-compromised-peer-gateway-its-key-or-root-on-its-host');
    expect(slug('The `beamgate_peer_reachable` gauge: 1 or 0?')).toBe('the-beamgate_peer_reachable-gauge-1-or-0');
    expect(slug('[Linked](x.md) heading')).toBe('linked-heading');
    expect([...anchors('# Limits\n\n## Limits\n\n```sh\n# not a heading\n```\n### Limits #\n')]).toEqual(['limits', 'limits-1', 'limits-2']);
  });

  it('reads links in prose, not in code', () => {
    const text = 'see [a](a.md#x) and [`b`](b.md)\n`[c](c.md)` and\n```\n[d](d.md)\n```\n[ref]: e.md\n[web](https://example.org/#y)';
    expect(links(text).map((l) => l.target)).toEqual(['a.md#x', 'b.md', 'e.md', 'https://example.org/#y']);
  });

  it('reports a missing file, a missing anchor and a link out of the repository, and nothing else', () => {
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'README.md'), '# Top\n\n## Part one\n\n[ok](docs/guide.md#setting-up) [ok](#part-one) [ok](docs/) [ok](docs/guide.md)\n');
    writeFileSync(
      join(dir, 'docs', 'guide.md'),
      '# Guide\n\n## Setting up\n\n[back](../README.md#top)\n[gone](missing.md)\n[moved](../README.md#part-two)\n[out](../../x.md)\n[here](#nowhere)\n',
    );
    expect(markdownFiles(dir)).toEqual(['README.md', 'docs/guide.md']);
    expect(brokenLinks(dir, 'README.md')).toEqual([]);
    expect(brokenLinks(dir, 'docs/guide.md')).toEqual([
      'docs/guide.md:6: missing.md: no such file docs/missing.md',
      'docs/guide.md:7: ../README.md#part-two: no heading makes #part-two in README.md',
      'docs/guide.md:8: ../../x.md: outside the repository',
      'docs/guide.md:9: #nowhere: no heading makes #nowhere in docs/guide.md',
    ]);
  });
});

describe("the repository's Markdown", () => {
  const files = markdownFiles(ROOT);

  it('includes the README, SECURITY.md, the docs index and certs/README.md', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'SECURITY.md', 'docs/README.md', 'certs/README.md']));
  });

  it.each(files)('%s: every relative link and anchor resolves', (file) => {
    expect(brokenLinks(ROOT, file)).toEqual([]);
  });
});
