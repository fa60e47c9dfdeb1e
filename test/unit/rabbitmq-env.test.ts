// The environment `beamgate node-flags --rabbitmq` prints for RabbitMQ's
// scripts: the broker's and the CLI's ERL_ARGS quoted as each version needs
// (the 4.x CLI's go through ERL_FLAGS, where erlexec strips one level of
// quotes), the export lines a shell reads back to exactly those values, and
// the versions and paths it refuses. rabbitmq.test.ts runs real brokers with
// these values on 3.10 and 4.0.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/roster.js';
import { exportLines, parseRabbitVersion, rabbitmqEnv } from '../../src/erlang/rabbitmq.js';

const BASE = { node: 'rabbit@alpha', distPort: 25672, epmdPort: 4369, inetrcPath: '/etc/beamgate/alpha.inetrc' } as const;
const COMMON = '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1} -kernel inetrc';

describe('node-flags --rabbitmq: the environment of RabbitMQ scripts', () => {
  it('3.x: broker and CLI both take the Erlang string "PATH" (both go on erl\'s command line)', () => {
    expect(rabbitmqEnv({ ...BASE, rabbitmq: '3' })).toEqual([
      ['RABBITMQ_NODENAME', 'rabbit@alpha'],
      ['RABBITMQ_DIST_PORT', '25672'],
      ['ERL_EPMD_PORT', '4369'],
      ['RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS', `${COMMON} "/etc/beamgate/alpha.inetrc"`],
      ['RABBITMQ_CTL_ERL_ARGS', `${COMMON} "/etc/beamgate/alpha.inetrc"`],
    ]);
  });

  it('4.x: the broker keeps "PATH", the CLI needs \'"PATH"\' (ERL_FLAGS loses one level of quotes)', () => {
    const env = Object.fromEntries(rabbitmqEnv({ ...BASE, rabbitmq: '4' }));
    expect(env.RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS).toBe(`${COMMON} "/etc/beamgate/alpha.inetrc"`);
    expect(env.RABBITMQ_CTL_ERL_ARGS).toBe(`${COMMON} '"/etc/beamgate/alpha.inetrc"'`);
  });

  it('the export lines give a POSIX shell exactly those values', () => {
    for (const rabbitmq of ['3', '4'] as const) {
      const env = rabbitmqEnv({ ...BASE, rabbitmq });
      const script = `${exportLines(env)}\n${env.map(([k]) => `printf '%s\\n' "$${k}"`).join('\n')}`;
      const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.split('\n').slice(0, env.length)).toEqual(env.map(([, v]) => v));
    }
  });

  it('versions: 3, 3.10, 3.10.8, 4, 4.0, 4.0.5; nothing else', () => {
    for (const [text, major] of [['3', '3'], ['3.10', '3'], ['3.10.8', '3'], ['4', '4'], ['4.0', '4'], ['4.0.5', '4']] as const) expect(parseRabbitVersion(text)).toBe(major);
    for (const text of ['2.8', '5.0', '4.x', '', 'latest', '4.0.5.1']) expect(() => parseRabbitVersion(text), text).toThrow(ConfigError);
  });

  it('an inetrc path the scripts would split or unquote is refused', () => {
    for (const inetrcPath of ['/etc/bg/a b.inetrc', '/etc/bg/"x"', "/etc/bg/it's", '/etc/bg/a\\b', '/etc/bg/tab\there']) {
      expect(() => rabbitmqEnv({ ...BASE, inetrcPath, rabbitmq: '4' }), inetrcPath).toThrow(ConfigError);
    }
  });
});
