// One take-over conversation: messages (protocol.ts) with their descriptors
// over a connected Unix stream socket, through native/passfd.c. Every receive
// is bounded in bytes, descriptors and time; a message whose descriptors do
// not match its items closes what came and stops the take-over.

import { closeSync } from 'node:fs';
import type { PassFd } from '../fastpath/native.js';
import { TAKEOVER_MAX_BYTES, TAKEOVER_MAX_MESSAGE_BYTES } from '../config/limits.js';
import { decode, encode, fdsPerItem, itemCount, type Message, TakeoverProtocolError } from './protocol.js';

/** The most descriptors passfd carries in one message (native/passfd.h). */
const MAX_FDS = 250;

export class Channel {
  private received = 0;
  private closed = false;

  constructor(
    private readonly passfd: PassFd,
    private readonly fd: number,
    /** When the whole take-over must be over (ms since epoch). */
    private readonly deadline: number,
  ) {}

  private left(): number {
    const ms = this.deadline - Date.now();
    if (ms <= 0) throw new TakeoverProtocolError('take-over timed out');
    return ms;
  }

  async send(m: Message, fds: number[] = []): Promise<void> {
    await this.passfd.send(this.fd, encode(m), fds, this.left());
  }

  /** The next message; `expect` names the types that may come now. */
  async recv<T extends Message['t']>(...expect: T[]): Promise<{ msg: Extract<Message, { t: T }>; fds: number[] }> {
    const { data, fds } = await this.passfd.recv(this.fd, TAKEOVER_MAX_MESSAGE_BYTES, MAX_FDS, this.left());
    try {
      this.received += data.length;
      if (this.received > TAKEOVER_MAX_BYTES) throw new TakeoverProtocolError(`more than ${TAKEOVER_MAX_BYTES} bytes in one take-over`);
      const msg = decode(data);
      if (msg.t === 'refuse' && !expect.includes('refuse' as T)) throw new TakeoverProtocolError(`refused by the other process: ${msg.why}`);
      if (!expect.includes(msg.t as T)) throw new TakeoverProtocolError(`"${msg.t}" where ${expect.join(' or ')} was due`);
      const want = itemCount(msg) * fdsPerItem(msg);
      if (fds.length !== want) throw new TakeoverProtocolError(`"${msg.t}" came with ${fds.length} descriptors for ${want}`);
      return { msg: msg as Extract<Message, { t: T }>, fds };
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
