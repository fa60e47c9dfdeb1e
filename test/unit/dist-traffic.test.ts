// Real distribution traffic through the decoder: two OTP nodes of the host's
// erl (plain TCP distribution, loopback, the cookie in a file) connected
// through a small relay in this test that parses the handshake (2-byte
// packets) and then hands every 4-byte frame of both directions to a
// DirectionDecoder. Every frame must decode, the test must see the control
// messages it caused (a registered send, sends to pids, link, monitor, erpc
// and spawn/2 spawn requests, exit/2), more than 2,048 distinct atoms with
// the atom cache in use (churn), and a message of several MB in fragments.

import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomCookie, writeCookieHome } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import { findRuntime } from '../../src/erlang/roots.js';
import { checkOrder, decodeHandshakeMessage, type HandshakeMessage, type Side } from '../../src/framing/handshake.js';
import { ALTACT_FLAG } from '../../src/dist/control.js';
import { DirectionDecoder, type FrameResult } from '../../src/dist/decoder.js';
import { atomName, type Term } from '../../src/dist/term.js';
import { canon } from '../helpers/etf.js';
import { freePort, randomAlias } from '../helpers/ports.js';

type Seen = { side: Side; result: FrameResult };

/** One direction of a relayed link: the handshake, then frames into a decoder. */
class Tap {
  readonly decoder = new DirectionDecoder();
  readonly handshake: HandshakeMessage[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private framed = false;
  /** Time spent in decoder.decode, and the frame bytes it took. */
  decodeNs = 0n;
  decodeBytes = 0;
  readonly frames: Buffer[] = [];

  constructor(
    readonly side: Side,
    private readonly onResult: (s: Seen) => void,
  ) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (!this.framed) {
        if (this.buf.length < 2) return;
        const len = this.buf.readUInt16BE(0);
        if (this.buf.length < 2 + len) return;
        const msg = decodeHandshakeMessage(this.side, this.buf.subarray(2, 2 + len));
        this.handshake.push(msg);
        if (checkOrder(this.side, this.handshake.length - 1, msg) === 'done') this.framed = true;
        this.buf = this.buf.subarray(2 + len);
        continue;
      }
      if (this.buf.length < 4) return;
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + len) return;
      const frame = Buffer.from(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
      this.frames.push(frame);
      const t0 = process.hrtime.bigint();
      const result = this.decoder.decode(frame);
      this.decodeNs += process.hrtime.bigint() - t0;
      this.decodeBytes += frame.length;
      this.onResult({ side: this.side, result });
    }
  }
}

// Node a dials node b. The host's OTP 25, and OTP 27 and 29 from their Debian
// roots where this machine has them; the last pair mixes releases.
const PAIRS = [['25', '25'], ['27', '27'], ['29', '29'], ['25', '29']] as const;

for (const [otpA, otpB] of PAIRS) {
  const ra = findRuntime(otpA);
  const rb = findRuntime(otpB);
  const why = [ra, rb].find((r) => typeof r === 'string');
  if (why) console.log(`OTP ${otpA} to ${otpB} skipped: ${why}`);
  const runtimeA = typeof ra === 'string' ? undefined : ra;
  const runtimeB = typeof rb === 'string' ? undefined : rb;
  // What both ends support decides the operations used.
  const otp = String(Math.min(Number(otpA), Number(otpB)));
  describe.skipIf(why !== undefined)(`real OTP ${otpA} to OTP ${otpB} distribution traffic through the decoder`, () => {
  const seen: Seen[] = [];
  const waiters: { pred: () => boolean; resolve: () => void }[] = [];
  function record(s: Seen): void {
    seen.push(s);
    for (const w of waiters.splice(0)) {
      if (w.pred()) w.resolve();
      else waiters.push(w);
    }
  }
  /** Resolves when `pred` holds over what the taps have seen; fails after `ms`. */
  function waitFor(what: string, pred: () => boolean, ms = 60_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not seen within ${ms} ms: ${what}`)), ms);
      waiters.push({ pred, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  const messages = (side?: Side) =>
    seen.flatMap((s) => (s.result.kind === 'message' && (!side || s.side === side) ? [{ side: s.side, ...s.result }] : []));
  const ops = (side: Side) => new Set(messages(side).map((m) => m.control.op));

  let dir: string;
  let server: Server;
  const sockets: Socket[] = [];
  const taps: Tap[] = [];
  let a: ErlNode;
  let b: ErlNode;
  let bName: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-dist-'));
    const home = writeCookieHome(join(dir, 'home'), randomCookie());
    const port = await freePort();
    const [relayIp, bIp, aIp] = [randomAlias(), randomAlias(), randomAlias()];
    // Every node listens on `port` and dials `port` (-erl_epmd_port, no EPMD):
    // b's name says the relay's address, b listens on its own, a dials the relay.
    bName = `b@${relayIp}`;
    server = createServer((down) => {
      const up = createConnection({ host: bIp, port });
      sockets.push(down, up);
      const ini = new Tap('initiator', record);
      const acc = new Tap('acceptor', record);
      taps.push(ini, acc);
      down.on('data', (c: Buffer) => {
        ini.push(c);
        up.write(c);
      });
      up.on('data', (c: Buffer) => {
        acc.push(c);
        down.write(c);
      });
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    server.listen(port, relayIp);
    await once(server, 'listening');
    const args = (name: string, ip: string) => [
      '-name', name, '-proto_dist', 'inet_tcp', '-start_epmd', 'false', '-erl_epmd_port', String(port),
      '-kernel', 'inet_dist_use_interface', `{${ip.replace(/\./g, ',')}}`, '-kernel', 'net_ticktime', '20',
    ];
    [b, a] = await Promise.all([
      ErlNode.start(bName, { args: args(bName, bIp), home, runtime: runtimeB, startTimeoutMs: 60_000 }),
      ErlNode.start(`a@${aIp}`, { args: args(`a@${aIp}`, aIp), home, runtime: runtimeA, startTimeoutMs: 60_000 }),
    ]);
    // A registered echo server on b: replies {echo, Msg} to {From, Msg}.
    await b.eval(`register(echo, spawn(fun Loop() -> receive {From, M} when is_pid(From) -> From ! {echo, M}, Loop(); _ -> Loop() end end))`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    for (const s of sockets) s.destroy();
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

    it('decodes every frame of a link carrying sends, links, monitors, spawns, exits, atom churn and a fragmented message', async () => {
      const B = `'${bName}'`;
      expect(await a.eval(`net_adm:ping(${B})`, 60_000)).toBe('pong');

      // A registered send and the reply to a pid.
      expect(await a.eval(`{echo, ${B}} ! {self(), hello}, receive {echo, X} -> X after 30000 -> timeout end`)).toBe('hello');
      // A $gen_call head, as a supervisor call would carry (the echo server ignores it).
      await a.eval(`{echo, ${B}} ! {'$gen_call', {self(), make_ref()}, which_children}, ok`);
      // erpc (a SPAWN_REQUEST of erpc:execute_call/4) and rpc.
      expect(await a.eval(`erpc:call(${B}, erlang, node, [], 30000)`)).toBe(`'${bName}'`);
      expect(await a.eval(`rpc:call(${B}, erlang, system_info, [otp_release], 30000)`)).toBe(`"${otpB}"`);
      // spawn/2 (erlang:apply/2 of a fun), link and monitor from a, then exit(Pid, kill).
      await a.eval(
        // A fun of a 25 node's erl_eval is a badfun on a 29 node: the victim is spawned by MFA.
        `spawn(${B}, fun() -> ok end), V = spawn(${B}, timer, sleep, [infinity]), ` +
          `Self = self(), L = spawn(fun() -> process_flag(trap_exit, true), link(V), Self ! linked, receive {'EXIT', _, R} -> Self ! {exited, R} end end), ` +
          `receive linked -> ok after 30000 -> exit(no_link) end, ` +
          `M = erlang:monitor(process, V), exit(V, kill), ` +
          `receive {'DOWN', M, process, _, killed} -> ok after 30000 -> exit(no_down) end, ` +
          `receive {exited, killed} -> ok after 30000 -> exit(no_exit) end`,
      );
      // What the firewall will have to stop, decoded here: a group leader set on a
      // remote process, a sys call to a named process, an io request from a
      // process spawned by erpc on b to its group leader on a; and unlink.
      await a.eval(
        `E = erpc:call(${B}, erlang, whereis, [echo], 30000), ` +
          `W = spawn(${B}, timer, sleep, [infinity]), group_leader(whereis(user), W), exit(W, kill), ` +
          `link(E), unlink(E), ` +
          `{'EXIT', {timeout, _}} = (catch sys:get_state({echo, ${B}}, 500)), ` +
          `ok = erpc:call(${B}, io, format, ["printed on a~n"], 30000)`,
      );
      // Atom churn: 30 messages of 100 fresh atoms each way (the echo sends them back).
      await a.eval(
        `[begin {echo, ${B}} ! {self(), [list_to_atom("churn_" ++ integer_to_list(I * 100 + J)) || J <- lists:seq(0, 99)]}, ` +
          `receive {echo, _} -> ok after 30000 -> exit(no_echo) end end || I <- lists:seq(0, 29)], ok`,
        120_000,
      );
      // A large message (8 MB binary and some atoms after it), echoed back.
      expect(await a.eval(`{echo, ${B}} ! {self(), {big, binary:copy(<<"0123456789abcdef">>, 512 * 1024), [x, y, z], 'done'}}, receive {echo, {big, Bin, _, 'done'}} -> byte_size(Bin) after 60000 -> timeout end`, 90_000)).toBe(String(8 * 1024 * 1024));

      // Nothing failed to decode, in either direction.
      const errors = seen.filter((s) => s.result.kind === 'error');
      expect(errors).toEqual([]);
      expect(taps.length).toBe(2);

      const iniOps = ops('initiator');
      const accOps = ops('acceptor');
      for (const op of ['REG_SEND', 'SPAWN_REQUEST', 'LINK', 'MONITOR_P']) expect(iniOps, op).toContain(op);
      expect(['EXIT2', 'PAYLOAD_EXIT2'].some((op) => iniOps.has(op as never))).toBe(true);
      for (const op of ['GROUP_LEADER', 'UNLINK_ID']) expect(iniOps, op).toContain(op);
      expect(accOps).toContain('UNLINK_ID_ACK');
      const sys = messages('initiator').find((m) => m.control.op === 'REG_SEND' && m.control.toName === 'echo' && m.payloadHead?.tag === 'system');
      expect(sys?.payloadHead?.request).toBe('get_state');
      const io = messages('acceptor').find((m) => m.payloadHead?.tag === 'io_request');
      expect(io?.payloadHead?.request).toBe('put_chars');
      console.log(`OTP ${otpA} to ${otpB}: io_request carried by ${io?.control.op}`);
      expect(['SEND', 'SEND_SENDER'].some((op) => accOps.has(op as never))).toBe(true);
      for (const op of ['SPAWN_REPLY', 'PAYLOAD_MONITOR_P_EXIT', 'PAYLOAD_EXIT']) expect(accOps, op).toContain(op);
      // Replies to gen_server calls go to the caller's alias (OTP 24+): ALIAS_SEND, or
      // ALTACT_SIG_SEND with its ALIAS flag once both ends are OTP 28+.
      const aliasOp = Number(otp) >= 28 ? 'ALTACT_SIG_SEND' : Number(otp) >= 27 ? 'ALIAS_SEND' : undefined;
      if (aliasOp) expect(accOps).toContain(aliasOp);
      const altact = messages().flatMap((m) => (m.control.op === 'ALTACT_SIG_SEND' ? [m.control] : []));
      for (const c of altact) expect(c.flags & ALTACT_FLAG.ALIAS).toBe(ALTACT_FLAG.ALIAS);
      if (altact.length) console.log(`OTP ${otpA} to ${otpB}: ALTACT_SIG_SEND flags:`, altact.map((c) => c.flags), 'targets:', altact.map((c) => c.to.type));

      // The registered send names its target; the gen_call's head is read.
      const reg = messages('initiator').filter((m) => m.control.op === 'REG_SEND');
      const names = new Set(reg.map((m) => (m.control.op === 'REG_SEND' ? m.control.toName : '')));
      // net_adm:ping is a gen_call to net_kernel ({is_auth, Node}); global and rex talk on every new link.
      expect([...names].sort()).toEqual(['echo', 'global_name_server', 'net_kernel', 'rex']);
      for (const side of ['initiator', 'acceptor'] as const) {
        const sys = messages(side).filter((m) => m.control.op === 'REG_SEND' && m.control.toName !== 'echo');
        console.log(`${side} system sends:`, sys.map((m) => `${m.control.op === 'REG_SEND' ? m.control.toName : ''} ${m.payloadHead?.tag ?? '-'}/${m.payloadHead?.request ?? '-'}${m.payloadHead?.tag ? '' : ` ${canon(m.payloadHead!.term)}`}`));
      }
      const ping = reg.find((m) => m.control.op === 'REG_SEND' && m.control.toName === 'net_kernel');
      expect([ping?.payloadHead?.tag, ping?.payloadHead?.request]).toEqual(['$gen_call', 'is_auth']);
      const call = reg.find((m) => m.control.op === 'REG_SEND' && m.control.toName === 'echo' && m.payloadHead?.tag === '$gen_call');
      expect(call?.payloadHead?.request).toBe('which_children');

      // The spawn requests: erpc's target MFA and spawn/2's fun, with the requester's pid and reference.
      const spawns = messages('initiator').flatMap((m) => (m.control.op === 'SPAWN_REQUEST' ? [{ c: m.control, head: m.payloadHead }] : []));
      const calls = spawns.map((s) => s.head?.call && `${s.head.call.module}:${s.head.call.function}/${s.head.call.arity}`);
      expect(calls).toContain('erlang:node/0');
      expect(calls).toContain('erlang:system_info/1');
      expect(spawns.map((s) => s.c.mfa)).toContainEqual({ module: 'timer', function: 'sleep', arity: 1 });
      const viaFun = spawns.find((s) => s.head?.fun);
      expect(viaFun?.c.mfa).toEqual({ module: 'erlang', function: 'apply', arity: 2 });
      expect(viaFun?.head?.fun?.module).toBe('erl_eval');
      for (const s of spawns) {
        expect(s.c.from.type).toBe('pid');
        expect(s.c.reqId.type).toBe('ref');
      }
      console.log('spawn requests seen:', spawns.map((s) => `${s.c.mfa.module}:${s.c.mfa.function}/${s.c.mfa.arity} -> ${calls[spawns.indexOf(s)] ?? (s.head?.fun ? `fun of ${s.head.fun.module}` : '?')}`));

      // Atom churn: every echoed list still resolves to the right atoms after slots were reused.
      const churnLists = (side: Side) =>
        messages(side).flatMap((m) => {
          const t = m.payloadHead?.term;
          const el = typeof t === 'object' && t.type === 'tuple' ? t.elements : [];
          const list = el[1];
          const inner = typeof list === 'object' && list.type === 'tuple' ? list.elements[1] : list;
          if (typeof inner !== 'object' || inner.type !== 'list') return [];
          const names = inner.elements.map((x: Term) => atomName(x) ?? '');
          return names[0]?.startsWith('churn_') ? [names] : [];
        });
      for (const side of ['initiator', 'acceptor'] as const) {
        const lists = churnLists(side);
        expect(lists.length, side).toBe(30);
        lists.forEach((names, i) => expect(names).toEqual(Array.from({ length: 8 }, (_, j) => `churn_${i * 100 + j}`)));
      }
      for (const t of taps) expect(t.decoder.cache.writes, t.side).toBeGreaterThan(2048);

      // The large message came in fragments each way (OTP cuts at 64 KB when both ends set DFLAG_FRAGMENTS).
      const big = messages().filter((m) => m.bytes > 8 * 1024 * 1024);
      expect(big.map((m) => m.side).sort()).toEqual(['acceptor', 'initiator']);
      for (const m of big) expect(m.fragments).toBeGreaterThan(100);
      expect(seen.filter((s) => s.result.kind === 'fragment-pending').length).toBeGreaterThan(200);

      // A tick (net_ticktime 20: a zero-length frame every 5 s on a quiet link).
      await waitFor('a tick', () => seen.some((s) => s.result.kind === 'tick'), 60_000);

      for (const side of ['initiator', 'acceptor'] as const) {
        const counts = new Map<string, number>();
        for (const m of messages(side)) counts.set(m.control.op, (counts.get(m.control.op) ?? 0) + 1);
        console.log(`OTP ${otpA} to ${otpB} ${side} operations:`, Object.fromEntries(counts));
      }
      const bytes = taps.reduce((n, t) => n + t.decodeBytes, 0);
      const ns = taps.reduce((n, t) => n + t.decodeNs, 0n);
      console.log(
        `frames ${taps.map((t) => `${t.side} ${t.frames.length}`).join(', ')}; cache writes ${taps.map((t) => t.decoder.cache.writes).join('/')}; ` +
          `big message fragments ${big.map((m) => m.fragments).join('/')}; decode ${(bytes / 1e6).toFixed(1)} MB in ${(Number(ns) / 1e6).toFixed(1)} ms`,
      );
    }, 300_000);

    it('decodes the captured traffic again at speed (fresh decoders, same frames)', () => {
      // Replays what the first test captured; it has to have run.
      expect(taps.length).toBe(2);
      let bytes = 0;
      let frames = 0;
      const t0 = process.hrtime.bigint();
      const rounds = 5;
      for (let r = 0; r < rounds; r++) {
        for (const t of taps) {
          const d = new DirectionDecoder();
          for (const f of t.frames) {
            const res = d.decode(f);
            if (res.kind === 'error') throw new Error(`${t.side}: ${res.reason}`);
            bytes += f.length;
            frames++;
          }
        }
      }
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(`replay: ${frames} frames, ${(bytes / 1e6).toFixed(1)} MB in ${(s * 1000).toFixed(0)} ms: ${(bytes / 1e6 / s).toFixed(0)} MB/s, ${(frames / s / 1000).toFixed(0)}k frames/s`);
      expect(frames).toBe(rounds * taps.reduce((n, t) => n + t.frames.length, 0));
      // Small messages alone (no fragments, which are mostly copying): the per-message cost.
      const small = taps.map((t) => t.frames.filter((f) => f.length > 0 && f[1] === 68));
      let n = 0;
      let sb = 0;
      const t1 = process.hrtime.bigint();
      for (let r = 0; r < 20; r++) {
        for (const fs of small) {
          const d = new DirectionDecoder();
          for (const f of fs) {
            if (d.decode(f).kind !== 'message') throw new Error('a small frame did not decode');
            n++;
            sb += f.length;
          }
        }
      }
      const s2 = Number(process.hrtime.bigint() - t1) / 1e9;
      console.log(`replay of unfragmented messages: ${n} in ${(s2 * 1000).toFixed(0)} ms: ${(n / s2 / 1000).toFixed(0)}k messages/s, ${(sb / 1e6 / s2).toFixed(0)} MB/s, ${(sb / n).toFixed(0)} bytes on average`);
    });

  });
}
