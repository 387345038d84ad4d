// Serves Presage volumes as NBD exports: the BlockDeviceProvider the NBD server needs, over a
// connected PresageClient. Every NBD connection to the same volume shares one Volume object, so
// a FLUSH on any connection covers writes made on all of them (the server advertises MULTI_CONN).

import type { BlockDevice, BlockDeviceProvider } from '../client/block-device.ts';
import type { PresageClient, Volume } from '../client/presage-client.ts';
import { Volume as VolumeImpl } from '../client/presage-client.ts';
import type { VolumeRecord } from '../metadata/model.ts';

export class PresageBlockDeviceProvider implements BlockDeviceProvider {
  /** Our own cache, keyed by name, checked against the current record (see open()). */
  private readonly opened = new Map<string, Volume>();

  constructor(private readonly client: PresageClient) {}

  /** The volumes as the client's metadata copy has them, after pulling pending changes. */
  async list(): Promise<{ name: string; size: number; description?: string }[]> {
    await this.refresh();
    return [...this.client.view.volumes.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((v) => ({ name: v.name, size: v.size, description: describe(v) }));
  }

  async open(name: string): Promise<BlockDevice | undefined> {
    let rec = this.client.view.volumes.get(name);
    if (!rec) {
      await this.refresh();
      rec = this.client.view.volumes.get(name);
    }
    if (!rec) return undefined;
    const cached = this.opened.get(name);
    if (cached && sameVolume(cached.record, rec)) return cached;
    let vol = await this.client.openVolume(name);
    // The client caches Volumes by name forever; a volume deleted and created again under the
    // same name would come back with the old size and segment layout. Build a fresh one then.
    if (!sameVolume(vol.record, rec)) vol = new VolumeImpl(this.client, rec);
    this.opened.set(name, vol);
    return vol;
  }

  private async refresh(): Promise<void> {
    // An unreachable orchestrator must not fail the handshake: the local copy is still usable.
    await this.client.view.refresh().catch(() => {});
  }
}

/** "presage volume, 2 replicas, 16 MiB segments" — what `nbdinfo --list` shows as the description. */
export function describe(v: VolumeRecord): string {
  return `presage volume, ${v.replicas} replica${v.replicas === 1 ? '' : 's'}, ${wholeSize(v.segmentSize)} segments`;
}

/** 16777216 -> "16 MiB" (segment sizes are powers of two, so whole units read best). */
function wholeSize(n: number): string {
  for (const [unit, mult] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= mult && n % mult === 0) return `${n / mult} ${unit}`;
  }
  return `${n} bytes`;
}

function sameVolume(a: VolumeRecord, b: VolumeRecord): boolean {
  return a.createdAt === b.createdAt && a.size === b.size && a.segmentSize === b.segmentSize;
}
