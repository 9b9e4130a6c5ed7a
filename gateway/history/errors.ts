// Errors the history store throws on purpose. Callers map them to an OpenAI error on the API
// and to a readable page in the chat.

abstract class HistoryError extends Error {
  abstract readonly code: string;
}

/** The disk holding the history (or LMDB's map) is full. Nothing already stored was changed. */
export class HistoryFullError extends HistoryError {
  override readonly name = 'HistoryFullError';
  readonly code = 'history_full';
}

/** The store on disk was written by a newer Hearth, or is not a Hearth store. */
export class HistoryVersionError extends HistoryError {
  override readonly name = 'HistoryVersionError';
  readonly code = 'history_version';
}

/** A conversation, message or completion that does not exist. */
export class HistoryNotFoundError extends HistoryError {
  override readonly name = 'HistoryNotFoundError';
  readonly code = 'not_found';
}

/** Input the store refuses (bad import file, bad id, ...). */
export class HistoryInputError extends HistoryError {
  override readonly name = 'HistoryInputError';
  readonly code = 'invalid_input';
}
