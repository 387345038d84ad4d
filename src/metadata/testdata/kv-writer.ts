// Test helper for the durability test: commits transactions to an EmbeddedKvStore as fast as it
// can and prints "ack <i> <revision>" after each one is acknowledged, until it is killed.
// Usage: node --import tsx kv-writer.ts <db path>

import { EmbeddedKvStore } from '../embedded-kv.ts';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: kv-writer.ts <db path>\n');
  process.exit(2);
}
const store = EmbeddedKvStore.open(path);
for (let i = 0; ; i++) {
  // Two keys per txn: the reader checks both landed together (atomicity) and the value bytes.
  const res = await store.txn({
    put: [
      { key: `dur/item/${i}`, value: `value-${i}-${'x'.repeat(i % 97)}` },
      { key: 'dur/last', value: String(i) },
    ],
  });
  process.stdout.write(`ack ${i} ${res.revision}\n`);
}
