// Shapes of what the history store keeps. These are also the shapes of Hearth's export format
// (see FORMAT.md), so change them only together with a migration and a format version.

export type Role = 'system' | 'user' | 'assistant' | 'tool';

/** complete: the model finished; streaming: being written now; stopped: the user or client
 *  cancelled; interrupted: the gateway died mid-answer (found at the next start); error: the
 *  node failed. */
export type MessageStatus = 'complete' | 'streaming' | 'stopped' | 'interrupted' | 'error';

export type ConversationSource = 'chat' | 'api' | 'import';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Timings {
  /** Time to first token. */
  ttftMs?: number;
  totalMs?: number;
  tokensPerSecond?: number;
}

/** Present on conversations that are stored chat completions (`store: true` on the API). */
export interface CompletionInfo {
  /** Unix seconds, as in the chat.completion object. */
  created: number;
  /** seq of the assistant answer; messages before it are the request's messages. */
  answerSeq: number;
  /** OpenAI finish_reason once known (stop, length, ...). */
  finishReason?: string | null;
}

export interface Conversation {
  id: string;
  title: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  model?: string;
  system?: string;
  source: ConversationSource;
  /** For stored completions: the request's `metadata` (OpenAI: up to 16 string pairs). */
  metadata?: Record<string, string>;
  messageCount: number;
  completion?: CompletionInfo;
}

export interface Message {
  id: string;
  conversationId: string;
  /** Position in the conversation, from 0, without gaps. */
  seq: number;
  role: Role;
  content: string;
  /** Optional participant name (OpenAI `name`). */
  name?: string;
  model?: string;
  /** The inference node that answered. */
  node?: string;
  usage?: Usage;
  timings?: Timings;
  status: MessageStatus;
  error?: string;
  createdAt: number;
  updatedAt: number;
}

/** A message to add: its content and role, and optionally what else a Message holds (id defaults to a random one). */
export type NewMessage = Pick<Message, 'role' | 'content'> &
  Partial<Pick<Message, 'name' | 'model' | 'node' | 'usage' | 'timings' | 'status' | 'error' | 'id' | 'createdAt'>>;

export interface NewConversation {
  id?: string;
  title?: string;
  model?: string;
  system?: string;
  source?: ConversationSource;
  metadata?: Record<string, string>;
  createdAt?: number;
}

export interface ListOptions {
  /** Default 20, at most 100. */
  limit?: number;
  /** The `nextCursor` of the previous page. */
  after?: string;
  /** Case-insensitive substring of the title or of any message's text. */
  search?: string;
  source?: ConversationSource;
}

export interface ConversationPage {
  items: Conversation[];
  /** Pass as `after` for the next page; absent on the last page. */
  nextCursor?: string;
}

export interface AnswerResult {
  status: Exclude<MessageStatus, 'streaming'>;
  usage?: Usage;
  timings?: Timings;
  error?: string;
  /** For stored completions: OpenAI finish_reason. */
  finishReason?: string | null;
}

export interface AnswerWriter {
  readonly id: string;
  readonly conversationId: string;
  readonly seq: number;
  /** The text so far. */
  readonly content: string;
  /** Set when persisting failed (e.g. HistoryFullError); streaming to the client may go on. */
  readonly error: Error | undefined;
  /** Adds text; kept in memory and persisted by the store's flush timer. */
  append(delta: string): void;
  /** Persists the final text and status. Rejects with HistoryFullError if the disk is full. */
  finish(result: AnswerResult): Promise<Message>;
}

/** Request side of a stored chat completion. */
export interface CompletionRequest {
  id: string;
  model: string;
  /** Unix seconds; defaults to now. */
  created?: number;
  messages: Array<{ role: string; content?: unknown; name?: string }>;
  metadata?: Record<string, string>;
  node?: string;
}

export interface CompletionListOptions {
  limit?: number;
  /** Completion id of the last item of the previous page. */
  after?: string;
  order?: 'asc' | 'desc';
  model?: string;
  metadata?: Record<string, string>;
}

export interface CompletionPage {
  items: Conversation[];
  hasMore: boolean;
}
