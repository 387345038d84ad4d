// What a block-device front end (the NBD export, `volume import/export`) needs from a volume.
// The client library's Volume implements it; tests may use an in-memory one.

export interface BlockDevice {
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  /** Makes every acknowledged write durable (fsync on every replica). */
  flush(): Promise<void>;
  /** Discards a range: it reads back as zeros. */
  trim(offset: number, length: number): Promise<void>;
  writeZeroes(offset: number, length: number, opts?: { fua?: boolean }): Promise<void>;
}

export interface BlockDeviceProvider {
  list(): Promise<{ name: string; size: number; description?: string }[]>;
  /** Undefined when there is no such device. */
  open(name: string): Promise<BlockDevice | undefined>;
}
