// A real AMQP 0-9-1 client (amqplib) for the RabbitMQ tests, run inside a
// namespace host (`ip netns exec NS node amqp-client.mjs ...`): the test
// process cannot reach a namespace's loopback, where each broker listens.
// Prints one JSON line with the result; exits non-zero with the error.
//
//   publish URL QUEUE PREFIX FROM COUNT  declares the quorum queue QUEUE, publishes
//                                        persistent messages PREFIX-FROM .. PREFIX-(FROM+COUNT-1)
//                                        on a confirm channel and waits for every confirm
//   drain URL QUEUE                      consumes (prefetch PREFETCH) and acknowledges every
//                                        message until the queue has none ready and none in
//                                        flight, prints their bodies

import amqp from 'amqplib';

const [command, url, queue, ...rest] = process.argv.slice(2);
/** The broker must answer within this, or the command fails instead of hanging. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Unacknowledged deliveries at most, per consumer. */
const PREFETCH = 100;
/** Quiet time after which drain asks the broker whether the queue is empty. */
const DRAIN_IDLE_MS = 300;

async function main() {
  const conn = await amqp.connect(url, { timeout: CONNECT_TIMEOUT_MS });
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    if (command === 'publish') {
      const [prefix, from, count] = [rest[0], Number(rest[1]), Number(rest[2])];
      for (let i = from; i < from + count; i++) ch.sendToQueue(queue, Buffer.from(`${prefix}-${i}`), { persistent: true });
      await ch.waitForConfirms();
      return { published: count };
    }
    if (command === 'drain') {
      const bodies = [];
      let last = Date.now();
      await ch.prefetch(PREFETCH);
      const { consumerTag } = await ch.consume(queue, (msg) => {
        if (msg === null) return;
        bodies.push(msg.content.toString());
        ch.ack(msg);
        last = Date.now();
      });
      for (;;) {
        await new Promise((r) => setTimeout(r, DRAIN_IDLE_MS));
        if (Date.now() - last < DRAIN_IDLE_MS) continue;
        const { messageCount } = await ch.checkQueue(queue);
        if (messageCount === 0 && Date.now() - last >= DRAIN_IDLE_MS) break;
      }
      await ch.cancel(consumerTag);
      // Closing the channel after the acks: the broker handles them first, in order.
      await ch.close();
      return { bodies };
    }
    throw new Error(`unknown command ${command}`);
  } finally {
    await conn.close().catch(() => {});
  }
}

main().then(
  (r) => console.log(JSON.stringify(r)),
  (err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  },
);
