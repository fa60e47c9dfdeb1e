// The environment RabbitMQ's own scripts need to run a broker and its CLI
// behind a gateway (docs/rabbitmq.md), for `beamgate node-flags --rabbitmq`.
// RabbitMQ names the node (RABBITMQ_NODENAME), sets the distribution port
// (RABBITMQ_DIST_PORT) and reads the cookie from $HOME itself, so only the
// rest of what erlFlags gives goes into its *_ERL_ARGS variables.
//
// The quoting differs by version and by program, which is why this exists:
// - the broker: `rabbitmq-server` (3.10 and 4.x) puts
//   RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS on erl's command line unquoted: the
//   shell splits it on blanks and leaves quotes alone, so the inetrc path is
//   the Erlang string "PATH";
// - the CLI on 3.x: `rabbitmq-env` puts RABBITMQ_CTL_ERL_ARGS on erl's
//   command line the same way: "PATH";
// - the CLI on 4.x: `rabbitmq-env` hands RABBITMQ_CTL_ERL_ARGS to the VM in
//   ERL_FLAGS, and erlexec strips one level of quotes there, so the path
//   needs '"PATH"'. With "PATH" the CLI's VM stops at boot with
//   {bad_environment_value,"PATH"}.

import { erlangIpTuple, LOCAL_LOOPBACK } from '../config/address.js';
import { ConfigError } from '../config/roster.js';

/** The RabbitMQ major releases whose scripts this knows (3.10+ and 4.x). */
export type RabbitMajor = '3' | '4';

/** `3`, `3.10`, `3.10.8`, `4`, `4.0.5`... → the major release, or a ConfigError. */
export function parseRabbitVersion(text: string): RabbitMajor {
  const m = /^(\d+)(\.\d+){0,2}$/.exec(text.trim());
  if (m && (m[1] === '3' || m[1] === '4')) return m[1];
  throw new ConfigError([`--rabbitmq: "${text}" is not a RabbitMQ version this knows (3.x or 4.x, e.g. 3.10 or 4.0)`]);
}

export interface RabbitEnvOptions {
  /** The broker, rabbit@HOST. */
  node: string;
  /** Its distribution port, the roster's `port` for it. */
  distPort: number;
  /** The gateway's EPMD port. */
  epmdPort: number;
  inetrcPath: string;
  rabbitmq: RabbitMajor;
}

/** The variables, in the order docs/rabbitmq.md gives them, with their values as the scripts must receive them. */
export function rabbitmqEnv(o: RabbitEnvOptions): [string, string][] {
  // Neither form survives a blank (the broker's is split on it) or a quote (it would end the Erlang string).
  if (!/^[^\s"'\\]+$/.test(o.inetrcPath)) {
    throw new ConfigError([`--inetrc: "${o.inetrcPath}": RabbitMQ's scripts split their ERL_ARGS on blanks, so the path must have no blanks, quotes or backslashes`]);
  }
  const common = ['-start_epmd', 'false', '-kernel', 'inet_dist_use_interface', erlangIpTuple(LOCAL_LOOPBACK), '-kernel', 'inetrc'];
  const server = [...common, `"${o.inetrcPath}"`];
  const ctl = [...common, o.rabbitmq === '4' ? `'"${o.inetrcPath}"'` : `"${o.inetrcPath}"`];
  return [
    ['RABBITMQ_NODENAME', o.node],
    ['RABBITMQ_DIST_PORT', String(o.distPort)],
    ['ERL_EPMD_PORT', String(o.epmdPort)],
    ['RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS', server.join(' ')],
    ['RABBITMQ_CTL_ERL_ARGS', ctl.join(' ')],
  ];
}

/** `export NAME=VALUE` lines a POSIX shell reads back to exactly those values (`eval "$(beamgate node-flags ...)"`). */
export function exportLines(env: [string, string][]): string {
  return env.map(([k, v]) => `export ${k}='${v.replaceAll("'", "'\\''")}'`).join('\n');
}
