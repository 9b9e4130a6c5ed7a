import { describe, expect, it } from 'vitest';
import { escapeHtml, html, trusted } from '../html.ts';
import { renderMarkdown } from '../markdown-engine.ts';

const md = (s: string) => renderMarkdown(s).value;

describe('html templates', () => {
  it('escape every interpolation unless it is already HTML', () => {
    const evil = `<script>alert("x")</script>&'`;
    expect(html`<p title="${evil}">${evil}</p>`.value).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</p>',
    );
    expect(html`<b>${html`<i>${evil}</i>`}</b>`.value).toBe(`<b><i>${escapeHtml(evil)}</i></b>`);
    expect(html`${[evil, trusted('<br>'), 3, null, undefined, false]}`.value).toBe(`${escapeHtml(evil)}<br>3`);
  });
  it('escaping piece by piece equals escaping the whole (streamed answers)', () => {
    const s = `a<b>&"c'<scr` + `ipt>`;
    let joined = '';
    for (let i = 0; i < s.length; i += 3) joined += escapeHtml(s.slice(i, i + 3));
    expect(joined).toBe(escapeHtml(s));
  });
});

describe('markdown', () => {
  it('renders code blocks, lists and tables', () => {
    const out = md('Intro\n\n```js\nconst a = "<b>";\n```\n\n- one\n- two\n\n1. first\n2. second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n');
    expect(out).toContain('<pre><code class="language-js">const a = &quot;&lt;b&gt;&quot;;');
    expect(out).toContain('<ul>\n<li>one</li>');
    expect(out).toContain('<ol>\n<li>first</li>');
    expect(out).toMatch(/<table>[\s\S]*<th>a<\/th>[\s\S]*<td>2<\/td>/);
  });

  it('aligns table columns with classes, not inline styles (the CSP would drop those)', () => {
    const out = md('| l | c | r | n |\n|:--|:-:|--:|---|\n| 1 | 2 | 3 | 4 |\n');
    expect(out).not.toContain('style=');
    expect(out).toContain('<th class="al">l</th>\n<th class="ac">c</th>\n<th class="ar">r</th>\n<th>n</th>');
    expect(out).toContain('<td class="al">1</td>\n<td class="ac">2</td>\n<td class="ar">3</td>\n<td>4</td>');
  });

  it('never passes raw HTML through', () => {
    for (const s of ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '<iframe src="https://evil"></iframe>', '<a href="javascript:alert(1)">x</a>']) {
      const out = md(s);
      expect(out).not.toMatch(/<(script|img|iframe)\b/i);
      expect(out).not.toMatch(/<a (?!href="https:\/\/evil" rel="noopener noreferrer" target="_blank">)/); // linkified text only
    }
  });

  it('links open safely and dangerous schemes are refused', () => {
    expect(md('[site](https://example.com)')).toBe('<p><a href="https://example.com" rel="noopener noreferrer" target="_blank">site</a></p>\n');
    expect(md('see https://example.org/x')).toContain('<a href="https://example.org/x" rel="noopener noreferrer" target="_blank">');
    for (const s of [
      '[x](javascript:alert(1))',
      '[x](JaVaScRiPt:alert(1))',
      '[x](&#106;avascript:alert(1))',
      '[x](java\tscript:alert(1))',
      '[x](vbscript:msgbox(1))',
      '[x](data:text/html;base64,PHNjcmlwdD4=)',
      '[x](file:///etc/passwd)',
      '[x](//evil.example/x)',
      '<javascript:alert(1)>',
    ]) {
      expect(md(s), s).not.toMatch(/href="(?!https?:|mailto:|\/[^/]|#)/i);
    }
  });

  it('shows images as links, never as <img> with an address the model chose', () => {
    const out = md('![a cat](http://tracker.example/cat.png) and ![x](data:image/png;base64,AAAA)');
    expect(out).not.toContain('<img');
    expect(out).toContain('<a href="http://tracker.example/cat.png" rel="noopener noreferrer" target="_blank" class="img">image: a cat</a>');
    expect(md('![x](javascript:alert(1))')).not.toContain('javascript:alert(1)"');
  });

  it('every prefix of a half-written answer renders to balanced HTML', () => {
    const answer =
      'Here is **bold and `code` text**\n\n```python\nprint("<hi>")\n```\n\n| a | b |\n|---|---|\n| [link](https://x.example) | ![i](http://x/i.png) |\n\n> quote\n\n- a\n  - b\n\n<b>raw</b> done';
    const tags = ['p', 'pre', 'code', 'table', 'tr', 'td', 'th', 'ul', 'li', 'blockquote', 'a', 'strong', 'em'];
    for (let i = 0; i <= answer.length; i++) {
      const out = md(answer.slice(0, i));
      for (const t of tags) {
        const open = out.match(new RegExp(`<${t}[ >]`, 'g'))?.length ?? 0;
        const close = out.match(new RegExp(`</${t}>`, 'g'))?.length ?? 0;
        expect(open, `<${t}> at prefix ${i}`).toBe(close);
      }
      expect(out).not.toMatch(/<(b|script|img)\b/);
    }
  });
});
