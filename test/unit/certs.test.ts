// `beamgate certs`: a key written over keeps no mode but 0600, and the three
// rollover steps write exactly the files docs/ca-rollover.md says, refusing
// the steps out of order.

import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCerts } from '../../src/cli/certs.js';
import { loadRoster, type Roster } from '../../src/config/roster.js';
import { parseCaBundle } from '../../src/pki/ca-bundle.js';
import { createCa, createGatewayCert, writePem } from '../../src/pki/generate.js';

const mode = (path: string) => statSync(path).mode & 0o777;

describe('writePem', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'beamgate-pem-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--force over a key file open to others leaves it 0600 (writeFileSync alone keeps the old mode)', async () => {
    const ca = await createCa('CA');
    const [cert, key] = [join(dir, 'g.pem'), join(dir, 'g-key.pem')];
    writePem(cert, key, await createGatewayCert(ca, 'g'), false);
    expect(mode(key)).toBe(0o600);
    for (const loose of [0o644, 0o640, 0o604, 0o666]) {
      chmodSync(key, loose);
      const fresh = await createGatewayCert(ca, 'g');
      writePem(cert, key, fresh, true);
      expect(mode(key)).toBe(0o600);
      expect(readFileSync(key, 'utf8')).toBe(fresh.key);
    }
  });

  it('rewrites the key in place: same inode, so a bind mount of the file sees the new key', async () => {
    const ca = await createCa('CA');
    const [cert, key] = [join(dir, 'h.pem'), join(dir, 'h-key.pem')];
    writePem(cert, key, await createGatewayCert(ca, 'h'), false);
    const inode = statSync(key).ino;
    writePem(cert, key, await createGatewayCert(ca, 'h'), true);
    expect(statSync(key).ino).toBe(inode);
  });
});

describe('certs: the three rollover steps', () => {
  let dir: string;
  let roster: Roster;
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const file = (name: string) => readFileSync(join(dir, 'certs', name), 'utf8');
  const bundle = () => {
    const b = parseCaBundle(file('ca.pem'), 'ca.pem');
    if (Array.isArray(b)) throw new Error(b.join('\n'));
    return b.cas;
  };
  const issuedBy = (gw: string, caPem: string) => new X509Certificate(file(`${gw}.pem`)).checkIssued(new X509Certificate(caPem));
  let first: { ca: string; key: string; alpha: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-rollover-'));
    writeFileSync(
      join(dir, 'roster.yaml'),
      `gateways:
  alpha: { host: alpha.example, address: "127.0.0.1:4370" }
  beta:  { host: beta.example,  address: "127.0.0.1:4371" }
nodes: []
tls: { ca: certs/ca.pem, cert: "certs/{gateway}.pem", key: "certs/{gateway}-key.pem" }
`,
    );
    roster = loadRoster(join(dir, 'roster.yaml'));
    await issueCerts(roster, ['alpha', 'beta'], false);
    first = { ca: file('ca.pem'), key: file('ca-key.pem'), alpha: file('alpha.pem') };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const next = () => join(dir, 'next');

  it('refuses a new CA where the current one lives, and step 3 before the new CA is in the bundle', async () => {
    await expect(issueCerts(roster, ['alpha'], false, log, { newCa: join(dir, 'certs') })).rejects.toThrow(/is where the current CA lives/);
    await expect(issueCerts(roster, ['alpha'], false, log, { retireOldCa: true })).rejects.toThrow(/--retire-old-ca needs --new-ca DIR/);
    const half = join(dir, 'half');
    mkdirSync(half);
    writeFileSync(join(half, 'ca.pem'), first.ca);
    await expect(issueCerts(roster, ['alpha'], false, log, { newCa: half })).rejects.toThrow(/found only one of .*ca\.pem and .*ca-key\.pem; refusing to create a new CA over half of an old one/);
    expect(file('ca.pem')).toBe(first.ca);
  });

  it('step 1 (--new-ca DIR): creates the new CA in DIR and adds it to the bundle; the first CA, its key and the gateway certificates stay', async () => {
    const r = await issueCerts(roster, ['alpha', 'beta'], false, log, { newCa: next() });
    expect(r).toMatchObject({ ca: 'created', bundle: 'ca added', written: [], skipped: ['alpha', 'beta'] });
    expect(mode(join(next(), 'ca-key.pem'))).toBe(0o600);
    const cas = bundle();
    expect(cas).toHaveLength(2);
    expect(cas[0]!.pem.trim()).toBe(first.ca.trim());
    expect(cas[1]!.pem.trim()).toBe(readFileSync(join(next(), 'ca.pem'), 'utf8').trim());
    expect(cas[1]!.subject).toMatch(/^CN=beamgate cluster CA \d{4}-\d\d-\d\d [0-9a-f]{6}$/);
    expect(file('ca-key.pem')).toBe(first.key);
    expect(file('alpha.pem')).toBe(first.alpha);
    // Again: nothing changes.
    const again = await issueCerts(roster, ['alpha', 'beta'], false, log, { newCa: next() });
    expect(again).toMatchObject({ ca: 'reused', bundle: 'unchanged' });
    expect(bundle()).toHaveLength(2);
  });

  it('step 3 before step 2 is refused, naming every gateway still on the old CA', async () => {
    await expect(issueCerts(roster, [], false, log, { newCa: next(), retireOldCa: true })).rejects.toThrow(
      /not every gateway has a certificate from the new CA: alpha \(.*alpha\.pem\), beta \(.*beta\.pem\); reissue them first/,
    );
    expect(bundle()).toHaveLength(2);
  });

  it('step 2 (--new-ca DIR --force): every gateway certificate from the new CA, keys 0600; the bundle stays', async () => {
    const r = await issueCerts(roster, ['alpha', 'beta'], true, log, { newCa: next() });
    expect(r).toMatchObject({ bundle: 'unchanged', written: ['alpha', 'beta'] });
    const newCa = readFileSync(join(next(), 'ca.pem'), 'utf8');
    for (const gw of ['alpha', 'beta']) {
      expect(issuedBy(gw, newCa)).toBe(true);
      expect(mode(join(dir, 'certs', `${gw}-key.pem`))).toBe(0o600);
    }
    expect(bundle()).toHaveLength(2);
  });

  it('step 3 (--new-ca DIR --retire-old-ca): the bundle holds the new CA alone, which becomes the cluster CA; the old one is kept aside', async () => {
    const oldSerial = bundle()[0]!.serial;
    const inode = statSync(join(dir, 'certs', 'ca.pem')).ino;
    const r = await issueCerts(roster, ['alpha', 'beta'], false, log, { newCa: next(), retireOldCa: true });
    expect(r.bundle).toBe('old CAs retired');
    const newCa = readFileSync(join(next(), 'ca.pem'), 'utf8');
    expect(bundle().map((c) => c.pem.trim())).toEqual([newCa.trim()]);
    expect(statSync(join(dir, 'certs', 'ca.pem')).ino).toBe(inode);
    expect(file('ca-key.pem')).toBe(readFileSync(join(next(), 'ca-key.pem'), 'utf8'));
    expect(mode(join(dir, 'certs', 'ca-key.pem'))).toBe(0o600);
    expect(file(`ca-retired-${oldSerial}.pem`).trim()).toBe(first.ca.trim());
    expect(file(`ca-retired-${oldSerial}-key.pem`)).toBe(first.key);
    expect(mode(join(dir, 'certs', `ca-retired-${oldSerial}-key.pem`))).toBe(0o600);
    // From now on plain `certs --force` issues from the new CA.
    await issueCerts(roster, ['beta'], true, log);
    expect(issuedBy('beta', newCa)).toBe(true);
    expect(existsSync(join(next(), 'ca.pem'))).toBe(true);
  });
});
