// How beamgate hands an Erlang node its cookie: a home directory of the
// node's own (mode 0700) whose `.erlang.cookie` (mode 0400, owned by the
// node's user) holds it. The node is started with HOME pointing there, which
// is where OTP reads the cookie from, so the cookie shows neither in argv
// (`/proc/PID/cmdline` is readable by every local user) nor in the
// environment. A prefix command (`ip netns exec NS`, `chroot ROOT`) keeps
// the environment, so HOME reaches the node through it; with a chroot the
// directory must be visible at the same path inside the root.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The file OTP reads the cookie from, under $HOME. */
export const COOKIE_FILE = '.erlang.cookie';

/** What OTP accepts in a cookie file, and what fits on any command line of ours: printable ASCII, no blanks. */
const COOKIE_CHARS = /^[\x21-\x7e]{1,255}$/;

export interface CookieOwner {
  uid: number;
  gid: number;
}

/** Whether OTP and every command line of ours can carry this cookie. */
export function isValidCookie(cookie: string): boolean {
  return COOKIE_CHARS.test(cookie);
}

/** A fresh random cookie (24 bytes, base64url). */
export function randomCookie(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Writes `home/.erlang.cookie` (mode 0400) and makes `home` a directory of
 * mode 0700, both owned by `owner` when given (else by this process's user).
 * The file is written aside and renamed, so a node never reads half a cookie
 * and a read-only cookie from an earlier run is replaced. Returns `home`, for
 * `HOME=home` in the node's environment.
 */
export function writeCookieHome(home: string, cookie: string, owner?: CookieOwner): string {
  assert.ok(isValidCookie(cookie), 'a cookie is 1 to 255 printable ASCII characters without blanks');
  mkdirSync(home, { recursive: true, mode: 0o700 });
  assert.ok(lstatSync(home).isDirectory(), `${home} is not a directory`);
  chmodSync(home, 0o700);
  const tmp = join(home, `${COOKIE_FILE}.${randomBytes(4).toString('hex')}.tmp`);
  writeFileSync(tmp, cookie, { mode: 0o400, flag: 'wx' });
  chmodSync(tmp, 0o400);
  if (owner) {
    chownSync(tmp, owner.uid, owner.gid);
    chownSync(home, owner.uid, owner.gid);
  }
  renameSync(tmp, join(home, COOKIE_FILE));
  return home;
}

/** The cookie of a home made by writeCookieHome, or undefined if there is none. */
export function readCookieHome(home: string): string | undefined {
  const file = join(home, COOKIE_FILE);
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8').trim() || undefined;
}

/** Throws unless `home` holds a cookie file only its owner can read, as OTP demands (it refuses anything looser). */
export function assertCookieHome(home: string): void {
  const file = join(home, COOKIE_FILE);
  assert.ok(existsSync(file), `${file} is missing: make the node's home with writeCookieHome`);
  const mode = statSync(file).mode & 0o777;
  assert.ok((mode & 0o077) === 0, `${file} has mode ${mode.toString(8)}: only its owner may read it`);
}

/** The environment that points a node at its cookie home. */
export function cookieEnv(home: string): { HOME: string } {
  return { HOME: home };
}
