// What a link that starts at this gateway is given, inbound or outbound: the
// gateway's shared services, the limits of when its connection began, and the
// filter of the roster in force now (readmit has just checked the link
// against that roster, so a reload during set-up cannot leave it unfiltered).

import type { Limits } from '../config/limits.js';
import type { MeshContext } from './context.js';
import { inboundFilterFor } from './filtering.js';
import type { LinkDeps, LinkInfo } from './link.js';

export function linkDepsOf(ctx: MeshContext, info: LinkInfo, limits: Limits, early: LinkDeps['early']): LinkDeps {
  return {
    metrics: ctx.metrics,
    linkLog: ctx.linkLog,
    refusalLog: ctx.refusalLog,
    limits,
    table: ctx.table,
    engine: ctx.engine,
    filter: inboundFilterFor(ctx.active().roster, ctx.active().self.name, info, limits.maxFrameBytes, ctx.filterHolds),
    ...(early && { early }),
  };
}
