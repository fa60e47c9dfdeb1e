// Test helpers for the distribution decoder: a canonical text of a term that
// real `erl` (an escript) and the TypeScript decoder can both produce, so a
// decoded term is compared with what erl says the term is; and a runner that
// has erl evaluate many Erlang expressions in one invocation and return, for
// each, term_to_binary in several encodings plus erl's canonical text.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Term } from '../../src/dist/term.js';
import type { OtpRuntime } from '../../src/erlang/roots.js';

const hexAtom = (s: string) => Buffer.from(s, 'utf8').toString('hex').toUpperCase();

/** The canonical text of a decoded term (the escript's canon/1 below writes the same for the same term). */
export function canon(t: Term): string {
  if (typeof t === 'number' || typeof t === 'bigint') return `i${t}`;
  switch (t.type) {
    case 'float': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(t.value);
      return `f${b.toString('hex').toUpperCase()}`;
    }
    case 'atom':
      return `a${hexAtom(t.name)}`;
    case 'binary':
      return `b${t.bytes.toString('hex').toUpperCase()}`;
    case 'bitstring':
      return `B${(t.size - 1) * 8 + t.bits}:${t.bytes.toString('hex').toUpperCase()}`;
    case 'tuple':
      return `{${t.elements.map(canon).join(',')}}`;
    case 'nil':
      return '[]';
    case 'string':
      return `[${[...t.bytes].map((b) => `i${b}`).join(',')}]`;
    case 'list':
      return `[${t.elements.map(canon).join(',')}${typeof t.tail === 'object' && t.tail.type === 'nil' ? '' : `|${canon(t.tail)}`}]`;
    case 'map':
      return `#{${t.entries.map(([k, v]) => `${canon(k)}=>${canon(v)}`).sort().join(',')}}`;
    case 'pid':
      return `p${t.node}<0.${t.id}.${t.serial}>`;
    case 'ref':
      return `r${t.node}#Ref<0.${[...t.ids].reverse().join('.')}>`;
    case 'port':
      return `o${t.node}#Port<0.${t.id}>`;
    case 'export':
      return `e${hexAtom(t.module)}/${hexAtom(t.function)}/${t.arity}`;
    case 'fun':
      return `F${hexAtom(t.module)}/${t.arity}/${t.numFree}`;
    case 'elided':
      return '...';
  }
}

const ESCRIPT = String.raw`#!/usr/bin/env escript
main([In, Out]) ->
    {ok, Bin} = file:read_file(In),
    Lines = [L || L <- binary:split(Bin, <<"\n">>, [global]), L =/= <<>>],
    ok = file:write_file(Out, [one(binary_to_list(L)) || L <- Lines]).

one(Src) ->
    {ok, Toks, _} = erl_scan:string(Src ++ "."),
    {ok, [E]} = erl_parse:parse_exprs(Toks),
    {value, T, _} = erl_eval:expr(E, []),
    [hex(term_to_binary(T)), " ", hex(iolist_to_binary(canon(T))), " ",
     hex(term_to_binary(T, [{minor_version, 0}])), " ",
     hex(term_to_binary(T, [compressed])), "\n"].

hex(B) -> binary:encode_hex(B).

join([]) -> [];
join([H | T]) -> [H | [[",", X] || X <- T]].

split([H | T], Acc) -> split(T, [canon(H) | Acc]);
split(Tail, Acc) -> {lists:reverse(Acc), Tail}.

canon(T) when is_integer(T) -> ["i", integer_to_list(T)];
canon(T) when is_float(T) -> ["f", hex(<<T:64/float>>)];
canon(T) when is_atom(T) -> ["a", hex(atom_to_binary(T, utf8))];
canon(T) when is_binary(T) -> ["b", hex(T)];
canon(T) when is_bitstring(T) ->
    N = bit_size(T),
    ["B", integer_to_list(N), ":", hex(<<T/bitstring, 0:(8 - N rem 8)>>)];
canon(T) when is_tuple(T) -> ["{", join([canon(E) || E <- tuple_to_list(T)]), "}"];
canon([]) -> "[]";
canon(T) when is_list(T) ->
    {Es, Tail} = split(T, []),
    ["[", join(Es), case Tail of [] -> ""; _ -> ["|", canon(Tail)] end, "]"];
canon(T) when is_map(T) ->
    ["#{", join(lists:sort([iolist_to_binary([canon(K), "=>", canon(V)]) || {K, V} <- maps:to_list(T)])), "}"];
canon(T) when is_pid(T) -> ["p", atom_to_list(node(T)), pid_to_list(T)];
canon(T) when is_reference(T) -> ["r", atom_to_list(node(T)), ref_to_list(T)];
canon(T) when is_port(T) -> ["o", atom_to_list(node(T)), port_to_list(T)];
canon(T) when is_function(T) ->
    {module, M} = erlang:fun_info(T, module),
    {arity, A} = erlang:fun_info(T, arity),
    case erlang:fun_info(T, type) of
        {type, external} ->
            {name, F} = erlang:fun_info(T, name),
            ["e", hex(atom_to_binary(M, utf8)), "/", hex(atom_to_binary(F, utf8)), "/", integer_to_list(A)];
        {type, local} ->
            {env, Env} = erlang:fun_info(T, env),
            ["F", hex(atom_to_binary(M, utf8)), "/", integer_to_list(A), "/", integer_to_list(length(Env))]
    end.
`;

export interface ErlEncoded {
  /** term_to_binary(T) */
  ext: Buffer;
  /** erl's canonical text of T */
  canon: string;
  /** term_to_binary(T, [{minor_version, 0}]): old ATOM_EXT / FLOAT_EXT forms */
  minor0: Buffer;
  /** term_to_binary(T, [compressed]) */
  compressed: Buffer;
}

/**
 * Evaluates each Erlang expression (no trailing dot) in one escript run of the
 * host's erl, or of `runtime`'s (another OTP release's root).
 */
export function erlEncode(exprs: readonly string[], runtime?: OtpRuntime, timeoutMs = 120_000): ErlEncoded[] {
  const dir = mkdtempSync(join(tmpdir(), 'beamgate-etf-'));
  try {
    const script = join(dir, 'enc.escript');
    writeFileSync(script, ESCRIPT);
    writeFileSync(join(dir, 'in.txt'), exprs.map((e) => e.replace(/\n/g, ' ')).join('\n') + '\n');
    const [cmd, ...args] = [...(runtime?.prefix([dir]) ?? []), 'escript', script, join(dir, 'in.txt'), join(dir, 'out.txt')];
    const r = spawnSync(cmd!, args, { encoding: 'utf8', timeout: timeoutMs });
    if (r.status !== 0) throw new Error(`escript failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`.slice(0, 4000));
    const lines = readFileSync(join(dir, 'out.txt'), 'utf8').split('\n').filter((l) => l !== '');
    if (lines.length !== exprs.length) throw new Error(`escript answered ${lines.length} of ${exprs.length} expressions`);
    return lines.map((l) => {
      const [ext, c, minor0, compressed] = l.split(' ') as [string, string, string, string];
      return { ext: Buffer.from(ext, 'hex'), canon: Buffer.from(c, 'hex').toString('utf8'), minor0: Buffer.from(minor0, 'hex'), compressed: Buffer.from(compressed, 'hex') };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
