// Reads Markdown the way GitHub renders it, as far as links go: which anchors
// a file's headings make, which relative links a file has, and which of those
// point at a missing file or a missing anchor. Used by test/unit/docs.test.ts
// so that moving a section never leaves a dead link behind.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** Folders (from the root) that hold no documentation of ours: build output, benchmark output; node_modules anywhere. */
const SKIPPED_DIRS = new Set(['dist', 'bench/results']);

/** Every `.md` file under root, as paths relative to root, sorted. Dot-folders (.git, .ci, .beamgate-demo) are skipped. */
export function markdownFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        const rel = relative(root, path).split(sep).join('/');
        if (entry.name !== 'node_modules' && !SKIPPED_DIRS.has(rel)) walk(path);
      } else if (entry.isFile() && entry.name.endsWith('.md')) {
        out.push(relative(root, path).split(sep).join('/'));
      }
    }
  };
  walk(root);
  return out.sort();
}

/** The lines of a Markdown text outside fenced code blocks (``` or ~~~, indented or not); fenced lines become empty. */
function proseLines(text: string): string[] {
  let fence: string | undefined;
  return text.split('\n').map((line) => {
    const m = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fence === undefined) {
      if (m) {
        fence = m[1]!;
        return '';
      }
      return line;
    }
    if (m && m[1]![0] === fence[0] && m[1]!.length >= fence.length && line.trim() === m[1]) fence = undefined;
    return '';
  });
}

/**
 * GitHub's anchor for a heading's text (github-slugger): the rendered text, lower-cased,
 * every character but letters, digits, marks, '-', '_' and spaces dropped, each space a '-'.
 */
export function slug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image: its text
    .replace(/<[^>]+>/g, '') // inline HTML tags
    .replace(/`/g, ''); // code spans keep their text
  return rendered
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\- _]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a Markdown text defines: one per ATX heading (repeats get -1, -2, …), and HTML `id`/`name` attributes. */
export function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(text)) {
    const h = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (h) {
      const base = slug(h[1]!);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      out.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const a of line.matchAll(/<a\s[^>]*(?:id|name)="([^"]+)"/g)) out.add(a[1]!);
  }
  return out;
}

export interface Link {
  line: number;
  target: string;
}

/** Every link target of a Markdown text outside code: inline links and images, and reference definitions. */
export function links(text: string): Link[] {
  const out: Link[] = [];
  proseLines(text).forEach((raw, i) => {
    const line = raw.replace(/(`+)(?:(?!\1).)+\1/g, 'code'); // a code span is not a link
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: i + 1, target: m[1]! });
    const ref = /^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line);
    if (ref) out.push({ line: i + 1, target: ref[1]! });
  });
  return out;
}

/** A line anchor GitHub gives any non-Markdown file (`#L10`, `#L10-L20`). */
const LINE_ANCHOR = /^L\d+(?:-L\d+)?$/;

/**
 * The broken relative links of one Markdown file (path relative to root): a target
 * outside the repository or missing, or an anchor its target file does not define.
 * URLs with a scheme (https:, mailto:) are not checked.
 */
export function brokenLinks(root: string, file: string): string[] {
  const absRoot = resolve(root);
  const text = readFileSync(join(absRoot, file), 'utf8');
  const problems: string[] = [];
  const anchorCache = new Map<string, Set<string>>();
  const anchorsOf = (path: string) => {
    let set = anchorCache.get(path);
    if (!set) anchorCache.set(path, (set = anchors(readFileSync(path, 'utf8'))));
    return set;
  };
  for (const { line, target } of links(text)) {
    const where = `${file}:${line}: ${target}`;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    if (target === '') {
      problems.push(`${where}: empty link`);
      continue;
    }
    const hash = target.indexOf('#');
    const pathPart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
    const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const abs = pathPart === '' ? join(absRoot, file) : pathPart.startsWith('/') ? join(absRoot, pathPart) : resolve(dirname(join(absRoot, file)), pathPart);
    const rel = relative(absRoot, abs);
    if (rel.startsWith('..') || isAbsolute(rel)) {
      problems.push(`${where}: outside the repository`);
      continue;
    }
    if (!existsSync(abs)) {
      problems.push(`${where}: no such file ${rel.split(sep).join('/')}`);
      continue;
    }
    if (anchor === undefined) continue;
    if (statSync(abs).isFile() && extname(abs) === '.md') {
      if (!anchorsOf(abs).has(anchor)) problems.push(`${where}: no heading makes #${anchor} in ${rel.split(sep).join('/')}`);
    } else if (!LINE_ANCHOR.test(anchor)) {
      problems.push(`${where}: #${anchor} on a file that is not Markdown`);
    }
  }
  return problems;
}
