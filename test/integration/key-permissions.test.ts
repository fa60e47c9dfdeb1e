// A gateway's private key must be private to its owner: `check` and `run`
// refuse a key that its group or every user can read (exit 2, the file and its
// mode named), before any socket opens; 0600 and 0400 are accepted.

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/ports.js';

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

describe('private key permissions are checked at start', () => {
  let dir: string;
  let roster: string;
  let key: string;
  let ports: { tls: number; epmd: number };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-keys-'));
    roster = join(dir, 'roster.yaml');
    ports = { tls: await freePort(), epmd: await freePort() };
    writeFileSync(
      roster,
      `gateways:
  alpha: { host: alpha.example, address: "127.0.0.1:${ports.tls}", epmdPort: ${ports.epmd}, metrics: false }
  beta:  { host: beta.example,  address: "127.0.0.1:${await freePort()}", metrics: false }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: ${await freePort()} }
tls: { ca: certs/ca.pem, cert: "certs/{gateway}.pem", key: "certs/{gateway}-key.pem" }
`,
    );
    expect(cli(['certs', '--config', roster]).code).toBe(0);
    key = join(dir, 'certs', 'alpha-key.pem');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [mode, who] of [
    [0o640, 'its group'],
    [0o604, 'every user'],
    [0o644, 'every user'],
    [0o660, 'its group'],
  ] as const) {
    it(`refuses a key with mode ${mode.toString(8)}: check and run exit 2 naming the file and mode, nothing listens`, async () => {
      chmodSync(key, mode);
      for (const command of ['check', 'run']) {
        const r = cli([command, '--config', roster, '--gateway', 'alpha']);
        expect(r.code, r.err).toBe(2);
        expect(r.err).toContain(`tls.key: ${key} has mode 0${mode.toString(8)}, open to ${who}`);
        expect(r.err).toContain(`chmod 600 ${key}`);
      }
      expect(await listening(ports.tls)).toBe(false);
      expect(await listening(ports.epmd)).toBe(false);
    });
  }

  for (const mode of [0o600, 0o400]) {
    it(`accepts a key with mode ${mode.toString(8)}`, () => {
      chmodSync(key, mode);
      const r = cli(['check', '--config', roster, '--gateway', 'alpha']);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/TLS files of alpha are valid/);
    });
  }
});
