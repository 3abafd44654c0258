// A small Markdown renderer that builds DOM nodes, never HTML strings: text from tools and models
// (approval descriptions, answers) can only ever become text, links to http(s) and mailto, and
// the handful of elements below.

// Underscores emphasise only outside words, as in CommonMark: `hotel_name` and `book_hotel` stay as written.
// Every part is linear in the line: a code span is at most three backticks and holds none, a
// link's text holds no bracket (an unbounded `+)…\1 backtracked cubically on a line of backticks).
const INLINE = /(`{1,3})([^`\n]+)\1(?!`)|\*\*([^*\n]+)\*\*|(?<![\p{L}\p{N}_])__([^_\n]+)__(?![\p{L}\p{N}_])|\*([^*\s][^*\n]*?)\*|(?<![\p{L}\p{N}_])_([^_\s][^_\n]*?)_(?![\p{L}\p{N}_])|\[([^[\]\n]+)\]\(([^()\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/gu;

function safeHref(href) {
  try {
    const url = new URL(href, "http://invalid.invalid/");
    if (url.origin === "http://invalid.invalid") return null;
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(text, href) {
  const safe = safeHref(href);
  if (!safe) return document.createTextNode(text);
  const a = document.createElement("a");
  a.href = safe;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.textContent = text;
  return a;
}

function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    let node;
    if (m[2] !== undefined) {
      node = document.createElement("code");
      node.textContent = m[2].trim() || m[2];
    } else if (m[3] !== undefined || m[4] !== undefined) {
      node = document.createElement("strong");
      inline(node, m[3] ?? m[4]);
    } else if (m[5] !== undefined || m[6] !== undefined) {
      node = document.createElement("em");
      inline(node, m[5] ?? m[6]);
    } else if (m[7] !== undefined) {
      node = link(m[7], m[8]);
    } else {
      node = link(m[9], m[9]);
    }
    parent.append(node);
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

function paragraph(lines) {
  const p = document.createElement("p");
  lines.forEach((line, i) => {
    if (i > 0) p.append(document.createElement("br"));
    inline(p, line);
  });
  return p;
}

/** The Markdown `source` as a `div.md` element. */
export function renderMarkdown(source) {
  const root = document.createElement("div");
  root.className = "md";
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) root.append(paragraph(para));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)/);
    if (fence) {
      flush();
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = body.join("\n");
      pre.append(code);
      root.append(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      flush();
      const h = document.createElement(heading[1].length <= 2 ? "h3" : "h4");
      inline(h, heading[2]);
      root.append(h);
      i += 1;
      continue;
    }
    const bullet = /^\s*([-*+]|\d+[.)])\s+/;
    if (bullet.test(line)) {
      flush();
      const ordered = /^\s*\d/.test(line);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && bullet.test(lines[i])) {
        const li = document.createElement("li");
        inline(li, lines[i].replace(bullet, ""));
        list.append(li);
        i += 1;
      }
      root.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quote = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quote.push(lines[i++].replace(/^\s*>\s?/, ""));
      const block = document.createElement("blockquote");
      block.append(paragraph(quote));
      root.append(block);
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line);
    i += 1;
  }
  flush();
  return root;
}
