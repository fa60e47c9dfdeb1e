// Reads and checks the roster's `policy` section against the rest of the
// roster, naming every problem by key path: a group or host that does not
// exist, a member that matches nothing, a rule that can never apply (a group
// of one node with itself), a roster node left in no group (it could link with no
// node on another host), and two nodes of one host the policy would keep
// apart (their link never crosses a gateway, so it cannot be enforced).

import { DENY_ACTIONS, type DenyAction, FILTER_PROFILES, type FilterProfile, type FilterSpec } from './filter.js';
import { globsOverlap } from './glob.js';
import { allowed, member, memberMatches, type Policy, type PolicyGroup, type PolicyRule } from './policy.js';

/** More groups than this is a roster nobody can read as a matrix (and a metric with groups² series). */
export const MAX_POLICY_GROUPS = 64;
/** Same-host conflicts reported one by one; the rest are counted in one line. */
const MAX_REPORTED_CONFLICTS = 10;

const GROUP_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const MEMBER = /^[A-Za-z0-9_*-]{1,200}(@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)?$/;

/** What the policy is checked against (the parts of the roster it names). */
export interface PolicyContext {
  nodes: Iterable<RosterNode>;
  operators: Iterable<RosterOperator>;
  gateways: Iterable<{ name: string; host: string }>;
}

type RosterNode = { name: string; short: string; host: string; gateway: string };
type RosterOperator = { gateway: string; pattern: string };
type Add = (path: string, message: string) => void;

export function parsePolicy(value: unknown, ctx: PolicyContext, add: Add): Policy | undefined {
  if (value === undefined) return undefined;
  if (!isMapping(value)) {
    add('policy', 'must be a mapping with groups and allow');
    return undefined;
  }
  for (const key of Object.keys(value)) if (key !== 'groups' && key !== 'allow') add(`policy.${key}`, 'unknown key (expected one of: groups, allow)');
  const nodes = [...ctx.nodes];
  const operators = [...ctx.operators];
  const hosts = new Map([...ctx.gateways].map((g) => [g.host, g.name]));
  const before = { count: 0 };
  const counting: Add = (path, message) => {
    before.count++;
    add(path, message);
  };

  const groups = parseGroups(value.groups, nodes, operators, hosts, counting);
  const rules = parseRules(value.allow, groups, counting);
  if (before.count > 0) return undefined;
  const policy: Policy = { groups, rules };

  // Checks that need the whole policy.
  rules.forEach((rule, i) => {
    if (!canApply(policy, rule, nodes, operators, hosts)) {
      const [x, y] = rule.between;
      add(`policy.allow[${i}]`, x === y ? `can never apply: group ${x} has a single node, and a node never links with itself` : `can never apply: no node of ${x} could link with a node of ${y}`);
    }
  });
  for (const n of nodes) {
    if (![...groups.values()].some((g) => g.members.some((m) => memberMatches(m, n.short, n.host)))) {
      add('policy.groups', `node ${n.name} is in no group: under a policy it could link with no node on another host`);
    }
  }
  const conflicts: string[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const [a, b] = [nodes[i]!, nodes[j]!];
      if (a.gateway === b.gateway && !allowed(policy, a.name, b.name, false).ok) conflicts.push(`${a.name} and ${b.name}`);
    }
  }
  for (const c of conflicts.slice(0, MAX_REPORTED_CONFLICTS)) {
    add('policy.allow', `${c} share a host: their link never crosses a gateway, so the policy cannot forbid it (allow it, or move one to another host)`);
  }
  if (conflicts.length > MAX_REPORTED_CONFLICTS) add('policy.allow', `and ${conflicts.length - MAX_REPORTED_CONFLICTS} more pairs of nodes on one host`);
  return policy;
}

function parseGroups(
  value: unknown,
  nodes: RosterNode[],
  operators: RosterOperator[],
  hosts: Map<string, string>,
  add: Add,
): Map<string, PolicyGroup> {
  const out = new Map<string, PolicyGroup>();
  if (value === undefined) {
    add('policy.groups', 'is required');
    return out;
  }
  if (!isMapping(value) || Object.keys(value).length === 0) {
    add('policy.groups', 'must map group names to lists of node names or patterns');
    return out;
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_POLICY_GROUPS) add('policy.groups', `names ${entries.length} groups, more than ${MAX_POLICY_GROUPS}`);
  for (const [name, raw] of entries) {
    const at = `policy.groups.${name}`;
    if (!GROUP_NAME.test(name)) add(at, 'group names are a lower-case letter, then lower-case letters, digits, "_" or "-"');
    if (!Array.isArray(raw) || raw.length === 0) {
      add(at, 'must be a non-empty list of node names (short@host) or short-name patterns ("ops_*@host", "t*")');
      continue;
    }
    const members = [];
    const seen = new Set<string>();
    for (const [i, text] of raw.entries()) {
      const mat = `${at}[${i}]`;
      if (typeof text !== 'string' || !MEMBER.test(text)) {
        add(mat, `${JSON.stringify(text)} is not a node name or pattern: name characters and "*", optionally @host`);
        continue;
      }
      if (seen.has(text)) {
        add(mat, `"${text}" is listed twice`);
        continue;
      }
      seen.add(text);
      const m = member(text);
      if (m.host !== undefined && !hosts.has(m.host)) {
        add(mat, `no gateway has host "${m.host}" (known: ${[...hosts.keys()].join(', ')})`);
        continue;
      }
      const named = nodes.some((n) => memberMatches(m, n.short, n.host)) || operators.some((o) => operatorOverlaps(m, o, hosts));
      if (!named) add(mat, `"${text}" matches no roster node and no operator pattern`);
      members.push(m);
    }
    out.set(name, { name, members });
  }
  return out;
}

function parseRules(value: unknown, groups: Map<string, PolicyGroup>, add: Add): PolicyRule[] {
  const out: PolicyRule[] = [];
  if (value === undefined) {
    add('policy.allow', 'is required (an empty list allows no link across gateways)');
    return out;
  }
  if (!Array.isArray(value)) {
    add('policy.allow', 'must be a list of rules { between: [GROUP, GROUP], hidden: BOOL }');
    return out;
  }
  const seen = new Map<string, { index: number; hidden: boolean }>();
  value.forEach((raw, i) => {
    const at = `policy.allow[${i}]`;
    if (!isMapping(raw)) return add(at, 'must be a mapping { between: [GROUP, GROUP], hidden: BOOL }');
    for (const key of Object.keys(raw)) if (key !== 'between' && key !== 'hidden' && key !== 'filter') add(`${at}.${key}`, 'unknown key (expected one of: between, hidden, filter)');
    const between = raw.between;
    if (!Array.isArray(between) || between.length < 1 || between.length > 2 || !between.every((g) => typeof g === 'string')) {
      return add(`${at}.between`, 'must list two groups (or one: links within that group)');
    }
    const hidden = raw.hidden ?? false;
    if (typeof hidden !== 'boolean') return add(`${at}.hidden`, 'must be true or false');
    let ok = true;
    for (const [j, g] of between.entries()) {
      if (!groups.has(g as string)) {
        add(`${at}.between[${j}]`, `unknown group "${String(g)}" (known: ${[...groups.keys()].join(', ') || 'none'})`);
        ok = false;
      }
    }
    if (!ok) return;
    const pair = [between[0] as string, (between[1] ?? between[0]) as string] as const;
    const key = [...pair].sort().join('\u0000');
    const first = seen.get(key);
    if (first !== undefined) {
      const detail = first.hidden === hidden ? 'the same rule' : hidden ? 'a visible rule, which allows hidden links too' : 'a hidden-only rule: keep one';
      return add(at, `groups ${pair[0]} and ${pair[1]} already have ${detail} (policy.allow[${first.index}])`);
    }
    seen.set(key, { index: i, hidden });
    if (raw.filter === undefined) return out.push({ between: pair, hidden });
    const filter = parseFilter(raw.filter, pair, `${at}.filter`, add);
    if (filter) out.push({ between: pair, hidden, filter });
  });
  return out;
}

/** Registered names a filter refuses to list: each is a door to everything (docs/filter.md). */
const UNLISTABLE_NAMES: ReadonlyMap<string, string> = new Map([
  ['rex', 'rex runs any function it is asked to: list the functions under calls instead'],
]);
const ATOM_TEXT = /^[^\s'"]{1,255}$/;
const CALL = /^([^\s:/'"]{1,255}):([^\s:/'"]{1,255})\/(\d{1,3})$/;
const SPEC_KEYS = ['profile', 'names', 'calls', 'on_deny'];

/**
 * A rule's `filter`: for each group of its pair, what that group's nodes may
 * send to the other's, as a profile name or a mapping { profile, names,
 * calls, on_deny }. Every group of the pair must be named: once a rule
 * filters, nothing passes by omission.
 */
function parseFilter(value: unknown, pair: readonly [string, string], at: string, add: Add): Map<string, FilterSpec> | undefined {
  const groups = [...new Set(pair)];
  const shape = `a mapping from each group of the rule (${groups.join(', ')}) to a profile (${FILTER_PROFILES.join(', ')}) or { profile, names, calls, on_deny }`;
  if (!isMapping(value)) {
    add(at, `must be ${shape}`);
    return undefined;
  }
  let ok = true;
  const out = new Map<string, FilterSpec>();
  for (const key of Object.keys(value)) {
    if (!groups.includes(key)) {
      add(`${at}.${key}`, `is not a group of this rule (${groups.join(', ')})`);
      ok = false;
    }
  }
  for (const g of groups) {
    if (value[g] === undefined) {
      add(`${at}.${g}`, `is required: once a rule has a filter, say what each of its groups may send (${FILTER_PROFILES.join(' or ')} at least)`);
      ok = false;
      continue;
    }
    const spec = parseSpec(value[g], `${at}.${g}`, add);
    if (spec) out.set(g, spec);
    else ok = false;
  }
  return ok ? out : undefined;
}

function parseSpec(value: unknown, at: string, add: Add): FilterSpec | undefined {
  const none = new Set<string>();
  if (typeof value === 'string') {
    if (!(FILTER_PROFILES as readonly string[]).includes(value)) {
      add(at, `unknown profile "${value}" (known: ${FILTER_PROFILES.join(', ')})`);
      return undefined;
    }
    return { profile: value as FilterProfile, names: none, calls: none, onDeny: 'drop' };
  }
  if (!isMapping(value)) {
    add(at, `must be a profile (${FILTER_PROFILES.join(', ')}) or a mapping { profile, names, calls, on_deny }`);
    return undefined;
  }
  const before = { ok: true };
  const bad = (path: string, message: string) => {
    before.ok = false;
    add(path, message);
  };
  for (const key of Object.keys(value)) if (!SPEC_KEYS.includes(key)) bad(`${at}.${key}`, `unknown key (expected one of: ${SPEC_KEYS.join(', ')})`);
  const profile = value.profile;
  if (typeof profile !== 'string' || !(FILTER_PROFILES as readonly string[]).includes(profile)) {
    bad(`${at}.profile`, `is required: one of ${FILTER_PROFILES.join(', ')}`);
    return undefined;
  }
  const list = (key: 'names' | 'calls', check: (s: string) => string | undefined): Set<string> => {
    const raw = value[key];
    const out = new Set<string>();
    if (raw === undefined) return out;
    if (profile === 'full') {
      bad(`${at}.${key}`, 'has no effect: profile full lets everything through');
      return out;
    }
    if (!Array.isArray(raw)) {
      bad(`${at}.${key}`, 'must be a list');
      return out;
    }
    raw.forEach((item, i) => {
      const why = typeof item === 'string' ? check(item) : 'must be a string';
      if (why) bad(`${at}.${key}[${i}]`, why);
      else if (out.has(item as string)) bad(`${at}.${key}[${i}]`, `"${String(item)}" is listed twice`);
      else out.add(item as string);
    });
    return out;
  };
  const names = list('names', (n) => (!ATOM_TEXT.test(n) ? `"${n}" is not a registered name (an atom's text, no spaces or quotes)` : UNLISTABLE_NAMES.get(n)));
  const calls = list('calls', (c) => (CALL.test(c) ? undefined : `"${c}" is not Module:Function/Arity`));
  const onDeny = value.on_deny ?? 'drop';
  if (typeof onDeny !== 'string' || !(DENY_ACTIONS as readonly string[]).includes(onDeny)) bad(`${at}.on_deny`, `must be one of ${DENY_ACTIONS.join(', ')}`);
  if (!before.ok) return undefined;
  return { profile: profile as FilterProfile, names, calls, onDeny: onDeny as DenyAction };
}

/** Whether a policy member can name nodes of an operator pattern (same host, overlapping globs). */
function operatorOverlaps(m: { short: string; host: string | undefined }, o: RosterOperator, hosts: Map<string, string>): boolean {
  if (m.host !== undefined && hosts.get(m.host) !== o.gateway) return false;
  return globsOverlap(m.short, o.pattern);
}

/**
 * Who can be a node of `group`: the roster nodes it names, and one entry per
 * operator pattern it overlaps (standing for any number of operator nodes).
 */
function candidates(group: PolicyGroup, nodes: RosterNode[], operators: RosterOperator[], hosts: Map<string, string>): string[] {
  const out: string[] = [];
  for (const n of nodes) if (group.members.some((m) => memberMatches(m, n.short, n.host))) out.push(n.name);
  operators.forEach((o, i) => {
    if (group.members.some((m) => operatorOverlaps(m, o, hosts))) out.push(`operators[${i}]`);
  });
  return out;
}

/**
 * A rule applies to some link unless its groups have no two distinct nodes
 * (a node never links with itself); one operator pattern stands for many.
 * A rule between nodes of one host is kept: it says their direct link is
 * meant, and the same-host check needs it.
 */
function canApply(policy: Policy, rule: PolicyRule, nodes: RosterNode[], operators: RosterOperator[], hosts: Map<string, string>): boolean {
  const [a, b] = rule.between.map((g) => candidates(policy.groups.get(g)!, nodes, operators, hosts));
  return a!.some((x) => b!.some((y) => x !== y || x.startsWith('operators[')));
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
