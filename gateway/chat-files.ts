// The chat's two files in the data folder: the key that signs its sessions and forms
// (secret.key), and the sessions logged out before they expired (sessions-revoked.json), so that
// a restart neither logs everyone out nor lets a logged-out session back in.

import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

const KEY_BYTES = 32;

/** A file in the data folder Hearth cannot use; start-up stops with this message. */
export class DataFileError extends Error {}

const secretFile = (dataDir: string) => join(dataDir, 'secret.key');

/**
 * The key file's bytes, whatever their length; undefined when there is none. Read once, at start,
 * so that one Hearth cannot read stops start-up. Throws DataFileError then.
 */
export function readSecret(dataDir: string): Buffer | undefined {
  const file = secretFile(dataDir);
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new DataFileError(
      `cannot read ${file} (${code ?? (e as Error).message}): it signs the chat's sessions and forms. Let the user Hearth runs as read it, or remove it to have a new one made (everyone then logs in again).`,
    );
  }
}

/**
 * The key from the bytes `readSecret` found, or a new one made and written whole when there were
 * none or they were cut short (a power cut while an older Hearth wrote it); `warn` hears of one
 * replaced.
 */
export function loadSecret(dataDir: string, found: Buffer | undefined, random: (n: number) => Buffer, warn: (m: string) => void): Buffer {
  if (found && found.length >= KEY_BYTES) return found;
  const file = secretFile(dataDir);
  if (found) warn(`${file} held ${found.length} bytes, not ${KEY_BYTES}: replaced with a new key (chat sessions log in again)`);
  const key = random(KEY_BYTES);
  writeFileWhole(file, key, 0o600);
  return key;
}

/** Session ids logged out before their expiry, with that expiry (ms), kept across restarts. */
export interface RevokedStore {
  load(): Map<string, number>;
  save(revoked: Map<string, number>): void;
}

export function revokedSessions(dataDir: string, warn: (m: string) => void): RevokedStore {
  const file = join(dataDir, 'sessions-revoked.json');
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot read ${file}: ${(e as Error).message}`);
        return new Map();
      }
      const now = Date.now();
      const out = new Map<string, number>();
      try {
        for (const [sid, exp] of Object.entries(JSON.parse(text) as Record<string, unknown>)) {
          if (typeof exp === 'number' && exp > now) out.set(sid, exp);
        }
      } catch {
        warn(`${file} is not the JSON Hearth writes; sessions logged out before it was damaged may be valid again`);
      }
      return out;
    },
    save(revoked) {
      try {
        writeFileWhole(file, Buffer.from(JSON.stringify(Object.fromEntries(revoked))), 0o600);
      } catch (e) {
        warn(`cannot write ${file}: ${(e as Error).message} (the logout holds until a restart)`);
      }
    },
  };
}

/** Writes a small file so that a power cut leaves the old one or the new one, never a part. */
function writeFileWhole(file: string, data: Buffer, mode: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  // The rename itself is made durable by syncing the folder (not possible on every platform).
  try {
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    /* best effort */
  }
}
