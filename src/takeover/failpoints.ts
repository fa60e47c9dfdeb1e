// Named points where a test makes this process die as kill -9 would
// (BEAMGATE_FAILPOINT=NAME): a take-over's failures must be shown on the real
// processes, at a moment a test cannot hit from outside by timing alone.

export type Failpoint = 'takeover-before-ready';

export function failpoint(name: Failpoint): void {
  if (process.env.BEAMGATE_FAILPOINT === name) process.kill(process.pid, 'SIGKILL');
}
