// listen(): a failed attempt leaves no handler behind on the server, so a caller that
// tries ports one by one on one server (the mesh's stand-ins) neither leaks nor warns.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listen } from '../../src/epmd/server.js';

const open: net.Server[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
});

describe('listen', () => {
  it('leaves no listening or error handler behind after failed attempts, and still listens afterwards', async () => {
    const taken = net.createServer();
    open.push(taken);
    await listen(taken, 0, '127.0.0.1');
    const port = (taken.address() as net.AddressInfo).port;

    const server = net.createServer();
    open.push(server);
    for (let i = 0; i < 20; i++) {
      await expect(listen(server, port, '127.0.0.1')).rejects.toThrow(`cannot listen on 127.0.0.1:${port}`);
      expect(server.listenerCount('listening')).toBe(0);
      expect(server.listenerCount('error')).toBe(0);
    }
    await listen(server, 0, '127.0.0.1');
    expect(server.listening).toBe(true);
    expect(server.listenerCount('listening')).toBe(0);
    expect(server.listenerCount('error')).toBe(0);
  });
});
