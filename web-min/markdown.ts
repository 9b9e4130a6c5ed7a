// The markdown renderer, loaded with the first chat page rather than at start-up: markdown-it
// and its entity table are a quarter of the bundle, and a Hearth used only through the API never
// needs them.
import type { Html } from './html.ts';

type Engine = typeof import('./markdown-engine.ts');
let engine: Engine | undefined;
let loading: Promise<Engine> | undefined;

export async function loadMarkdown(): Promise<void> {
  engine ??= await (loading ??= import('./markdown-engine.ts'));
}

/** Renders text as HTML (see markdown-engine.ts). `loadMarkdown()` must have resolved. */
export function renderMarkdown(text: string): Html {
  if (!engine) throw new Error('renderMarkdown() called before loadMarkdown()');
  return engine.renderMarkdown(text);
}
