// Markdown of model answers and user messages, rendered on the server (loaded through markdown.ts).
// markdown-it with `html: false` escapes any HTML in the text; links may only go to http(s) or
// mailto and open in a new tab without a referrer or opener; images become links, so the page
// never loads an address the model chose (the CSP would block it too: img-src 'self' data:).

import MarkdownIt from 'markdown-it';
import { trusted, type Html } from './html.ts';

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: true });

const SAFE_LINK = /^(https?:|mailto:)/i;
const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:/i;

// Only http(s) and mailto, plus scheme-less references (#anchor, /path) which stay on Hearth.
md.validateLink = (url: string): boolean => {
  const u = url.trim();
  if (HAS_SCHEME.test(u)) return SAFE_LINK.test(u);
  return !u.startsWith('//'); // protocol-relative: another host, through the back door
};

md.renderer.rules.link_open = (tokens, idx, options, _env, self) => {
  const t = tokens[idx];
  t.attrSet('rel', 'noopener noreferrer');
  t.attrSet('target', '_blank');
  return self.renderToken(tokens, idx, options);
};

md.renderer.rules.image = (tokens, idx) => {
  const t = tokens[idx];
  const src = String(t.attrGet('src') ?? '');
  const alt = t.children ? md.renderer.renderInlineAsText(t.children, md.options, {}) : t.content;
  const label = `image: ${String(alt) || src}`;
  return `<a href="${md.utils.escapeHtml(src)}" rel="noopener noreferrer" target="_blank" class="img">${md.utils.escapeHtml(label)}</a>`;
};

// Column alignment: markdown-it writes it as an inline style, which the pages' CSP (style-src
// 'self') drops; a class of the stylesheet carries it instead.
const ALIGN: Record<string, string> = { 'text-align:left': 'al', 'text-align:center': 'ac', 'text-align:right': 'ar' };
for (const rule of ['th_open', 'td_open']) {
  md.renderer.rules[rule] = (tokens, idx, options, _env, self) => {
    const t = tokens[idx];
    const style = t.attrGet('style');
    if (style !== null) {
      t.attrs = t.attrs!.filter(([k]) => k !== 'style');
      if (ALIGN[style]) t.attrJoin('class', ALIGN[style]);
    }
    return self.renderToken(tokens, idx, options);
  };
}

/** Renders text as HTML. Any prefix of an answer (a partial stream) renders to balanced HTML. */
export function renderMarkdown(text: string): Html {
  return trusted(md.render(text));
}
