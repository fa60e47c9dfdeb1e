// Real RabbitMQ brokers (Debian's rabbitmq-server) behind beamgate, one per
// namespace host: the roster, certificates and inetrc files, a gateway per
// host as a `beamgate run` process, then each broker started the way
// RabbitMQ's own scripts start it (`rabbitmq-server` with the environment
// `beamgate node-flags --rabbitmq` gives, no hand-made erl command line), and
// rabbitmqctl and an AMQP client run inside the hosts with bounded timeouts.
//
// Two installs: this machine's (bookworm, RabbitMQ 3.10 on OTP 25) and the
// RabbitMQ 4 root scripts/rabbitmq-root.sh makes (trixie, 4.0 on OTP 27), in
// which the broker and its CLI run through `unshare --mount` + `chroot`
// (src/erlang/roots.ts) inside the namespace host, with the lab's directory
// bound in. The gateways and the AMQP client run from this machine in both.
//
// Each host has its own HOME (the cookie, mode 0400, in $HOME/.erlang.cookie:
// never in argv), its own Mnesia and log directories and config files; the
// gateway starts before the broker, since the broker registers with the
// gateway's EPMD as it boots.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { issueCerts } from '../../src/cli/certs.js';
import { loadRoster, type Roster } from '../../src/config/roster.js';
import { writeCookieHome } from '../../src/erlang/cookie.js';
import { inetrc } from '../../src/erlang/flags.js';
import { type RabbitMajor, rabbitmqEnv } from '../../src/erlang/rabbitmq.js';
import { ROOTS_DIR, rootPrefix } from '../../src/erlang/roots.js';
import { NetGateway, NetnsLab } from './netns.js';

/** RabbitMQ's own start script (the upstream one: Debian's /usr/sbin wrapper would su to the rabbitmq user and reset HOME). */
export const RABBITMQ_SBIN = '/usr/lib/rabbitmq/bin';
export const RABBITMQ_SERVER = join(RABBITMQ_SBIN, 'rabbitmq-server');
export const RABBITMQCTL = join(RABBITMQ_SBIN, 'rabbitmqctl');
export const RABBITMQ_QUEUES = join(RABBITMQ_SBIN, 'rabbitmq-queues');
const AMQP_CLIENT = fileURLToPath(new URL('./amqp-client.mjs', import.meta.url));

/** The ports every host uses (each host has a network stack of its own). */
export const RABBIT_LAB_PORTS = { epmd: 4369, tls: 4370, metrics: 9464, amqp: 5672 } as const;

/** How long one rabbitmqctl command may run unless the caller says otherwise (a CLI node boots in 2-5 s on a quiet machine). */
export const CTL_TIMEOUT_MS = 60_000;
/** How long a broker may take from `rabbitmq-server` to a started rabbit application (loaded 2-core machine, three booting at once). */
export const BROKER_START_TIMEOUT_MS = 150_000;
/** How long a clean `rabbitmqctl stop` may take before the broker is killed. */
const BROKER_STOP_TIMEOUT_MS = 45_000;
/** How long one AMQP client run may take. */
export const AMQP_TIMEOUT_MS = 60_000;
/** Output of a command kept at most. */
const MAX_OUTPUT = 4 * 1024 * 1024;

/** Where scripts/rabbitmq-root.sh puts the RabbitMQ 4 root. */
export const RABBITMQ4_ROOT = join(ROOTS_DIR, 'trixie-rabbitmq');

/** A RabbitMQ install the lab runs brokers and CLI from. */
export interface RabbitInstall {
  major: RabbitMajor;
  /** The full version, from the rabbit application's directory (e.g. 3.10.8, 4.0.5). */
  version: string;
  /** The OTP release it runs on. */
  otp: string;
  /** The Debian root it lives in, or undefined for this machine's own. */
  root: string | undefined;
}

/** The version of the rabbit application under `root` (or this machine), or null when none is installed. */
function installedVersion(root: string): string | null {
  const lib = join(root, 'usr/lib/rabbitmq/lib');
  if (!existsSync(join(root, RABBITMQ_SERVER)) || !existsSync(join(root, RABBITMQCTL)) || !existsSync(lib)) return null;
  const dir = readdirSync(lib).find((d) => d.startsWith('rabbitmq_server-'));
  return dir ? dir.slice('rabbitmq_server-'.length) : null;
}

/** How long `erl` may take to print its release (in a root, on a loaded machine). */
const OTP_PROBE_TIMEOUT_MS = 60_000;

/** The OTP release `erl` reports when run with `prefix` (into a root, or none), or '?'. */
function otpIn(prefix: string[]): string {
  const [cmd, ...args] = [...prefix, 'erl', '-noshell', '-eval', 'io:put_chars(erlang:system_info(otp_release)), halt().'];
  const r = spawnSync(cmd!, args, { encoding: 'utf8', timeout: OTP_PROBE_TIMEOUT_MS });
  return r.status === 0 ? r.stdout.trim() : '?';
}

/**
 * The install of RabbitMQ `major`, or a sentence saying why there is none:
 * 3 is this machine's package (scripts/setup.sh installs it), 4 the root
 * scripts/rabbitmq-root.sh makes (set-up makes it unless BEAMGATE_OTP_ROOTS=0).
 */
export function findRabbitmq(major: RabbitMajor): RabbitInstall | string {
  const known = found.get(major);
  if (known !== undefined) return known;
  const result = probeRabbitmq(major);
  found.set(major, result);
  return result;
}
const found = new Map<RabbitMajor, RabbitInstall | string>();

function probeRabbitmq(major: RabbitMajor): RabbitInstall | string {
  if (major === '3') {
    const version = installedVersion('/');
    if (version === null) return `RabbitMQ is not installed (${RABBITMQ_SERVER}); scripts/setup.sh installs Debian's rabbitmq-server`;
    if (!version.startsWith('3.')) return `this machine's RabbitMQ is ${version}, not 3.x`;
    return { major, version, otp: otpIn([]), root: undefined };
  }
  const version = installedVersion(RABBITMQ4_ROOT);
  if (version === null) return `RabbitMQ 4 needs the root ${RABBITMQ4_ROOT}, which does not exist: run bash scripts/rabbitmq-root.sh (scripts/setup.sh does, unless BEAMGATE_OTP_ROOTS=0)`;
  if (!version.startsWith('4.')) return `${RABBITMQ4_ROOT} holds RabbitMQ ${version}, not 4.x`;
  if (process.getuid?.() !== 0) return `RabbitMQ 4 runs in ${RABBITMQ4_ROOT} with unshare and chroot, which need root`;
  return { major, version, otp: otpIn(rootPrefix(RABBITMQ4_ROOT, [])), root: RABBITMQ4_ROOT };
}

export function rabbitmqUnavailableReason(): string | null {
  const found = findRabbitmq('3');
  return typeof found === 'string' ? found : null;
}

/**
 * Why a CLI run failed before it could do anything, when its own VM did not
 * boot (e.g. RABBITMQ_CTL_ERL_ARGS quoted for another RabbitMQ version:
 * `Could not start kernel pid (application_controller) ({bad_environment_value,"PATH"})`),
 * or null when it booted (and then perhaps could not reach the broker).
 */
export function cliBootFailure(r: CommandResult): string | null {
  const out = `${r.stdout}\n${r.stderr}`;
  const line = out.split('\n').find((l) => /Could not start kernel pid|Kernel pid terminated|Runtime terminating during boot/.test(l));
  return line === undefined ? null : line.trim().slice(0, 500);
}

export interface RabbitHostSpec {
  /** Host (and gateway) name; the broker is rabbit@NAME (short names, as RabbitMQ uses by default). */
  name: string;
  /** The broker's distribution port (RABBITMQ_DIST_PORT), also its port in the roster. */
  distPort: number;
}

export interface RabbitLabOptions {
  hosts: RabbitHostSpec[];
  /** Operator patterns, on every gateway (hidden nodes: RabbitMQ's CLI). */
  operators: string[];
  /** Local-only patterns, on every gateway (helper nodes that only check EPMD), or none. */
  localOnly?: string[];
  /** Extra keys for every gateway's roster entry. */
  gatewayKeys?: Record<string, unknown>;
  /** The brokers' net_ticktime (s): a cut host is noticed within about this. */
  netTicktimeS: number;
  /** Lines of rabbitmq.conf every broker gets after the harness's own. */
  rabbitConf?: string[];
  /** Where brokers and CLI run from (default: this machine's RabbitMQ 3). */
  install?: RabbitInstall;
  /**
   * The CLI environment as written for another RabbitMQ major release than
   * the install's (a user following the wrong instructions), to show what
   * the harness reports then; default the install's own.
   */
  ctlFormOf?: RabbitMajor;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export class Broker {
  proc: ChildProcess | null = null;
  readonly output: string[] = [];

  constructor(
    readonly host: string,
    readonly node: string,
    readonly distPort: number,
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
    /** Command words before a RabbitMQ script: into the install's root, or none. */
    readonly prefix: string[],
  ) {}

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The broker's own log file (RABBITMQ_LOG_BASE/NODE.log), for failure messages. */
  logTail(chars = 4000): string {
    const file = join(this.dir, 'log', `${this.node}.log`);
    const log = existsSync(file) ? readFileSync(file, 'utf8') : '(no log file)';
    return `${this.node} log: ${log.slice(-chars)}\nstdout/stderr: ${this.output.join('').slice(-chars)}`;
  }
}

/** A broker's CLI could not even start its own VM: no broker state can explain that, so waiting longer is pointless. */
export class CliBootError extends Error {}

export class RabbitLab {
  readonly gateways = new Map<string, NetGateway>();
  readonly brokers = new Map<string, Broker>();
  readonly cookie = randomBytes(16).toString('hex');

  private constructor(
    readonly lab: NetnsLab,
    readonly dir: string,
    readonly roster: Roster,
    readonly rosterPath: string,
    private readonly opts: RabbitLabOptions,
  ) {}

  /** Hosts, roster, certificates, inetrc files and per-host broker directories; then every gateway (no broker yet). */
  static async start(opts: RabbitLabOptions): Promise<RabbitLab> {
    const names = opts.hosts.map((h) => h.name);
    const lab = NetnsLab.create(names);
    const dir = mkdtempSync(join(tmpdir(), 'beamgate-rabbit-'));
    try {
      const doc = {
        gateways: Object.fromEntries(
          names.map((n) => [
            n,
            {
              host: n,
              address: `${lab.host(n).ip}:${RABBIT_LAB_PORTS.tls}`,
              epmdPort: RABBIT_LAB_PORTS.epmd,
              metrics: `127.0.0.1:${RABBIT_LAB_PORTS.metrics}`,
              ...opts.gatewayKeys,
            },
          ]),
        ),
        nodes: opts.hosts.map((h) => ({ name: `rabbit@${h.name}`, gateway: h.name, port: h.distPort })),
        operators: names.flatMap((gateway) => opts.operators.map((pattern) => ({ gateway, pattern }))),
        ...(opts.localOnly ? { localOnly: names.flatMap((gateway) => opts.localOnly!.map((pattern) => ({ gateway, pattern }))) } : {}),
        tls: { ca: 'certs/ca.pem', cert: 'certs/{gateway}.pem', key: 'certs/{gateway}-key.pem' },
        log: { level: 'info' },
      };
      const rosterPath = join(dir, 'roster.yaml');
      writeFileSync(rosterPath, stringify(doc));
      const roster = loadRoster(rosterPath);
      await issueCerts(roster, names, false);
      const r = new RabbitLab(lab, dir, roster, rosterPath, opts);
      for (const h of opts.hosts) r.brokers.set(h.name, r.prepareBroker(h));
      // Gateway first: the broker's boot registers with it and asks it for the other brokers.
      const started = await Promise.all(names.map((n) => NetGateway.startIn(lab, n, rosterPath, n, RABBIT_LAB_PORTS.metrics)));
      for (const gw of started) r.gateways.set(gw.name, gw);
      return r;
    } catch (err) {
      await lab.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The broker's files and environment, as a user would set them for `rabbitmq-server` on that host. */
  private prepareBroker(h: RabbitHostSpec): Broker {
    const base = join(this.dir, h.name);
    const home = join(base, 'home');
    for (const d of [home, join(base, 'mnesia'), join(base, 'log')]) mkdirSync(d, { recursive: true });
    writeCookieHome(home, this.cookie);
    const inetrcPath = join(base, 'inetrc');
    writeFileSync(inetrcPath, inetrc(this.roster, h.name));
    writeFileSync(
      join(base, 'rabbitmq.conf'),
      [
        // AMQP on loopback only: between hosts only the gateway's TLS port answers.
        `listeners.tcp.default = 127.0.0.1:${RABBIT_LAB_PORTS.amqp}`,
        'log.file.level = info',
        'log.console = false',
        ...(this.opts.rabbitConf ?? []),
        '',
      ].join('\n'),
    );
    writeFileSync(join(base, 'enabled_plugins'), '[].\n');
    writeFileSync(join(base, 'rabbitmq-env.conf'), '');
    // What `beamgate node-flags --rabbitmq` prints for this broker: the node name, the distribution port, the
    // EPMD port, and the broker's and the CLI's ERL_ARGS, each quoted as this RabbitMQ version's scripts need.
    const install = this.install;
    const node = `rabbit@${h.name}`;
    const epmdPort = this.roster.gateways.get(h.name)!.epmdPort;
    const forms = (major: RabbitMajor) => Object.fromEntries(rabbitmqEnv({ node, distPort: h.distPort, epmdPort, inetrcPath, rabbitmq: major }));
    const own = forms(install.major);
    const env: NodeJS.ProcessEnv = {
      ...own,
      HOME: home,
      RABBITMQ_MNESIA_BASE: join(base, 'mnesia'),
      RABBITMQ_LOG_BASE: join(base, 'log'),
      RABBITMQ_CONFIG_FILE: join(base, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(base, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(base, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: join(base, 'rabbitmq-env.conf'),
      RABBITMQ_PID_FILE: join(base, 'rabbit.pid'),
      // A broker that stops at boot (the tests make some do) writes its crash dump here, not in the working directory.
      ERL_CRASH_DUMP: join(base, 'erl_crash.dump'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: `${own.RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS!} -kernel net_ticktime ${this.opts.netTicktimeS}`,
      RABBITMQ_CTL_ERL_ARGS: forms(this.opts.ctlFormOf ?? install.major).RABBITMQ_CTL_ERL_ARGS,
    };
    return new Broker(h.name, node, h.distPort, base, env, install.root ? rootPrefix(install.root, [this.dir]) : []);
  }

  /** Where the brokers and CLI run from. */
  get install(): RabbitInstall {
    if (this.opts.install) return this.opts.install;
    const own = findRabbitmq('3');
    if (typeof own === 'string') throw new Error(own);
    return own;
  }

  broker(host: string): Broker {
    const b = this.brokers.get(host);
    if (!b) throw new Error(`no broker on ${host}`);
    return b;
  }

  gw(name: string): NetGateway {
    const g = this.gateways.get(name);
    if (!g) throw new Error(`no gateway ${name}`);
    return g;
  }

  /** Starts `rabbitmq-server` inside its host and waits, bounded, until the rabbit application runs. */
  async startBroker(host: string, timeoutMs = BROKER_START_TIMEOUT_MS): Promise<number> {
    const b = this.broker(host);
    const t0 = Date.now();
    const proc = this.lab.spawn(host, [...b.prefix, RABBITMQ_SERVER], b.env);
    b.proc = proc;
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => b.output.push(s));
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => b.output.push(s));
    await this.awaitStartup(host, t0 + timeoutMs);
    return Date.now() - t0;
  }

  /** `rabbitmqctl await_startup` until it succeeds, the broker exits, or the deadline. */
  async awaitStartup(host: string, deadline: number): Promise<void> {
    const b = this.broker(host);
    let last: CommandResult | undefined;
    while (Date.now() < deadline) {
      if (!b.running) throw new Error(`broker ${b.node} exited during start (code ${b.proc?.exitCode}, signal ${b.proc?.signalCode}):\n${b.logTail()}`);
      const left = Math.max(5, Math.floor((deadline - Date.now()) / 1000));
      last = await this.ctl(host, ['await_startup', '--timeout', String(Math.min(left, 30))], (Math.min(left, 30) + 30) * 1000);
      if (last.code === 0) return;
      const boot = cliBootFailure(last);
      if (boot !== null) {
        throw new CliBootError(
          `rabbitmqctl on ${host} could not start its own Erlang VM (check RABBITMQ_CTL_ERL_ARGS against \`beamgate node-flags --rabbitmq ${this.install.version}\`): ${boot}\n${last.stderr.slice(-2000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`broker ${b.node} not started by the deadline: ${last?.stdout} ${last?.stderr}\n${b.logTail()}`);
  }

  /** Runs rabbitmqctl (or another of RabbitMQ's CLI tools) inside the host with the broker's environment; never rejects, SIGKILLs after timeoutMs. */
  ctl(host: string, args: string[], timeoutMs = CTL_TIMEOUT_MS, tool = RABBITMQCTL): Promise<CommandResult> {
    const b = this.broker(host);
    return this.runIn(host, [...b.prefix, tool, '-n', b.node, ...args], b.env, timeoutMs);
  }

  /** Like ctl, but rejects unless the command exits 0; returns its stdout. */
  async ctlOk(host: string, args: string[], timeoutMs = CTL_TIMEOUT_MS, tool = RABBITMQCTL): Promise<string> {
    const r = await this.ctl(host, args, timeoutMs, tool);
    if (r.code !== 0) {
      const boot = cliBootFailure(r);
      if (boot !== null) throw new CliBootError(`${tool} on ${host} could not start its own Erlang VM: ${boot}`);
      throw new Error(`${tool} ${args.join(' ')} on ${host} exited ${r.code} after ${r.ms} ms: ${r.stdout}\n${r.stderr}`);
    }
    return r.stdout;
  }

  /** The AMQP client (amqp-client.mjs) inside the host, against that host's broker. */
  async amqp(host: string, args: string[], timeoutMs = AMQP_TIMEOUT_MS): Promise<Record<string, unknown>> {
    const [command, queue, ...rest] = args;
    const url = `amqp://guest:guest@127.0.0.1:${RABBIT_LAB_PORTS.amqp}`;
    const r = await this.runIn(host, [process.execPath, AMQP_CLIENT, command!, url, queue!, ...rest], {}, timeoutMs);
    if (r.code !== 0) throw new Error(`amqp ${args.join(' ')} on ${host} exited ${r.code} after ${r.ms} ms: ${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  private runIn(host: string, argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CommandResult> {
    const [command, ...args] = [...this.lab.host(host).prefix, ...argv];
    const t0 = Date.now();
    return new Promise((resolve) => {
      const child = spawn(command!, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout = (stdout + s).slice(-MAX_OUTPUT)));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-MAX_OUTPUT)));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: signal ? null : code, stdout, stderr: signal ? `${stderr}\n(killed by ${signal} after ${Date.now() - t0} ms)` : stderr, ms: Date.now() - t0 });
      });
    });
  }

  /** `rabbitmqctl stop`, then waits for the broker process to end; SIGKILL if it does not within the bound. */
  async stopBroker(host: string): Promise<void> {
    const b = this.broker(host);
    if (!b.proc || !b.running) return;
    const gone = once(b.proc, 'exit');
    const stop = await this.ctl(host, ['stop'], BROKER_STOP_TIMEOUT_MS);
    // A CLI that cannot boot cannot stop the broker either: no point waiting for it to go on its own.
    if (cliBootFailure(stop) !== null) b.proc.kill('SIGKILL');
    const timer = setTimeout(() => b.proc?.kill('SIGKILL'), BROKER_STOP_TIMEOUT_MS);
    await gone;
    clearTimeout(timer);
  }

  /** Every TCP listener inside a host, with the owning process (ss -ltnp). */
  listenersWithProcess(host: string): string {
    const r = spawnSync(this.lab.host(host).prefix[0]!, [...this.lab.host(host).prefix.slice(1), 'ss', '-ltnpH'], { encoding: 'utf8', timeout: 15_000 });
    return r.stdout ?? '';
  }

  /** The command line of every process running in a host (from /proc), e.g. to show the cookie is in none. */
  commandLines(host: string): string[] {
    const pids = spawnSync('ip', ['netns', 'pids', this.lab.host(host).ns], { encoding: 'utf8' }).stdout ?? '';
    return pids
      .split(/\s+/)
      .filter(Boolean)
      .map((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
        } catch {
          return ''; // gone meanwhile
        }
      })
      .filter(Boolean);
  }

  /** Stops brokers cleanly (in parallel), then gateways; the namespaces and whatever still runs in them go in any case. */
  async stop(): Promise<void> {
    try {
      await Promise.allSettled([...this.brokers.keys()].map((h) => this.stopBroker(h)));
      await Promise.allSettled([...this.gateways.values()].map((g) => g.kill()));
    } finally {
      await this.lab.destroy();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
