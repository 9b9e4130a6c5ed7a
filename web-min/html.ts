// Escaped-by-construction HTML: every value interpolated into an `html` template is escaped
// unless it is itself the result of `html` (or of `trusted`, which only this folder's renderers
// use, for markdown-it's output). Hand-written rather than hono/jsx because the streamed page is
// written piece by piece as synchronous strings, and this is small and hot.

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ESC[ch]);
}

/** A piece of HTML that is safe to send as it is. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export type Interpolation = Html | string | number | boolean | null | undefined | readonly Interpolation[];

function render(v: Interpolation): string {
  if (v === null || v === undefined || v === false || v === true) return '';
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Interpolation[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

/** Marks HTML produced by a sanitising renderer (markdown.ts) as safe. Not for anything else. */
export function trusted(s: string): Html {
  return new Html(s);
}
