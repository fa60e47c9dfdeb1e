// A running gateway's take-over socket, for the life of `beamgate run`: one
// take-over at a time. While one runs the socket is closed (its path gone):
// the next process binds the same path once it serves, and a take-over that
// did not happen opens it again.

import type net from 'node:net';
import type { Gateway } from '../gateway.js';
import { give } from './give.js';
import { listenTakeoverSocket } from './socket.js';

export class TakeoverListener {
  private server: net.Server | undefined;
  private closed = false;

  constructor(
    private readonly gw: Gateway,
    private readonly file: string,
    private readonly version: string,
    /** The take-over happened: the caller stops this process. */
    private readonly handedOff: () => void,
  ) {}

  /** Listens; a path held by another process (or not a socket) is logged and left alone, and this gateway runs without take-overs. */
  async open(): Promise<void> {
    if (this.closed || !this.gw.native) return;
    try {
      this.server = await listenTakeoverSocket(this.file, (sock) => void this.run(sock));
      if (this.closed) return this.close();
      this.gw.logger.info('take-over socket listening', { socket: this.file });
    } catch (err) {
      this.gw.logger.error('take-over socket not opened: this gateway cannot be taken over', { socket: this.file, detail: (err as Error).message });
    }
  }

  close(): void {
    this.closed = true;
    this.server?.close();
    this.server = undefined;
  }

  private async run(sock: net.Socket): Promise<void> {
    const server = this.server;
    this.server = undefined;
    // The path goes with it: nobody else connects meanwhile, and the next process can bind it.
    server?.close();
    this.gw.takingOver = true;
    let handedOff = false;
    try {
      const r = await give(this.gw.takeoverParts(), sock, this.version);
      handedOff = r.handedOff;
    } catch (err) {
      this.gw.logger.error('take-over failed', { detail: (err as Error).message });
    } finally {
      this.gw.takingOver = false;
    }
    if (handedOff) return this.handedOff();
    await this.open();
  }
}
