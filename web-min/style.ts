// The one stylesheet, served at /style.css (kept in a module so it lives inside the bundle).
// System fonts only; colours follow the system's dark mode; touch targets at least 44 px.
// `:has()` hides the Stop button and the raw streamed text once the rendered answer has arrived.

export const STYLE = `:root{color-scheme:light dark;--bg:#fff;--fg:#1b1b1b;--mut:#5d5d5d;--bd:#d4d4d4;--ac:#0b57d0;--ub:#eef2f8;--cb:#f3f3f3;--er:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#131416;--fg:#e6e6e6;--mut:#a3a3a3;--bd:#3a3c40;--ac:#8ab4f8;--ub:#1f2530;--cb:#1e1f22;--er:#f2b8b5}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:48rem;padding:0 .75rem;background:var(--bg);color:var(--fg);font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;overflow-wrap:anywhere}
a{color:var(--ac)}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;padding:.5rem 0;border-bottom:1px solid var(--bd)}
.top .home{font-weight:700;text-decoration:none;margin-right:auto}
.top a,.top button,.act a{display:inline-flex;align-items:center;min-height:2.75rem;padding:0 .5rem}
.top form,.act form{display:inline}
h1{font-size:1.3rem;margin:.75rem 0 .25rem}
.meta{color:var(--mut);font-size:.875rem;margin:.25rem 0}
.act{display:flex;flex-wrap:wrap;gap:.25rem;margin:.25rem 0}
button,.btn{font:inherit;min-height:2.75rem;padding:.4rem 1rem;border:1px solid var(--bd);border-radius:.5rem;background:var(--cb);color:var(--fg);cursor:pointer;text-decoration:none;display:inline-flex;align-items:center}
button.pri,.btn.pri{background:var(--ac);border-color:var(--ac);color:var(--bg)}
button.link{border:0;background:none;color:var(--ac);text-decoration:underline;padding:0 .5rem}
input,select,textarea{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--bd);border-radius:.5rem;padding:.5rem;min-height:2.75rem;max-width:100%}
textarea{width:100%;min-height:4.5rem;resize:vertical}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
.msg{margin:.75rem 0;padding:.1rem .75rem;border-radius:.75rem}
.msg.user{background:var(--ub)}
.msg .who{font-weight:600;font-size:.875rem;color:var(--mut);margin:.5rem 0 0}
.msg.error .who,.err{color:var(--er)}
pre{background:var(--cb);padding:.6rem;border-radius:.4rem;overflow-x:auto;font-size:.875rem}
code{font-size:.9em}
table{border-collapse:collapse;display:block;overflow-x:auto}
td,th{border:1px solid var(--bd);padding:.25rem .5rem}
.al{text-align:left}.ac{text-align:center}.ar{text-align:right}
blockquote{margin:.5rem 0;padding-left:.75rem;border-left:3px solid var(--bd)}
.raw{white-space:pre-wrap}
.raw:has(~.final),body:has(.final) .stop{display:none}
.stop{position:fixed;right:.75rem;bottom:.75rem;margin:0}
.composer{position:sticky;bottom:0;background:var(--bg);padding:.5rem 0;border-top:1px solid var(--bd)}
.composer textarea{min-height:3.2rem}
.row{display:flex;gap:.5rem;align-items:center;margin-top:.4rem}
.row select{flex:1;min-width:0}
.list{list-style:none;padding:0;margin:.5rem 0}
.list a{display:block;padding:.6rem .25rem;border-bottom:1px solid var(--bd);text-decoration:none;color:var(--fg)}
.list .t{display:block;font-weight:600}
.search{display:flex;gap:.5rem;margin:.75rem 0}
.search input{flex:1;min-width:0}
details{margin:.5rem 0}
summary{padding:.6rem 0;cursor:pointer}
`;
