// Erlang/OTP releases other than the machine's own: the Debian roots that
// scripts/otp-roots.sh makes (trixie: OTP 27 and Elixir 1.18; sid: OTP 29 and
// Elixir 1.20). A command runs in a root through `unshare --mount` + `chroot`:
// the node gets a private mount namespace in which a small tmpfs covers the
// root's /tmp, the directories it must read (inetrc, code paths, a cookie's
// HOME) are bind-mounted at their own paths, and /proc is mounted. Those
// mounts exist only in that namespace, so they vanish with the process, on a
// crash or a kill -9 too, and nothing is ever mounted on the host.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';

/** Where scripts/otp-roots.sh puts the roots (BEAMGATE_ROOTS_DIR overrides, for both). */
export const ROOTS_DIR = process.env.BEAMGATE_ROOTS_DIR ?? '/var/cache/beamgate/roots';

/** The Debian suite whose root holds each OTP release; the machine's own erl is used for the rest. */
export const ROOT_SUITES: Readonly<Record<string, string>> = { '27': 'trixie', '29': 'sid' };

/** Size of the tmpfs over a root's /tmp: it only holds the empty mount points of the binds. */
const ROOT_TMPFS = 'size=1m,mode=1777';

export interface OtpRuntime {
  /** The OTP major release, e.g. "29". */
  otp: string;
  /** The root directory, or undefined for the machine's own erl. */
  root: string | undefined;
  /**
   * Command words to put before `erl` (or `elixir`, a release's bin/NAME...)
   * so it runs in this runtime, with `binds` (absolute directories) readable
   * at their own paths. Empty for the machine's own erl.
   */
  prefix(binds: readonly string[]): string[];
}

// Runs in the node's new mount namespace: $1 the root, $2 the number of binds, then the binds, then the command.
const ENTER_ROOT = [
  'set -e',
  'root=$1; n=$2; shift 2',
  `mount -t tmpfs -o ${ROOT_TMPFS} beamgate-root-tmp "$root/tmp"`,
  'while [ "$n" -gt 0 ]; do',
  '  d=$1; shift; n=$((n - 1))',
  '  mkdir -p "$root$d"',
  '  mount --bind "$d" "$root$d"',
  'done',
  'mount -t proc proc "$root/proc"',
  'exec chroot "$root" "$@"',
].join('\n');

/** The command words that run a command in `root` with `binds` visible (see ENTER_ROOT). */
export function rootPrefix(root: string, binds: readonly string[]): string[] {
  const unique = [...new Set(binds)];
  for (const b of unique) {
    if (!isAbsolute(b) || b.includes('\n')) throw new Error(`bind path must be absolute: ${b}`);
  }
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', ENTER_ROOT, 'beamgate-root', root, String(unique.length), ...unique];
}

/** The machine's own OTP major release (`erl` on PATH). */
export function hostOtp(): string {
  const r = spawnSync('erl', ['-noshell', '-eval', 'io:put_chars(erlang:system_info(otp_release)), halt().'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`erl does not start: ${r.error?.message ?? r.stderr}`);
  return r.stdout.trim();
}

const checked = new Map<string, OtpRuntime | string>();

/**
 * The runtime for OTP release `otp`, or a sentence saying why there is none
 * (no root made, not root, unshare missing, erl in it reports another release).
 */
export function findRuntime(otp: string): OtpRuntime | string {
  const known = checked.get(otp);
  if (known !== undefined) return known;
  const found = probe(otp);
  checked.set(otp, found);
  return found;
}

function probe(otp: string): OtpRuntime | string {
  if (hostOtp() === otp) return { otp, root: undefined, prefix: () => [] };
  const suite = ROOT_SUITES[otp];
  if (!suite) return `no Debian root is known for OTP ${otp} (known: ${Object.entries(ROOT_SUITES).map(([o, s]) => `${o} in ${s}`).join(', ')})`;
  const root = `${ROOTS_DIR}/${suite}`;
  if (!existsSync(`${root}/usr/bin/erl`)) return `OTP ${otp} needs the Debian ${suite} root at ${root}, which does not exist: run bash scripts/otp-roots.sh (scripts/setup.sh does, unless BEAMGATE_OTP_ROOTS=0)`;
  if (process.getuid?.() !== 0) return `OTP ${otp} runs in ${root} with unshare and chroot, which need root`;
  const prefix = (binds: readonly string[]) => rootPrefix(root, binds);
  const [cmd, ...args] = prefix([]);
  const r = spawnSync(cmd!, [...args, 'erl', '-noshell', '-eval', 'io:put_chars(erlang:system_info(otp_release)), halt().'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return `erl does not start in ${root}: ${r.error?.message ?? r.stderr.trim()}`;
  if (r.stdout.trim() !== otp) return `${root} holds OTP ${r.stdout.trim()}, not ${otp}`;
  return { otp, root, prefix };
}
