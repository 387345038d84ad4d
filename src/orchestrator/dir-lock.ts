// One orchestrator per data directory. Two orchestrators on the same --dir would both act on the
// same embedded store (mark servers down, fail over, push models) with nobody deciding which is
// right; with etcd they would share the model and label files. The lock is an SQLite database
// held in EXCLUSIVE locking mode: the kernel's file lock, so it is released however the holder
// dies (SIGKILL included) and never needs a stale-lock guess; a second process, or a second
// orchestrator in the same process, gets SQLITE_BUSY at once and is refused with who holds it.
//
// Invariant: while a DirLock is held, no other DirLock on the same directory can be taken.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

export class DirectoryLockedError extends Error {
  readonly code = 'ERR_PRESAGE_DIR_LOCKED';
}

export class DirLock {
  private constructor(private readonly db: Database.Database, private readonly infoFile: string) {}

  /** Takes the lock on `dir` or throws DirectoryLockedError naming the holder. */
  static acquire(dir: string, what = 'orchestrator'): DirLock {
    fs.mkdirSync(dir, { recursive: true });
    const lockPath = path.join(dir, `${what}.lock`);
    const infoFile = path.join(dir, `${what}.lock.holder`);
    // timeout 0: a held lock is an answer, not something to wait for.
    const db = new Database(lockPath, { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      // The first write takes the exclusive lock and, in this mode, keeps it until close.
      db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS held (at TEXT); DELETE FROM held; INSERT INTO held VALUES (datetime()); COMMIT;');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
      let holder = 'another process';
      try {
        holder = fs.readFileSync(infoFile, 'utf8').trim() || holder;
      } catch {
        // no holder note: the lock alone says enough
      }
      throw new DirectoryLockedError(`another ${what} is running on ${dir} (${holder}); stop it first, or give this one its own --dir`);
    }
    fs.writeFileSync(infoFile, `pid ${process.pid} on ${os.hostname()}, since ${new Date().toISOString()}\n`);
    return new DirLock(db, infoFile);
  }

  release(): void {
    if (!this.db.open) return;
    fs.rmSync(this.infoFile, { force: true });
    this.db.close();
  }
}
