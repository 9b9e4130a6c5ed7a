// Schema versions of the history store and the migrations between them.
//
// The version lives in the `meta` sub-database under `schemaVersion`. A store without one is
// version 0 (created before versioning, or brand new). At open, every migration whose version is
// above the stored one runs, in order, each in its own synchronous write transaction together
// with the version bump: a crash between two migrations leaves a store at a well-defined
// version, never half-migrated. A store from a newer Hearth is refused, not touched.

import type { Database, RootDatabase } from 'lmdb';
import { HistoryVersionError } from './errors.ts';

export interface MigrationContext {
  env: RootDatabase;
  /** Opens (creating if needed) a named sub-database with Hearth's settings. */
  db(name: string): Database;
}

export interface Migration {
  version: number;
  description: string;
  /** Runs inside a synchronous write transaction; throw to abort (nothing is changed). */
  up(ctx: MigrationContext): void;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'initial layout: meta, conversations, byUpdated, messages, streaming, completions',
    // The sub-databases are created when opened; nothing to rewrite.
    up() {},
  },
];

export const SCHEMA_VERSION = migrations[migrations.length - 1].version;

export interface MigrationReport {
  from: number;
  to: number;
  applied: number[];
}

export function storedVersion(meta: Database): number {
  const v: unknown = meta.get('schemaVersion');
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new HistoryVersionError(`history store has an invalid schemaVersion ${JSON.stringify(v)}`);
  }
  return v;
}

/** Applies the pending migrations of `list` (sorted by version) and records the version. */
export function migrate(
  ctx: MigrationContext,
  meta: Database,
  list: readonly Migration[] = migrations,
): MigrationReport {
  for (let i = 1; i < list.length; i++) {
    if (list[i].version <= list[i - 1].version) throw new Error('migrations must be in increasing version order');
  }
  const latest = list.length ? list[list.length - 1].version : 0;
  const from = storedVersion(meta);
  if (from > latest) {
    throw new HistoryVersionError(
      `history store is schema version ${from}, but this Hearth understands up to version ${latest}; ` +
        'upgrade Hearth (or restore an older backup of the history directory)',
    );
  }
  const applied: number[] = [];
  for (const m of list) {
    if (m.version <= from) continue;
    ctx.env.transactionSync(() => {
      m.up(ctx);
      meta.putSync('schemaVersion', m.version);
    });
    applied.push(m.version);
  }
  return { from, to: Math.max(from, latest), applied };
}
