// The distribution firewall's rules as the policy states them: a rule may say,
// per group of its pair, what that group's nodes may send to the other's
// (`filter`). This module holds those per-direction specs and combines every
// rule that applies to one link into the one filter the receiving gateway
// enforces. Rules have no order, so combining only ever adds what passes:
// a link allowed by a rule without `filter` is not filtered at all.

import { groupsOf, type Policy, type PolicyRule } from './policy.js';

/** The named profiles: `full` lets everything through (as without a filter), `messages` what docs/filter.md lists. */
export const FILTER_PROFILES = ['full', 'messages'] as const;
export type FilterProfile = (typeof FILTER_PROFILES)[number];

/** What a denied message costs the link: dropped (the default), or the link cut. */
export const DENY_ACTIONS = ['drop', 'cut'] as const;
export type DenyAction = (typeof DENY_ACTIONS)[number];

/** What one group's nodes may send to the other group's, as a rule's `filter.GROUP` says. */
export interface FilterSpec {
  profile: FilterProfile;
  /** Registered names (beyond the system ones) that sends and gen_server calls may address. */
  names: ReadonlySet<string>;
  /** `Module:Function/Arity` that erpc/rpc calls may run. */
  calls: ReadonlySet<string>;
  onDeny: DenyAction;
}

/** The filter one gateway applies to what one link carries to its node. */
export interface LinkFilter {
  /** Every applying rule's spec lets everything through. */
  full: boolean;
  names: ReadonlySet<string>;
  calls: ReadonlySet<string>;
  /** Some applying rule asks for a denied message to cut the link. */
  cut: boolean;
  /** The group pair denials are counted under (the sender's group, the receiver's). */
  fromGroup: string;
  toGroup: string;
}

/**
 * The filter for what `sender` sends `receiver` over a link the policy
 * allows (`hidden`: the link is hidden), or undefined when the link is not
 * filtered: no policy, or some rule that allows the link has no `filter`.
 * Everything the applying rules' specs let through passes.
 */
export function linkFilter(policy: Policy | undefined, sender: string, receiver: string, hidden: boolean): LinkFilter | undefined {
  if (!policy) return undefined;
  const from = groupsOf(policy, sender);
  const to = groupsOf(policy, receiver);
  const specs: { spec: FilterSpec; pair: [string, string] }[] = [];
  let applies = false;
  for (const rule of policy.rules) {
    if (rule.hidden && !hidden) continue;
    const oriented = orientations(rule, from, to);
    if (oriented.length === 0) continue;
    applies = true;
    if (!rule.filter) return undefined;
    for (const [x, y] of oriented) specs.push({ spec: rule.filter.get(x)!, pair: [x, y] });
  }
  if (!applies || specs.length === 0) return undefined;
  const names = new Set<string>();
  const calls = new Set<string>();
  for (const { spec } of specs) {
    for (const n of spec.names) names.add(n);
    for (const c of spec.calls) calls.add(c);
  }
  const first = specs[0]!.pair;
  return {
    full: specs.some(({ spec }) => spec.profile === 'full'),
    names,
    calls,
    cut: specs.some(({ spec }) => spec.onDeny === 'cut'),
    fromGroup: first[0],
    toGroup: first[1],
  };
}

/** The (sender group, receiver group) pairs of `rule` that name a group of each end. */
function orientations(rule: PolicyRule, from: string[], to: string[]): [string, string][] {
  const [a, b] = rule.between;
  const out: [string, string][] = [];
  if (from.includes(a) && to.includes(b)) out.push([a, b]);
  if (a !== b && from.includes(b) && to.includes(a)) out.push([b, a]);
  return out;
}

/** One line per direction a rule filters, for `check`: what that group may send the other. */
export function filterLines(policy: Policy): string[] {
  const out: string[] = [];
  for (const rule of policy.rules) {
    if (!rule.filter) continue;
    const [a, b] = rule.between;
    for (const [from, spec] of rule.filter) {
      const to = from === a ? b : a;
      const parts: string[] = [spec.profile];
      if (spec.names.size > 0) parts.push(`names ${[...spec.names].join(', ')}`);
      if (spec.calls.size > 0) parts.push(`calls ${[...spec.calls].join(', ')}`);
      if (spec.profile !== 'full') parts.push(`on_deny ${spec.onDeny}`);
      out.push(`filter ${from} -> ${to}: ${parts.join('; ')}`);
    }
  }
  return out;
}
