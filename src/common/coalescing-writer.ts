// Socket writes coalesced per event-loop turn. Every message used to be its own write syscall
// (writev for head + payload), even at queue depth 32 where dozens of replies become ready in the
// same turn; profiles of the nbd process showed writev/writeBuffer at ~40 % of its CPU. Here the
// first write of a turn corks the socket and a setImmediate uncorks it, so every message queued in
// that turn (all promise continuations, and every threadpool completion of the same poll phase)
// leaves in one writev.
//
// Invariants: bytes go out in the order they were written (cork only delays, never reorders); the
// buffers are not copied, so a caller must not change a payload until the peer has answered it;
// at most one Immediate per turn per socket, none when nothing was written; the added latency is
// the rest of the current loop iteration (check phase), never a timer.

export interface CorkableSocket {
  cork(): void;
  uncork(): void;
  write(b: Uint8Array): boolean;
  readonly destroyed: boolean;
}

export class CoalescingWriter {
  private corked = false;

  constructor(private readonly sock: CorkableSocket) {}

  /** Queues one buffer for this turn's writev. */
  write(buf: Uint8Array): void {
    if (this.sock.destroyed) return;
    this.hold();
    this.sock.write(buf);
  }

  /** Queues a frame as head + payload (the payload is never copied into the frame). */
  writeFrame(head: Uint8Array, payload: Uint8Array | undefined): void {
    if (this.sock.destroyed) return;
    this.hold();
    this.sock.write(head);
    if (payload && payload.length) this.sock.write(payload);
  }

  private hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.sock.cork();
    setImmediate(this.release);
  }

  private readonly release = (): void => {
    this.corked = false;
    this.sock.uncork();
  };
}
