#!/usr/bin/env node
// The beamgate command line. Exit codes: 0 success (for `run`: stopped and
// every link closed on its own before the drain deadline), 1 runtime failure,
// 2 bad usage or invalid configuration (nothing was started), 3 (`run` only)
// stopped, but links still open at the drain deadline had to be closed.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadGatewayConfig, resolveGatewayName } from '../config/load.js';
import { ConfigError, gatewayOrThrow, loadRoster, tlsPathsFor } from '../config/roster.js';
import { ConfigWatcher, MAX_RELOAD_INTERVAL_S, MIN_RELOAD_INTERVAL_S } from '../config/watch.js';
import { isValidCookie, writeCookieHome } from '../erlang/cookie.js';
import { erlFlags, etcHosts, inetrc, shellQuote, walledOff } from '../erlang/flags.js';
import { exportLines, parseRabbitVersion, rabbitmqEnv } from '../erlang/rabbitmq.js';
import { Gateway } from '../gateway.js';
import { hostExposureWarnings } from '../host/exposure.js';
import { Logger } from '../log/logger.js';
import { type CaCertificate, describeCa, issuersOf, parseCaBundle } from '../pki/ca-bundle.js';
import { loadTlsMaterial } from '../pki/material.js';
import { filterLines } from '../policy/filter.js';
import { groupsOf, groupsOfPattern, policyMatrix } from '../policy/policy.js';
import { type DataPlaneMode, parseDataPlane } from '../fastpath/native.js';
import { defaultSocketPath } from '../takeover/socket.js';
import { NobodyServing, take, type Taken } from '../takeover/take.js';
import { Successors } from '../takeover/successor.js';
import { removePidFile, writePidFile } from '../runtime/pid-file.js';
import { TakeoverListener } from '../takeover/listener.js';
import { VERSION } from '../metrics/metrics.js';

const USAGE = `beamgate: secure transport gateway for Erlang/Elixir distribution

usage:
  beamgate run        --config ROSTER --gateway NAME [--reload-interval SECONDS]
                      [--data-plane auto|native|node] [--take-over | --take-over-if-running]
                      [--takeover-socket PATH] [--pid-file PATH]
                                                       run this host's gateway; SIGHUP reloads, and so
                                                       does a change to the roster or TLS files when
                                                       an interval is given; established links go to the
                                                       native data plane when it is built (auto); with
                                                       --take-over, take the running gateway's listeners,
                                                       registrations and links over: no nodedown
                                                       (docs/upgrade.md); --take-over-if-running: the
                                                       same, or start afresh if no gateway serves; SIGUSR2
                                                       starts a successor from the same command line that
                                                       takes over (an upgrade in place)
  beamgate check      --config ROSTER [--gateway NAME] validate a roster (and NAME's TLS files); list the CAs;
                                                       on NAME's host, warn about a real EPMD on its EPMD
                                                       port and node ports bound beyond loopback
  beamgate certs      --config ROSTER [--gateway NAME]... [--force]
                                                       create the cluster CA (once) and gateway certificates
  beamgate certs      --config ROSTER --new-ca DIR [--force | --retire-old-ca]
                                                       CA rollover (docs/ca-rollover.md): 1. create a new CA
                                                       in DIR and add it to the bundle; 2. with --force,
                                                       reissue the gateway certificates from it; 3. with
                                                       --retire-old-ca, leave only it in the bundle
  beamgate hosts      --config ROSTER --gateway NAME [--format inetrc|hosts] [--out FILE]
                                                       host name mapping for the nodes on NAME's host
  beamgate node-flags --config ROSTER --node NAME --inetrc PATH [--hidden] [--rabbitmq VERSION]
                                                       the erl flags a node needs behind its gateway; with
                                                       --rabbitmq 3.10|4.0, the environment RabbitMQ's
                                                       scripts need for that broker and its CLI, as export
                                                       lines (docs/rabbitmq.md)
  beamgate cookie-home --out DIR                       write the cookie read from stdin to DIR/.erlang.cookie
                                                       (mode 0400, DIR 0700): start nodes with HOME=DIR
  beamgate demo       [--dir DIR] [--once]             a two-gateway mesh with real Erlang nodes on this machine

--gateway defaults to $BEAMGATE_GATEWAY, --reload-interval to $BEAMGATE_RELOAD_INTERVAL,
--data-plane to $BEAMGATE_DATA_PLANE, --takeover-socket to $BEAMGATE_TAKEOVER_SOCKET, else
$RUNTIME_DIRECTORY/NAME.takeover.sock (systemd), /run/beamgate/ for root, or the temp dir;
--pid-file to $BEAMGATE_PID_FILE (none by default).`;

/** One command's lines of USAGE (its usage line and the lines under it), for `beamgate COMMAND --help`. */
function commandUsage(command: string): string | undefined {
  const lines = USAGE.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  beamgate ${command} `));
  if (start < 0) return undefined;
  let end = start + 1;
  while (end < lines.length && lines[end]!.startsWith('    ')) end++;
  return ['usage:', ...lines.slice(start, end), '', lines[lines.length - 1]].join('\n');
}

/** `run` stopped, but links still open at the drain deadline had to be closed. */
const EXIT_LINKS_CUT = 3;

/** --data-plane: auto, native or node. */
function dataPlaneOption(text: string | undefined): DataPlaneMode {
  try {
    return parseDataPlane(text);
  } catch (err) {
    throw new ConfigError([`--data-plane: ${(err as Error).message}`]);
  }
}

/** --reload-interval: whole seconds within the watcher's bounds, or undefined for no watching. */
function reloadInterval(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const s = Number(text);
  if (!Number.isInteger(s) || s < MIN_RELOAD_INTERVAL_S || s > MAX_RELOAD_INTERVAL_S) {
    throw new ConfigError([`--reload-interval: "${text}" is not a whole number of seconds from ${MIN_RELOAD_INTERVAL_S} to ${MAX_RELOAD_INTERVAL_S}`]);
  }
  return s;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string', short: 'c' },
      gateway: { type: 'string', short: 'g', multiple: true },
      force: { type: 'boolean' },
      'new-ca': { type: 'string' },
      'retire-old-ca': { type: 'boolean' },
      format: { type: 'string' },
      out: { type: 'string' },
      node: { type: 'string' },
      inetrc: { type: 'string' },
      rabbitmq: { type: 'string' },
      hidden: { type: 'boolean' },
      dir: { type: 'string' },
      once: { type: 'boolean' },
      'reload-interval': { type: 'string' },
      'data-plane': { type: 'string' },
      'take-over': { type: 'boolean' },
      'take-over-if-running': { type: 'boolean' },
      'pid-file': { type: 'string' },
      'takeover-socket': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  // --help before anything it would otherwise require (--config, a gateway name).
  if (values.help && command !== undefined) {
    const usage = commandUsage(command);
    if (usage !== undefined) {
      console.log(usage);
      return 0;
    }
  }
  const one = (v: string[] | undefined) => (v && v.length > 0 ? v[v.length - 1] : undefined);
  const config = () => {
    if (!values.config) throw new ConfigError(['--config ROSTER is required']);
    return values.config;
  };

  switch (command) {
    case 'run': {
      const gateway = resolveGatewayName(one(values.gateway));
      const reloadIntervalS = reloadInterval(values['reload-interval'] ?? process.env.BEAMGATE_RELOAD_INTERVAL);
      const dataPlane = dataPlaneOption(values['data-plane'] ?? process.env.BEAMGATE_DATA_PLANE);
      const cfg = loadGatewayConfig(config(), gateway);
      const socketPath = values['takeover-socket'] ?? process.env.BEAMGATE_TAKEOVER_SOCKET ?? defaultSocketPath(gateway);
      const pidFile = values['pid-file'] ?? (process.env.BEAMGATE_PID_FILE || undefined);
      if (values['take-over'] && values['take-over-if-running']) throw new ConfigError(['--take-over and --take-over-if-running: give one of them']);
      const gw = new Gateway({ roster: cfg.roster, gateway, material: cfg.material, logger: new Logger(cfg.roster.log.level), guardHeap: true, dataPlane });
      let taken: Taken | undefined;
      const ifRunning = values['take-over-if-running'] === true;
      if (values['take-over'] || ifRunning) {
        const engine = gw.native;
        if (!engine) throw new Error(`--take-over${ifRunning ? '-if-running' : ''} needs the native data plane (scripts/build-native.sh): descriptor passing and the links are there`);
        try {
          taken = await take(engine.passfd, socketPath, gateway, VERSION, true);
        } catch (err) {
          if (ifRunning && err instanceof NobodyServing) {
            gw.logger.info('no running gateway to take over from, starting afresh', { socket: socketPath, detail: err.message });
          } else {
            gw.metrics.takeovers.labels('take', 'refused').inc();
            gw.logger.error('take-over refused, the running gateway serves on', { socket: socketPath, detail: (err as Error).message });
            return 1;
          }
        }
      }
      await gw.start(taken);
      // Before `done`: the old process exits on it, and systemd reads the PID file when it does.
      if (pidFile !== undefined) writePidFile(pidFile);
      if (taken) await taken.done(gw.table.established.size).catch((err: Error) => gw.logger.warn('take-over done not confirmed to the old process', { detail: err.message }));
      const configPath = config();
      return await new Promise<number>((resolve) => {
        let stopping = false;
        const successors = new Successors(gw.logger, gw.metrics);
        const exit = (code: number) => {
          if (pidFile !== undefined) removePidFile(pidFile);
          resolve(code);
        };
        const takeovers = new TakeoverListener(gw, socketPath, VERSION, () => {
          // Handed over: everything that mattered runs in the new process now.
          stopping = true;
          successors.release();
          gw.stop().then(() => exit(0), () => exit(1));
        });
        void takeovers.open();
        const stop = (signal: string) => {
          takeovers.close();
          if (stopping) {
            // A second signal: the operator does not want to wait for the drain.
            gw.logger.warn('second stop signal, closing every link now', { signal });
            gw.stop().then(() => exit(EXIT_LINKS_CUT), () => exit(1));
            return;
          }
          stopping = true;
          const deadline = gw.roster.limits.drainTimeoutMs;
          gw.logger.info('stopping', { signal, drain_timeout_ms: deadline });
          gw.drain(deadline).then(
            (r) => exit(r.clean ? 0 : EXIT_LINKS_CUT),
            () => exit(1),
          );
        };
        // SIGHUP and a settled file change take the same path.
        const reload = (trigger: Record<string, unknown>) => {
          gw.logger.info('reloading', { ...trigger, config: configPath });
          let next;
          try {
            next = loadGatewayConfig(configPath, gateway);
          } catch (err) {
            const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
            gw.refuseReload(problems);
            return;
          }
          void gw.reload(next);
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGHUP', () => reload({ trigger: 'SIGHUP' }));
        process.on('SIGUSR2', () => {
          if (stopping) return gw.logger.warn('stopping, SIGUSR2 ignored');
          if (!gw.native) return gw.logger.warn('SIGUSR2: take-overs need the native data plane, no successor started');
          // A container's first process takes every other with it when it exits: the successor would die with the links it took.
          if (process.pid === 1) return gw.logger.warn('SIGUSR2: this gateway is its container\'s first process, its successor would end with it; no successor started (docker-compose: deploy/compose-upgrade.sh)');
          successors.start();
        });
        if (reloadIntervalS !== undefined) {
          const watcher = new ConfigWatcher({
            paths: () => [configPath, ...Object.values(tlsPathsFor(gw.roster, gateway))],
            intervalMs: reloadIntervalS * 1000,
            onChange: (files) => reload({ trigger: 'file change', files }),
          });
          watcher.start().then(
            () => gw.logger.info('watching configuration files', { interval_s: reloadIntervalS }),
            (err: unknown) => gw.logger.error('cannot watch configuration files', { detail: (err as Error).message }),
          );
        }
      });
    }
    case 'check': {
      const roster = loadRoster(config());
      const gateway = one(values.gateway) ?? process.env.BEAMGATE_GATEWAY;
      // The CAs: from the gateway's checked material, else from the bundle alone when it is on this machine.
      let cas: CaCertificate[] | undefined;
      let warnings: string[] = [];
      let own: X509Certificate | undefined;
      const caPath = tlsPathsFor(roster, gateway ?? '_').ca;
      if (gateway) {
        gatewayOrThrow(roster, gateway);
        const m = loadTlsMaterial(tlsPathsFor(roster, gateway), gateway, roster);
        if (Array.isArray(m)) throw new ConfigError(m);
        ({ cas, warnings } = m);
        own = new X509Certificate(m.cert);
      } else if (!caPath.includes('{gateway}') && existsSync(caPath)) {
        const parsed = parseCaBundle(readFileSync(caPath, 'utf8'), caPath);
        if (Array.isArray(parsed)) throw new ConfigError(parsed);
        ({ cas, warnings } = parsed);
      }
      console.log(
        `ok: ${roster.gateways.size} gateways, ${roster.nodes.size} nodes, ${roster.operators.length} operator patterns` +
          (roster.localOnly.length > 0 ? `, ${roster.localOnly.length} local-only patterns` : '') +
          (gateway ? `; TLS files of ${gateway} are valid` : ''),
      );
      if (cas) {
        console.log(`tls.ca ${caPath}: ${cas.length} CA${cas.length > 1 ? 's' : ''}`);
        cas.forEach((ca, i) => {
          const issued = own && issuersOf(own, [ca]).length > 0 ? `; issued the certificate of ${gateway}` : '';
          console.log(`  ${i + 1}. ${describeCa(ca)}${issued}`);
        });
      } else {
        const why = caPath.includes('{gateway}') ? 'depends on {gateway}' : 'not on this machine';
        console.log(`tls.ca ${caPath}: ${why}, not checked (pass --gateway NAME where the TLS files are)`);
      }
      for (const w of warnings) console.error(`warning: ${w}`);
      const policy = roster.policy;
      if (!policy) console.log('policy: none (every roster node may link with every other)');
      else {
        console.log(`policy: ${policy.groups.size} groups, ${policy.rules.length} rules; yes = may link, hidden = only as a hidden node, - = refused`);
        console.log(policyMatrix(policy));
        for (const line of filterLines(policy)) console.log(line);
        for (const node of roster.nodes.values()) console.log(`  ${node.name}: ${groupsOf(policy, node.name).join(', ')}`);
        for (const o of roster.operators) {
          const host = roster.gateways.get(o.gateway)!.host;
          const may = groupsOfPattern(policy, o.pattern, host);
          console.log(`  operators ${o.pattern}@${host}: ${may.length > 0 ? `may be in ${may.join(', ')} (each name is matched on its own)` : 'in no group: refused every link'}`);
        }
      }
      // On the gateway's host: what else listens where it must not. Warnings
      // never change the exit code; the roster and files are valid.
      if (gateway) for (const w of hostExposureWarnings(roster, gateway)) console.error(`warning: ${w}`);
      return 0;
    }
    case 'certs': {
      const roster = loadRoster(config());
      const names = values.gateway && values.gateway.length > 0 ? values.gateway : [...roster.gateways.keys()];
      // Loaded on demand: the certificate library would otherwise sit in every
      // running gateway's heap, and every major GC during bulk relaying marks it.
      const { issueCerts } = await import('./certs.js');
      await issueCerts(roster, names, values.force ?? false, (l) => console.log(l), { newCa: values['new-ca'], retireOldCa: values['retire-old-ca'] ?? false });
      return 0;
    }
    case 'hosts': {
      const roster = loadRoster(config());
      const gateway = resolveGatewayName(one(values.gateway));
      const format = values.format ?? 'inetrc';
      if (format !== 'inetrc' && format !== 'hosts') throw new ConfigError(['--format is inetrc or hosts']);
      const text = format === 'inetrc' ? inetrc(roster, gateway) : etcHosts(roster, gateway);
      if (values.out) writeFileSync(values.out, text);
      else process.stdout.write(text);
      return 0;
    }
    case 'node-flags': {
      const roster = loadRoster(config());
      if (!values.node || !values.inetrc) throw new ConfigError(['--node NAME and --inetrc PATH are required']);
      const node = roster.nodes.get(values.node);
      const host = values.node.slice(values.node.indexOf('@') + 1);
      const gw = node ? roster.gateways.get(node.gateway) : [...roster.gateways.values()].find((g) => g.host === host);
      if (!gw) throw new ConfigError([`${values.node}: no gateway has host ${host}`]);
      if (values.rabbitmq !== undefined) {
        // The broker's and the CLI's forms differ by RabbitMQ version: src/erlang/rabbitmq.ts says why.
        if (!node) throw new ConfigError([`--rabbitmq: ${values.node} is not a node of the roster (a broker needs its port there)`]);
        const env = rabbitmqEnv({ node: values.node, distPort: node.port, epmdPort: gw.epmdPort, inetrcPath: values.inetrc, rabbitmq: parseRabbitVersion(values.rabbitmq) });
        console.log(exportLines(env));
        return 0;
      }
      const walled = walledOff(roster, values.node);
      const flags = erlFlags({
        name: values.node,
        epmdPort: gw.epmdPort,
        inetrcPath: values.inetrc,
        ...(node ? { port: node.port } : { hidden: true }),
        connectAll: walled.length === 0,
      });
      console.log(shellQuote(['erl', ...flags]));
      if (walled.length > 0) {
        console.error(`# -connect_all false: the policy keeps ${values.node} from linking with ${walled.length} roster node(s) (${walled.slice(0, 5).join(', ')}${walled.length > 5 ? ', ...' : ''}); see docs/policy.md`);
      }
      return 0;
    }
    case 'cookie-home': {
      // From stdin, never from argv or the environment: both are visible to others.
      if (!values.out) throw new ConfigError(['--out DIR is required (the cookie is read from stdin)']);
      const cookie = readFileSync(0, 'utf8').split('\n')[0]!.trim();
      if (!isValidCookie(cookie)) throw new ConfigError(['cookie-home: stdin must hold the cookie, 1 to 255 printable characters without blanks']);
      writeCookieHome(values.out, cookie);
      console.log(`cookie written to ${values.out}/.erlang.cookie (mode 0400); start the nodes with HOME=${values.out}`);
      return 0;
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo({ dir: values.dir ?? '.beamgate-demo', once: values.once ?? false });
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    console.error(`beamgate: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
