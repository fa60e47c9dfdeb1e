// A node that completes a real handshake through its gateway (the bench's
// emulated node: cookie digests both ways) and then sends crafted frames,
// one hex string per argument after the first five. Run inside a lab host's
// namespace. Prints one JSON line: whether the handshake finished, and when
// (ms after the last write) the connection was closed, or null if it stayed
// open for the wait.
import { connectEmulatedNode, emulatedFlags, lookupStandIn } from '../../dist/bench/emulated-node.js';

const [alias, epmdPort, name, target, otp, waitMs, ...frames] = process.argv.slice(2);
const cookie = process.env.BG_COOKIE;
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
try {
  const port = await lookupStandIn(alias, Number(epmdPort), target.split('@')[0], 20_000);
  let link;
  const closed = new Promise((resolve) => {
    const check = setInterval(() => {
      if (link && !link.open) {
        clearInterval(check);
        resolve(Date.now());
      }
    }, 10);
    setTimeout(() => {
      clearInterval(check);
      resolve(null);
    }, Number(waitMs) + 20_000);
  });
  link = await connectEmulatedNode({ host: alias, port, name, target, cookie, flags: emulatedFlags(Number(otp)), timeoutMs: 20_000 }).catch((err) => {
    out({ handshake: false, error: err.message });
    process.exit(0);
  });
  for (const hex of frames) link.write(Buffer.from(hex, 'hex'));
  const wrote = Date.now();
  const at = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), Number(waitMs)))]);
  out({ handshake: true, closedAfterMs: at === null ? null : at - wrote });
  process.exit(0);
} catch (err) {
  out({ handshake: false, error: err.message });
  process.exit(0);
}
