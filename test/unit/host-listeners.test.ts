// Reading this host's listeners from /proc/net/tcp{,6}: the kernel's text
// format decoded (addresses, ports, only LISTEN rows), checked against
// sockets this test opens, and the warnings `check` builds from them.

import { once } from 'node:events';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRoster } from '../../src/config/roster.js';
import { exposureWarnings } from '../../src/host/exposure.js';
import { isLoopback, type Listener, parseProcNetTcp, readListeners, socketOwners } from '../../src/host/listeners.js';

// Rows as a little-endian Linux prints them (sl, local, remote, st, queues, timers, retransmits, uid, timeout, inode, ...).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1111 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1111 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0201007F:1111 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1111 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:138A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2004 1 0000000000000000 100 0 0 10 0
`;

describe('parseProcNetTcp (rows of a little-endian kernel)', () => {
  it('decodes IPv4 listeners and skips connections in other states', () => {
    expect(parseProcNetTcp(TCP, 4, 'LE')).toEqual([
      { address: '127.0.0.1', port: 0x1111, family: 4, inode: 1001 },
      { address: '0.0.0.0', port: 5001, family: 4, inode: 1002 },
      { address: '127.0.1.2', port: 0x1111, family: 4, inode: 1004 },
    ]);
  });

  it('reads the same words the other way round on a big-endian kernel', () => {
    const be = TCP.replace('0100007F:1111', '7F000001:1111');
    expect(parseProcNetTcp(be, 4, 'BE')[0]!.address).toBe('127.0.0.1');
  });

  it('decodes IPv6 listeners: loopback, wildcard, IPv4-mapped and a global address', () => {
    expect(parseProcNetTcp(TCP6, 6, 'LE').map((l) => `${l.address} ${l.port}`)).toEqual(['::1 4369', ':: 5002', '::ffff:127.0.0.1 5001', '2001:db8::1 5001']);
  });
});

describe('isLoopback', () => {
  it('is true for 127.0.0.0/8, ::1 and IPv4-mapped loopback only', () => {
    for (const a of ['127.0.0.1', '127.0.1.2', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
    for (const a of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', '2001:db8::1']) expect(isLoopback(a), a).toBe(false);
  });
});

describe('readListeners and socketOwners on this host', () => {
  const servers: net.Server[] = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it('find the sockets this test listens on, with their addresses and this process as their owner', async () => {
    const opened: { host: string; port: number }[] = [];
    for (const host of ['127.0.0.1', '127.0.1.7', '::1']) {
      const s = net.createServer();
      servers.push(s);
      s.listen({ host, port: 0 });
      await once(s, 'listening');
      opened.push({ host, port: (s.address() as net.AddressInfo).port });
    }
    const all = readListeners();
    const mine: Listener[] = opened.map(({ host, port }) => {
      const l = all.find((x) => x.address === host && x.port === port);
      expect(l, `${host}:${port} in /proc/net/tcp${host.includes(':') ? '6' : ''}`).toBeDefined();
      return l!;
    });
    const owners = socketOwners(new Set(mine.map((l) => l.inode)));
    for (const l of mine) expect(owners.get(l.inode)?.map((o) => o.pid)).toContain(process.pid);
  });
});

describe('exposureWarnings', () => {
  const roster = parseRoster(
    `gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
  beta:  { host: beta.example,  address: "10.0.0.2:4370" }
nodes:
  - { name: app@alpha.example, gateway: alpha, port: 5001 }
  - { name: app@beta.example,  gateway: beta,  port: 5002 }
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem" }
`,
    '/etc/beamgate',
  );
  const gatewayProc = { pid: 10, comm: 'node', argv: ['/usr/bin/node', '/opt/beamgate/dist/cli/main.js', 'run', '--config', '/etc/beamgate/roster.yaml'] };
  const otherGateway = { pid: 11, comm: 'node', argv: ['node', 'dist/cli/main.js', 'run', '--gateway', 'beta'] };
  const epmd = { pid: 12, comm: 'epmd', argv: ['/usr/bin/epmd', '-systemd'] };
  const l = (address: string, port: number, inode: number): Listener => ({ address, port, family: address.includes(':') ? 6 : 4, inode });

  it('accepts the gateway on its EPMD port (loopback and its aliases) and the nodes on loopback', () => {
    const listeners = [l('127.0.0.1', 4369, 1), l('127.0.1.3', 4369, 2), l('127.0.0.1', 5001, 3)];
    const owners = new Map([[1, [gatewayProc]], [2, [gatewayProc]], [3, [epmd]]]);
    expect(exposureWarnings(roster, 'alpha', listeners, owners)).toEqual([]);
  });

  it('warns about anything else on the EPMD port (systemd socket activation too), another gateway, or an owner it cannot see', () => {
    const listeners = [l('::', 4369, 1), l('127.0.0.1', 4369, 2), l('127.0.1.2', 4369, 3)];
    const owners = new Map([[1, [{ pid: 1, comm: 'systemd', argv: ['/sbin/init'] }, epmd]], [2, [otherGateway]]]);
    const w = exposureWarnings(roster, 'alpha', listeners, owners);
    expect(w).toHaveLength(3);
    expect(w[0]).toMatch(/^\[::\]:4369, gateway alpha's EPMD port .* held by systemd \(pid 1\), epmd \(pid 12\), not by the gateway: a real EPMD there answers the network/);
    expect(w[1]).toContain('held by node (pid 11)');
    expect(w[2]).toContain('held by a process this user cannot see');
  });

  it('warns about its own nodes\' ports beyond loopback only, not another gateway\'s', () => {
    const listeners = [l('0.0.0.0', 5001, 1), l('10.0.0.1', 5001, 2), l('0.0.0.0', 5002, 3), l('::ffff:127.0.0.1', 5001, 4)];
    const w = exposureWarnings(roster, 'alpha', listeners, new Map());
    expect(w.map((x) => x.split(',')[0])).toEqual(['0.0.0.0:5001', '10.0.0.1:5001']);
    expect(w[0]).toContain('the distribution port of app@alpha.example, is bound beyond loopback');
  });
});
