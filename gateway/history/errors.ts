// Errors the history store throws on purpose. Callers map them to an OpenAI error on the API
// and to a readable page in the chat.

/** The disk holding the history (or LMDB's map) is full. Nothing already stored was changed. */
export class HistoryFullError extends Error {
  readonly code = 'history_full';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HistoryFullError';
  }
}

/** The store on disk was written by a newer Hearth, or is not a Hearth store. */
export class HistoryVersionError extends Error {
  readonly code = 'history_version';
  constructor(message: string) {
    super(message);
    this.name = 'HistoryVersionError';
  }
}

/** A conversation, message or completion that does not exist. */
export class HistoryNotFoundError extends Error {
  readonly code = 'not_found';
  constructor(message: string) {
    super(message);
    this.name = 'HistoryNotFoundError';
  }
}

/** Input the store refuses (bad import file, bad id, ...). */
export class HistoryInputError extends Error {
  readonly code = 'invalid_input';
  constructor(message: string) {
    super(message);
    this.name = 'HistoryInputError';
  }
}
