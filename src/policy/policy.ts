// The authorization policy: which nodes may link with which, across gateways.
// A node belongs to every group with a member that matches it; a link is
// allowed when any rule allows any pair of the two ends' groups. Rules have no
// direction (a distribution link is one connection, whichever end dialled)
// and no order, so overlapping groups only ever add links, never take one
// away. A rule marked hidden allows a link only when the dialling node
// connects as a hidden node. Without a policy every roster node may link
// with every other (the roster's admission checks still apply).

import type { FilterSpec } from './filter.js';
import { globRegExp, globsOverlap } from './glob.js';

/** One entry of a group: a short-name glob, on one host or (host undefined) on any. */
export interface PolicyMember {
  /** As written in the roster (`t1@alpha.example`, `ops_*@gamma.example`, `t*`). */
  text: string;
  short: string;
  match: RegExp;
  host: string | undefined;
}

export interface PolicyGroup {
  name: string;
  members: PolicyMember[];
}

export interface PolicyRule {
  /** The two groups (the same one twice: links within a group). */
  between: readonly [string, string];
  /** Only hidden connections (the dialling node's send_name lacks DFLAG_PUBLISHED). */
  hidden: boolean;
  /** What each group of the pair may send to the other (src/policy/filter.ts); absent: everything. */
  filter?: ReadonlyMap<string, FilterSpec>;
}

export interface Policy {
  /** In roster order: the first group a node is in labels its metrics. */
  groups: Map<string, PolicyGroup>;
  rules: PolicyRule[];
}

/** The group label of a node that is in no group (not a valid group name, so it cannot clash). */
export const NO_GROUP = '(none)';

export type Decision =
  | { ok: true }
  | {
      ok: false;
      /** The group pair the refusal is counted under (a group of each end, or NO_GROUP). */
      fromGroup: string;
      toGroup: string;
      why: string;
    };

export function member(text: string): PolicyMember {
  const at = text.indexOf('@');
  const short = at < 0 ? text : text.slice(0, at);
  return { text, short, match: globRegExp(short), host: at < 0 ? undefined : text.slice(at + 1) };
}

export function memberMatches(m: PolicyMember, short: string, host: string): boolean {
  return (m.host === undefined || m.host === host) && m.match.test(short);
}

/** The groups a full node name belongs to, in roster order. */
export function groupsOf(policy: Policy, nodeName: string): string[] {
  const at = nodeName.indexOf('@');
  if (at < 0) return [];
  const short = nodeName.slice(0, at);
  const host = nodeName.slice(at + 1);
  return [...policy.groups.values()].filter((g) => g.members.some((m) => memberMatches(m, short, host))).map((g) => g.name);
}

/** The groups some node of a short-name pattern on `host` (an operator pattern) may belong to. */
export function groupsOfPattern(policy: Policy, glob: string, host: string): string[] {
  return [...policy.groups.values()]
    .filter((g) => g.members.some((m) => (m.host === undefined || m.host === host) && globsOverlap(m.short, glob)))
    .map((g) => g.name);
}

/** How a rule relates two group lists: undefined when it names neither pair. */
function ruleFor(rule: PolicyRule, from: string[], to: string[]): readonly [string, string] | undefined {
  const [a, b] = rule.between;
  if (from.includes(a) && to.includes(b)) return [a, b];
  if (from.includes(b) && to.includes(a)) return [b, a];
  return undefined;
}

/**
 * Whether `policy` allows a link between `source` (the node that dialled,
 * named in send_name) and `target` (the node it dialled), full names both;
 * `hidden` says the dialling node connects hidden. No policy allows all.
 */
export function allowed(policy: Policy | undefined, source: string, target: string, hidden: boolean): Decision {
  if (!policy) return { ok: true };
  const from = groupsOf(policy, source);
  const to = groupsOf(policy, target);
  let hiddenOnly: readonly [string, string] | undefined;
  for (const rule of policy.rules) {
    const pair = ruleFor(rule, from, to);
    if (!pair) continue;
    if (!rule.hidden || hidden) return { ok: true };
    hiddenOnly ??= pair;
  }
  if (from.length === 0 || to.length === 0) {
    const outside = [from.length === 0 ? source : undefined, to.length === 0 ? target : undefined].filter(Boolean).join(' and ');
    return { ok: false, fromGroup: from[0] ?? NO_GROUP, toGroup: to[0] ?? NO_GROUP, why: `${outside} ${outside.includes(' and ') ? 'are' : 'is'} in no policy group` };
  }
  if (hiddenOnly) {
    return {
      ok: false,
      fromGroup: hiddenOnly[0],
      toGroup: hiddenOnly[1],
      why: `groups ${hiddenOnly[0]} and ${hiddenOnly[1]} may link only as hidden nodes, and ${source} connects as a visible node`,
    };
  }
  return { ok: false, fromGroup: from[0]!, toGroup: to[0]!, why: `no policy rule lets group${from.length > 1 ? 's' : ''} ${from.join(', ')} link with ${to.join(', ')}` };
}

/** What the policy lets two groups do: link, link only hidden, or nothing. */
export type Cell = 'yes' | 'hidden' | '-';

export function cell(policy: Policy, a: string, b: string): Cell {
  let out: Cell = '-';
  for (const rule of policy.rules) {
    const [x, y] = rule.between;
    if (!((x === a && y === b) || (x === b && y === a))) continue;
    if (!rule.hidden) return 'yes';
    out = 'hidden';
  }
  return out;
}

/** The effective policy as a text matrix of groups (symmetric: rules have no direction). */
export function policyMatrix(policy: Policy): string {
  const names = [...policy.groups.keys()];
  const width = Math.max(...names.map((n) => n.length), 'hidden'.length);
  const pad = (s: string) => s.padEnd(width);
  const lines = [[pad(''), ...names.map(pad)].join('  ').trimEnd()];
  for (const a of names) lines.push([pad(a), ...names.map((b) => pad(cell(policy, a, b)))].join('  ').trimEnd());
  return lines.join('\n');
}

/**
 * The nodes of `others` that `node` may not link with as a visible node:
 * with Erlang's default `connect_all`, `global` on `node` keeps dialling the
 * ones it learns about, and each dial is refused.
 */
export function unreachable(policy: Policy, node: string, others: Iterable<string>): string[] {
  return [...others].filter((o) => o !== node && !allowed(policy, node, o, false).ok);
}
