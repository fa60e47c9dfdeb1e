// The gateway's PID file (`run --pid-file PATH`), for service managers that
// follow a daemon by it. systemd re-reads a unit's PIDFile= when the main
// process exits, so a take-over that writes the new process's PID here before
// the old one exits moves the service to the new process without a stop
// (deploy/systemd/beamgate.service, docs/upgrade.md).

import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

/** Writes this process's PID to `file` in one step (a whole file or none: systemd may read it at any moment). */
export function writePidFile(file: string, pid: number = process.pid): void {
  const tmp = `${file}.${pid}.tmp`;
  writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

/** Removes `file` if it still names this process: after a take-over it names the new one, which it must keep. */
export function removePidFile(file: string, pid: number = process.pid): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return;
  }
  if (text.trim() !== String(pid)) return;
  try {
    unlinkSync(file);
  } catch {
    // Gone already: nothing to do.
  }
}
