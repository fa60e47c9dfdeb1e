// Short-name globs, as operator patterns and policy members use them: name
// characters with `*` standing for any run of name characters (none included).

/** A glob's matcher for whole short names. */
export function globRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replaceAll('*', '[A-Za-z0-9_-]*')}$`);
}

/** Whether some short name matches both globs (so a policy member can name an operator pattern's nodes). */
export function globsOverlap(a: string, b: string): boolean {
  // memo[i][j]: can a[i..] and b[j..] match one common string? A `*` on one
  // side may swallow anything of the other side, its `*`s included.
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = i * (b.length + 1) + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let r: boolean;
    if (i === a.length && j === b.length) r = true;
    else if (i < a.length && a[i] === '*') r = go(i + 1, j) || (j < b.length && go(i, j + 1));
    else if (j < b.length && b[j] === '*') r = go(i, j + 1) || (i < a.length && go(i + 1, j));
    else r = i < a.length && j < b.length && a[i] === b[j] && go(i + 1, j + 1);
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}
