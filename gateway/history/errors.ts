// Errors the history store throws on purpose. Callers map them (by class) to an OpenAI error on
// the API and to a readable page in the chat. Names are spelled out: the bundle is minified.

/** The disk holding the history (or LMDB's map) is full. Nothing already stored was changed. */
export class HistoryFullError extends Error {
  override readonly name = 'HistoryFullError';
}

/** The store on disk was written by a newer Hearth, or is not a Hearth store. */
export class HistoryVersionError extends Error {
  override readonly name = 'HistoryVersionError';
}

/** A conversation, message or completion that does not exist. */
export class HistoryNotFoundError extends Error {
  override readonly name = 'HistoryNotFoundError';
}

/** Input the store refuses (bad import file, bad id, ...). */
export class HistoryInputError extends Error {
  override readonly name = 'HistoryInputError';
}
