// Structured logs: one JSON object per line on stderr. Fields are plain data
// chosen by the caller; nothing secret (keys, cookies, payloads) is ever passed.

import type { LogLevel } from '../config/roster.js';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type LogSink = (line: string) => void;

export class Logger {
  constructor(
    private level: LogLevel,
    private readonly sink: LogSink = (line) => process.stderr.write(line + '\n'),
    private readonly base: LogFields = {},
  ) {}

  setLevel(level: LogLevel): void {
    this.level = level;
  }

  child(fields: LogFields): Logger {
    const child = new Logger(this.level, this.sink, { ...this.base, ...fields });
    // Children follow the parent's level, which a reload may change.
    Object.defineProperty(child, 'level', { get: () => this.level, set: (v: LogLevel) => (this.level = v) });
    return child;
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    this.sink(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...this.base, ...fields }));
  }
}
