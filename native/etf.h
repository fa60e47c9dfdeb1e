// A bounded walker over the External Term Format as src/dist/term.ts's
// TermReader reads it: it accepts exactly what TermReader accepts or less
// (FLOAT_EXT text, which OTP 23+ never sends, it leaves to the TypeScript
// reader), and it never recurses on peer data: nesting is kept on an explicit
// stack bounded by ETF_MAX_DEPTH. etf_skip validates one term to its end;
// etf_open reads one term for a caller that looks inside it (a tuple's or a
// list's header only, the caller then reading the elements). Both count terms
// as TermReader.count() does, so a message's control and payload share
// ETF_MAX_TERMS. False from either means "TermReader may reject this" and
// leaves the walker unusable: the message then goes to the TypeScript judge.

#ifndef BEAMGATE_ETF_H
#define BEAMGATE_ETF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judge.h"

// DIST_MAX_TERM_DEPTH (src/config/limits.ts): nesting of one term.
#define ETF_MAX_DEPTH 10000
// DIST_MAX_TERMS: terms walked in one message, control and payload together.
#define ETF_MAX_TERMS (128ull * 1024 * 1024)

// Tags (external.h), as term.ts's TAG names them.
enum {
  ETF_VERSION = 131,
  ETF_NEW_FLOAT = 70,
  ETF_BIT_BINARY = 77,
  ETF_COMPRESSED = 80,
  ETF_ATOM_CACHE_REF = 82,
  ETF_NEW_PID = 88,
  ETF_NEW_PORT = 89,
  ETF_NEWER_REFERENCE = 90,
  ETF_SMALL_INTEGER = 97,
  ETF_INTEGER = 98,
  ETF_FLOAT = 99,
  ETF_ATOM = 100,
  ETF_REFERENCE = 101,
  ETF_PORT = 102,
  ETF_PID = 103,
  ETF_SMALL_TUPLE = 104,
  ETF_LARGE_TUPLE = 105,
  ETF_NIL = 106,
  ETF_STRING = 107,
  ETF_LIST = 108,
  ETF_BINARY = 109,
  ETF_SMALL_BIG = 110,
  ETF_LARGE_BIG = 111,
  ETF_NEW_FUN = 112,
  ETF_EXPORT = 113,
  ETF_NEW_REFERENCE = 114,
  ETF_SMALL_ATOM = 115,
  ETF_MAP = 116,
  ETF_ATOM_UTF8 = 118,
  ETF_SMALL_ATOM_UTF8 = 119,
  ETF_V4_PORT = 120,
};

// One open level of etf_skip: the outer level's terms still to read, and for
// a fun's free variables where the fun's Size field began (its end is checked
// when they are read). 32-bit offsets: etf_init refuses longer buffers.
typedef struct {
  uint32_t pending;
  uint32_t fun_start;  // ETF_NO_FUN unless this level is a fun's free variables
  uint32_t fun_size;
} etf_level_t;

#define ETF_NO_FUN UINT32_MAX

// An atom's text as TermReader would name it. UTF-8 atoms are valid and
// without the leading BOM the TextDecoder drops; latin-1 ones are the raw
// bytes (byte b is character U+00b): equal to an ASCII literal exactly when
// their bytes are, to anything else only once made UTF-8 (etf_atom_utf8).
typedef struct {
  const uint8_t *p;
  uint32_t len;
  bool latin1;
} etf_atom_t;

typedef struct {
  const uint8_t *p;
  size_t pos, end;
  uint64_t terms;
  // The header's reference table (ATOM_CACHE_REF); NULL outside a normal header.
  const judge_str_t *atoms;
  size_t n_atoms;
  etf_level_t *stack;  // ETF_MAX_DEPTH levels, the caller's
} etf_t;

// What etf_open found.
typedef enum {
  ETF_K_OTHER,  // anything not below (binaries, floats, ports, maps, funs are validated whole)
  ETF_K_ATOM,
  ETF_K_INT,    // SMALL_INTEGER or INTEGER: a JS number
  ETF_K_BIG,    // SMALL_BIG or LARGE_BIG: a bigint (n: its digit bytes)
  ETF_K_PID,
  ETF_K_REF,
  ETF_K_NIL,
  ETF_K_STRING, // n: its length
  ETF_K_EXPORT, // atom: module, atom2: function, ival: arity
  ETF_K_FUN,
  ETF_K_TUPLE,  // header only: n elements follow
  ETF_K_LIST,   // header only: n elements and a tail follow
} etf_kind_t;

typedef struct {
  etf_kind_t kind;
  uint32_t n;
  int64_t ival;
  etf_atom_t atom, atom2;
} etf_val_t;

// False when len does not fit the 32-bit offsets (the caller asks instead).
bool etf_init(etf_t *r, const uint8_t *p, size_t len, const judge_str_t *atoms, size_t n_atoms, etf_level_t *stack);

// Validates one term at nesting `depth` (0: a message's control or payload).
bool etf_skip(etf_t *r, uint32_t depth);

// Reads one term at nesting `depth`: a tuple or a list only up to its first
// element (its elements, at depth + 1, are the caller's to read: etf_skip or
// etf_open each, then a list's tail), anything else whole.
bool etf_open(etf_t *r, uint32_t depth, etf_val_t *v);

// Validates the elements (and a list's tail) of a tuple or list etf_open opened at `depth`.
bool etf_finish(etf_t *r, uint32_t depth, const etf_val_t *v);

// Validates a UTF-8 atom text as term.ts's atomFromUtf8 does: false when it
// would be undefined (invalid UTF-8, or over 255 characters once the BOM is
// dropped); *skip is 3 when it starts with a BOM the TextDecoder drops.
bool etf_utf8_atom(const uint8_t *p, size_t len, size_t *skip);

// Whether `a` is the ASCII literal `lit`.
bool etf_atom_is(const etf_atom_t *a, const char *lit);

// `a` as UTF-8 into out (room for 2 * 255 bytes when latin-1); returns its length.
size_t etf_atom_utf8(const etf_atom_t *a, uint8_t *out);

#define ETF_ATOM_UTF8_MAX 1020  // 255 characters of up to 4 bytes

#endif
