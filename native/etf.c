// The External Term Format walker (etf.h): term.ts's TermReader.skip() as C,
// with the same checks in the same places, on an explicit stack. It is the
// judge's inner loop: a binary is skipped by its length, a list of small
// terms costs a few instructions each.

#include "etf.h"

#include <string.h>

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

bool etf_init(etf_t *r, const uint8_t *p, size_t len, const judge_str_t *atoms, size_t n_atoms, etf_level_t *stack) {
  // Fun offsets are kept in 32 bits; DIST_MAX_MESSAGE_BYTES is far below.
  if (len >= ETF_NO_FUN) return false;
  r->p = p;
  r->pos = 0;
  r->end = len;
  r->terms = 0;
  r->atoms = atoms;
  r->n_atoms = n_atoms;
  r->stack = stack;
  return true;
}

// The WHATWG UTF-8 decoder in fatal mode (what TextDecoder('utf-8', {fatal: true}) accepts), counting code points.
bool etf_utf8_atom(const uint8_t *p, size_t len, size_t *skip) {
  size_t i = 0, chars = 0;
  *skip = 0;
  while (i < len) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
    } else {
      size_t need;
      uint8_t lo = 0x80, hi = 0xbf;
      if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
      } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0) lo = 0xa0;       // overlong
        else if (c == 0xed) hi = 0x9f;  // surrogates
      } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0) lo = 0x90;       // overlong
        else if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
      } else {
        return false;
      }
      if (len - i - 1 < need) return false;
      if (p[i + 1] < lo || p[i + 1] > hi) return false;
      for (size_t k = 2; k <= need; k++)
        if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
      i += need + 1;
    }
    chars++;
  }
  // TextDecoder drops one leading BOM (ignoreBOM is false); OTP counts characters, not bytes.
  if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
    *skip = 3;
    chars--;
  }
  return chars <= 255;
}

// An atom's text after its tag (term.ts's atomText); pos is past the tag.
static inline bool atom_text(etf_t *r, size_t *pos, uint8_t tag) {
  const uint8_t *b = r->p;
  size_t at = *pos, end = r->end, len;
  switch (tag) {
    case ETF_ATOM_UTF8:
    case ETF_SMALL_ATOM_UTF8: {
      if (tag == ETF_ATOM_UTF8) {
        if (end - at < 2) return false;
        len = be16(b + at);
        at += 2;
      } else {
        if (end - at < 1) return false;
        len = b[at++];
      }
      if (end - at < len) return false;
      // ASCII of at most 255 bytes is the common case; anything else goes through the full check.
      bool ascii = len <= 255;
      for (size_t i = 0; ascii && i < len; i++) ascii = b[at + i] < 0x80;
      size_t skip;
      if (!ascii && !etf_utf8_atom(b + at, len, &skip)) return false;
      *pos = at + len;
      return true;
    }
    case ETF_ATOM:
    case ETF_SMALL_ATOM:
      if (tag == ETF_ATOM) {
        if (end - at < 2) return false;
        len = be16(b + at);
        at += 2;
        if (len > 255) return false;
      } else {
        if (end - at < 1) return false;
        len = b[at++];
      }
      if (end - at < len) return false;
      *pos = at + len;
      return true;
    case ETF_ATOM_CACHE_REF:
      if (end - at < 1) return false;
      if (!r->atoms || b[at] >= r->n_atoms) return false;
      *pos = at + 1;
      return true;
    default:
      return false;
  }
}

static inline bool is_atom_tag(uint8_t t) {
  return t == ETF_ATOM_UTF8 || t == ETF_SMALL_ATOM_UTF8 || t == ETF_ATOM_CACHE_REF || t == ETF_ATOM || t == ETF_SMALL_ATOM;
}

// term.ts's atom(): a tag that must be an atom's, counted.
static inline bool atom_term(etf_t *r, size_t *pos) {
  if (*pos >= r->end) return false;
  uint8_t t = r->p[(*pos)++];
  if (!is_atom_tag(t)) return false;
  r->terms++;
  return atom_text(r, pos, t);
}

static inline bool need(const etf_t *r, size_t pos, size_t n) { return r->end - pos >= n; }

static inline bool pid_body(etf_t *r, size_t *pos, uint8_t tag) {
  if (!atom_term(r, pos)) return false;
  size_t n = tag == ETF_NEW_PID ? 12 : 9;  // id, serial, creation (32 or 8 bits)
  if (!need(r, *pos, n)) return false;
  *pos += n;
  return true;
}

bool etf_skip(etf_t *r, uint32_t depth) {
  const uint8_t *b = r->p;
  const size_t end = r->end;
  size_t pos = r->pos;
  etf_level_t *st = r->stack;
  uint32_t h = 0;  // levels open (TermReader's stack.length)
  uint64_t pending = 1;
  for (;;) {
    if (pending == 0) {
      if (h == 0) break;
      etf_level_t *lv = &st[--h];
      // A fun's Size counts itself and everything after it, its free variables included.
      if (lv->fun_start != ETF_NO_FUN && pos - lv->fun_start != lv->fun_size) return false;
      pending = lv->pending;
      continue;
    }
    pending--;
    r->terms++;
    if (pos >= end) return false;
    uint8_t tag = b[pos++];
    uint64_t open = 0;
    uint32_t fun_start = ETF_NO_FUN, fun_size = 0;
    switch (tag) {
      case ETF_SMALL_INTEGER:
        if (!need(r, pos, 1)) return false;
        pos += 1;
        break;
      case ETF_INTEGER:
        if (!need(r, pos, 4)) return false;
        pos += 4;
        break;
      case ETF_SMALL_BIG:
      case ETF_LARGE_BIG: {
        size_t n;
        if (tag == ETF_SMALL_BIG) {
          if (!need(r, pos, 1)) return false;
          n = b[pos++];
        } else {
          if (!need(r, pos, 4)) return false;
          n = be32(b + pos);
          pos += 4;
        }
        if (!need(r, pos, 1) || b[pos] > 1) return false;  // the sign byte: 0 or 1
        pos++;
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_NEW_FLOAT: {
        if (!need(r, pos, 8)) return false;
        // OTP has no NaN or infinity: an all-ones exponent is refused.
        if ((((b[pos] & 0x7f) << 4) | (b[pos + 1] >> 4)) == 0x7ff) return false;
        pos += 8;
        break;
      }
      case ETF_ATOM_UTF8:
      case ETF_SMALL_ATOM_UTF8:
      case ETF_ATOM:
      case ETF_SMALL_ATOM:
      case ETF_ATOM_CACHE_REF:
        if (!atom_text(r, &pos, tag)) return false;
        break;
      case ETF_NEW_PID:
      case ETF_PID:
        if (!pid_body(r, &pos, tag)) return false;
        break;
      case ETF_NEW_PORT:
      case ETF_V4_PORT:
      case ETF_PORT: {
        if (!atom_term(r, &pos)) return false;
        size_t n = tag == ETF_V4_PORT ? 12 : tag == ETF_NEW_PORT ? 8 : 5;  // id (64 or 32 bits), creation (32 or 8)
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_REFERENCE:
        if (!atom_term(r, &pos) || !need(r, pos, 5)) return false;
        pos += 5;
        break;
      case ETF_NEWER_REFERENCE:
      case ETF_NEW_REFERENCE: {
        if (!need(r, pos, 2)) return false;
        uint32_t words = be16(b + pos);
        pos += 2;
        // OTP's references have 1 to 5 words.
        if (words < 1 || words > 5) return false;
        if (!atom_term(r, &pos)) return false;
        size_t n = (tag == ETF_NEWER_REFERENCE ? 4 : 1) + 4 * (size_t)words;
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_SMALL_TUPLE:
        if (!need(r, pos, 1)) return false;
        open = b[pos++];
        break;
      case ETF_LARGE_TUPLE:
        if (!need(r, pos, 4)) return false;
        open = be32(b + pos);
        pos += 4;
        break;
      case ETF_MAP:
        if (!need(r, pos, 4)) return false;
        open = 2 * (uint64_t)be32(b + pos);
        pos += 4;
        break;
      case ETF_NIL:
        break;
      case ETF_STRING: {
        if (!need(r, pos, 2)) return false;
        size_t n = be16(b + pos);
        pos += 2;
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_LIST:
        if (!need(r, pos, 4)) return false;
        open = (uint64_t)be32(b + pos) + 1;  // the elements, then the tail
        pos += 4;
        break;
      case ETF_BINARY: {
        if (!need(r, pos, 4)) return false;
        size_t n = be32(b + pos);
        pos += 4;
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_BIT_BINARY: {
        if (!need(r, pos, 5)) return false;
        size_t n = be32(b + pos);
        uint8_t bits = b[pos + 4];
        pos += 5;
        if (bits < 1 || bits > 8) return false;
        if (!need(r, pos, n)) return false;
        pos += n;
        break;
      }
      case ETF_EXPORT:
        if (!atom_term(r, &pos) || !atom_term(r, &pos)) return false;
        if (!need(r, pos, 2) || b[pos] != ETF_SMALL_INTEGER) return false;
        r->terms++;
        pos += 2;
        break;
      case ETF_NEW_FUN: {
        size_t start = pos;
        // Size, Arity, Uniq, Index, NumFree.
        if (!need(r, pos, 4 + 1 + 16 + 4 + 4)) return false;
        uint32_t size = be32(b + pos);
        uint32_t num_free = be32(b + pos + 25);
        pos += 29;
        if (num_free > end - pos) return false;  // plausible()
        if (!atom_term(r, &pos)) return false;   // module
        // OldIndex, OldUniq: small or integer, each counted.
        for (int k = 0; k < 2; k++) {
          if (!need(r, pos, 1)) return false;
          uint8_t t = b[pos++];
          r->terms++;
          size_t n = t == ETF_SMALL_INTEGER ? 1 : t == ETF_INTEGER ? 4 : 0;
          if (n == 0 || !need(r, pos, n)) return false;
          pos += n;
        }
        if (!need(r, pos, 1)) return false;
        uint8_t pt = b[pos++];
        if (pt != ETF_NEW_PID && pt != ETF_PID) return false;
        r->terms++;
        if (!pid_body(r, &pos, pt)) return false;
        if (num_free == 0) {
          if (pos - start != size) return false;
        } else {
          open = num_free;
          fun_start = (uint32_t)start;
          fun_size = size;
        }
        break;
      }
      default:
        // Unknown tags, FLOAT_EXT (its text is TermReader's to judge), COMPRESSED (never on a dist link).
        return false;
    }
    if (open > 0) {
      if (open > end - pos) return false;  // plausible(): every term takes a byte at least
      if ((uint64_t)depth + h + 1 > ETF_MAX_DEPTH) return false;
      st[h].pending = (uint32_t)pending;  // pending <= bytes left < 2^32 (etf_init)
      st[h].fun_start = fun_start;
      st[h].fun_size = fun_size;
      h++;
      pending = open;
    }
  }
  r->pos = pos;
  return r->terms <= ETF_MAX_TERMS;
}

// The atom whose tag is at `at` (validated already).
static etf_atom_t atom_at(const etf_t *r, size_t at) {
  const uint8_t *b = r->p;
  etf_atom_t a = {NULL, 0, false};
  switch (b[at]) {
    case ETF_ATOM_UTF8:
    case ETF_SMALL_ATOM_UTF8: {
      size_t len, off;
      if (b[at] == ETF_ATOM_UTF8) {
        len = be16(b + at + 1);
        off = at + 3;
      } else {
        len = b[at + 1];
        off = at + 2;
      }
      size_t skip = 0;
      if (len >= 3 && b[off] == 0xef && b[off + 1] == 0xbb && b[off + 2] == 0xbf) skip = 3;
      a.p = b + off + skip;
      a.len = (uint32_t)(len - skip);
      break;
    }
    case ETF_ATOM:
      a.p = b + at + 3;
      a.len = be16(b + at + 1);
      a.latin1 = true;
      break;
    case ETF_SMALL_ATOM:
      a.p = b + at + 2;
      a.len = b[at + 1];
      a.latin1 = true;
      break;
    case ETF_ATOM_CACHE_REF: {
      const judge_str_t *s = &r->atoms[b[at + 1]];
      a.p = s->p;
      a.len = (uint32_t)s->len;
      break;
    }
    default:
      break;
  }
  return a;
}

// The end of the atom term whose tag is at `at` (validated already).
static size_t atom_end(const etf_t *r, size_t at) {
  const uint8_t *b = r->p;
  switch (b[at]) {
    case ETF_ATOM_UTF8:
    case ETF_ATOM:
      return at + 3 + be16(b + at + 1);
    case ETF_SMALL_ATOM_UTF8:
    case ETF_SMALL_ATOM:
      return at + 2 + b[at + 1];
    default:
      return at + 2;  // ATOM_CACHE_REF
  }
}

bool etf_open(etf_t *r, uint32_t depth, etf_val_t *v) {
  const uint8_t *b = r->p;
  size_t at = r->pos;
  memset(v, 0, sizeof *v);
  if (at >= r->end) return false;
  uint8_t tag = b[at];
  if (tag == ETF_SMALL_TUPLE || tag == ETF_LARGE_TUPLE || tag == ETF_LIST) {
    size_t pos = at + 1;
    uint64_t n, open;
    if (tag == ETF_SMALL_TUPLE) {
      if (!need(r, pos, 1)) return false;
      n = b[pos++];
    } else {
      if (!need(r, pos, 4)) return false;
      n = be32(b + pos);
      pos += 4;
    }
    open = tag == ETF_LIST ? n + 1 : n;
    r->terms++;
    if (open > r->end - pos) return false;
    if (open > 0 && (uint64_t)depth + 1 > ETF_MAX_DEPTH) return false;
    r->pos = pos;
    v->kind = tag == ETF_LIST ? ETF_K_LIST : ETF_K_TUPLE;
    v->n = (uint32_t)n;
    return true;
  }
  if (!etf_skip(r, depth)) return false;
  switch (tag) {
    case ETF_ATOM_UTF8:
    case ETF_SMALL_ATOM_UTF8:
    case ETF_ATOM:
    case ETF_SMALL_ATOM:
    case ETF_ATOM_CACHE_REF:
      v->kind = ETF_K_ATOM;
      v->atom = atom_at(r, at);
      break;
    case ETF_SMALL_INTEGER:
      v->kind = ETF_K_INT;
      v->ival = b[at + 1];
      break;
    case ETF_INTEGER:
      v->kind = ETF_K_INT;
      v->ival = (int32_t)be32(b + at + 1);
      break;
    case ETF_SMALL_BIG:
      v->kind = ETF_K_BIG;
      v->n = b[at + 1];
      break;
    case ETF_LARGE_BIG:
      v->kind = ETF_K_BIG;
      v->n = be32(b + at + 1);
      break;
    case ETF_NEW_PID:
    case ETF_PID:
      v->kind = ETF_K_PID;
      break;
    case ETF_NEWER_REFERENCE:
    case ETF_NEW_REFERENCE:
    case ETF_REFERENCE:
      v->kind = ETF_K_REF;
      break;
    case ETF_NIL:
      v->kind = ETF_K_NIL;
      break;
    case ETF_STRING:
      v->kind = ETF_K_STRING;
      v->n = be16(b + at + 1);
      break;
    case ETF_EXPORT: {
      v->kind = ETF_K_EXPORT;
      v->atom = atom_at(r, at + 1);
      size_t f = atom_end(r, at + 1);
      v->atom2 = atom_at(r, f);
      v->ival = b[atom_end(r, f) + 1];
      break;
    }
    case ETF_NEW_FUN:
      v->kind = ETF_K_FUN;
      break;
    default:
      v->kind = ETF_K_OTHER;
      break;
  }
  return true;
}

bool etf_finish(etf_t *r, uint32_t depth, const etf_val_t *v) {
  if (v->kind != ETF_K_TUPLE && v->kind != ETF_K_LIST) return true;
  uint64_t n = v->kind == ETF_K_LIST ? (uint64_t)v->n + 1 : v->n;
  for (uint64_t i = 0; i < n; i++)
    if (!etf_skip(r, depth + 1)) return false;
  return true;
}

bool etf_atom_is(const etf_atom_t *a, const char *lit) {
  size_t n = strlen(lit);
  return a->len == n && memcmp(a->p, lit, n) == 0;
}

size_t etf_atom_utf8(const etf_atom_t *a, uint8_t *out) {
  if (!a->latin1) {
    memcpy(out, a->p, a->len);
    return a->len;
  }
  size_t o = 0;
  for (uint32_t i = 0; i < a->len; i++) {
    uint8_t c = a->p[i];
    if (c < 0x80) {
      out[o++] = c;
    } else {
      out[o++] = (uint8_t)(0xc0 | (c >> 6));
      out[o++] = (uint8_t)(0x80 | (c & 0x3f));
    }
  }
  return o;
}
