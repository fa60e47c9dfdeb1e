// Checked traffic between real nodes: an Erlang module compiled at test time.
// Every message carries its sender, a sequence number and the sha256 of its
// payload; each sink counts, per sender, what arrived, what was corrupted and
// what came out of order, so a test can prove "nothing lost, nothing changed".
// A sender given a window asks the sink to acknowledge every message and never
// has more than that many unacknowledged, so it also knows what got through.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErlNode } from '../../src/erlang/node.js';

const MODULE = String.raw`
-module(bg_traffic).
-export([start_sink/1, sink_report/1, start_sender/3, stop_sender/1, progress/1, start_monitor/0, start_monitor/1, node_events/0]).

%% Public ETS tables owned by a process that lives as long as the node.
tables() ->
    case whereis(bg_tables) of
        undefined ->
            Parent = self(),
            Pid = spawn(fun() ->
                ets:new(bg_progress, [named_table, public, set]),
                ets:new(bg_events, [named_table, public, ordered_set]),
                Parent ! {tables, self()},
                receive never -> ok end
            end),
            receive {tables, Pid} -> register(bg_tables, Pid), ok end;
        _ -> ok
    end.

start_sink(Name) ->
    Parent = self(),
    Pid = spawn(fun() -> register(Name, self()), Parent ! {sink, self()}, sink(#{}) end),
    receive {sink, Pid} -> ok after 5000 -> error(sink_not_started) end.

%% Per sender: {NextExpected, Received, Corrupted, OutOfOrder, Bytes, Backwards}.
%% OutOfOrder counts gaps (lost messages) and Backwards (duplicated or
%% reordered ones); Backwards alone is what no fault may ever cause.
sink(S) ->
    receive
        {msg, From, Seq, Hash, Bin} ->
            sink(account(S, From, Seq, Hash, Bin));
        {msg, From, Seq, Hash, Bin, AckTo} ->
            AckTo ! {ack, From, Seq},
            sink(account(S, From, Seq, Hash, Bin));
        {report, Pid} ->
            Pid ! {report, self(), S},
            sink(S)
    end.

account(S, From, Seq, Hash, Bin) ->
    {Exp, Rcv, Bad, Ooo, Bytes, Back} = maps:get(From, S, {1, 0, 0, 0, 0, 0}),
    Bad1 = case crypto:hash(sha256, Bin) of Hash -> Bad; _ -> Bad + 1 end,
    {Exp1, Ooo1, Back1} = if
        Seq =:= Exp -> {Exp + 1, Ooo, Back};
        Seq > Exp -> {Seq + 1, Ooo + 1, Back};
        true -> {Exp, Ooo + 1, Back + 1}
    end,
    S#{From => {Exp1, Rcv + 1, Bad1, Ooo1, Bytes + byte_size(Bin), Back1}}.

sink_report(Name) ->
    Name ! {report, self()},
    receive
        {report, _, S} -> [{K, Exp - 1, Rcv, Bad, Ooo, Bytes, Back} || {K, {Exp, Rcv, Bad, Ooo, Bytes, Back}} <- maps:to_list(S)]
    after 10000 -> error(sink_silent)
    end.

%% Opts: count (or infinity), min/max payload bytes, burst (messages between
%% pauses), pause (ms), random (fresh random bytes per message, else a fixed
%% random block behind the sequence number), window (0: no acks; N: every
%% message acknowledged, at most N unacknowledged, and at the end the sender
%% waits up to ?ACK_WAIT_MS for the last acks).
-define(ACK_WAIT_MS, 60000).

start_sender(Key, Dest, Opts) ->
    tables(),
    ets:insert(bg_progress, {Key, 0, running, 0}),
    Block = crypto:strong_rand_bytes(maps:get(max, Opts)),
    Pid = spawn(fun() -> send_loop(Key, Dest, 1, 0, Opts, Block) end),
    register(list_to_atom("bg_sender_" ++ Key), Pid),
    ok.

%% Highest acknowledged sequence number once at least Until are, or after Deadline (ms).
await_acks(Key, Acked, Until, Deadline) when Acked < Until ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive {ack, Key, A} -> await_acks(Key, max(Acked, A), Until, Deadline)
    after Left -> Acked
    end;
await_acks(Key, Acked, _, _) ->
    receive {ack, Key, A} -> await_acks(Key, max(Acked, A), 0, 0)
    after 0 -> Acked
    end.

send_loop(Key, Dest, Seq, Acked0, Opts, Block) ->
    Count = maps:get(count, Opts, infinity),
    Window = maps:get(window, Opts, 0),
    Stop = receive stop -> true after 0 -> false end,
    Acked = case Window of
        0 -> Acked0;
        _ -> await_acks(Key, Acked0, Seq - Window, erlang:monotonic_time(millisecond) + ?ACK_WAIT_MS)
    end,
    if
        Stop orelse (is_integer(Count) andalso Seq > Count) ->
            Final = case Window of
                0 -> Acked;
                _ -> await_acks(Key, Acked, Seq - 1, erlang:monotonic_time(millisecond) + ?ACK_WAIT_MS)
            end,
            ets:insert(bg_progress, {Key, Seq - 1, done, Final});
        true ->
            #{min := Min, max := Max} = Opts,
            Size = Min + rand:uniform(Max - Min + 1) - 1,
            Bin = case maps:get(random, Opts, true) of
                true -> crypto:strong_rand_bytes(Size);
                false -> <<Seq:64, (binary:part(Block, 0, max(0, Size - 8)))/binary>>
            end,
            Hash = crypto:hash(sha256, Bin),
            case Window of
                0 -> Dest ! {msg, Key, Seq, Hash, Bin};
                _ -> Dest ! {msg, Key, Seq, Hash, Bin, self()}
            end,
            ets:insert(bg_progress, {Key, Seq, running, Acked}),
            case Seq rem maps:get(burst, Opts, 1) of
                0 -> timer:sleep(maps:get(pause, Opts, 0));
                _ -> ok
            end,
            send_loop(Key, Dest, Seq + 1, Acked, Opts, Block)
    end.

stop_sender(Key) ->
    list_to_atom("bg_sender_" ++ Key) ! stop,
    ok.

%% {Sent, running | done, Acked}
progress(Key) ->
    [{_, Seq, State, Acked}] = ets:lookup(bg_progress, Key),
    {Seq, State, Acked}.

start_monitor() -> start_monitor(visible).

%% visible: links to visible nodes only; all: hidden ones too (an operator's,
%% and every link of a hidden node).
start_monitor(NodeType) ->
    tables(),
    Parent = self(),
    Pid = spawn(fun() ->
        ok = net_kernel:monitor_nodes(true, [{node_type, NodeType}]),
        Parent ! {monitoring, self()},
        monitor_loop()
    end),
    receive {monitoring, Pid} -> ok end.

monitor_loop() ->
    receive
        {Event, Node, _Info} ->
            ets:insert(bg_events, {erlang:unique_integer([monotonic, positive]), Event, Node, erlang:system_time(millisecond)}),
            monitor_loop()
    end.

node_events() ->
    [{Event, Node, At} || {_, Event, Node, At} <- ets:tab2list(bg_events)].
`;

/** Writes and compiles bg_traffic.erl into `dir`; pass `-pa dir` to the nodes. */
export function compileTraffic(dir: string): string[] {
  const src = join(dir, 'bg_traffic.erl');
  writeFileSync(src, MODULE);
  execFileSync('erlc', ['-o', dir, src], { stdio: 'pipe' });
  return ['-pa', dir];
}

export interface SenderOptions {
  count?: number;
  min: number;
  max: number;
  burst?: number;
  pause?: number;
  random?: boolean;
  /** Acknowledge every message and keep at most this many unacknowledged (0 or absent: no acks). */
  window?: number;
}

export function startSender(node: ErlNode, key: string, sink: string, dest: string, o: SenderOptions): Promise<string> {
  const opts = [
    `count => ${o.count ?? 'infinity'}`,
    `min => ${o.min}`,
    `max => ${o.max}`,
    `burst => ${o.burst ?? 1}`,
    `pause => ${o.pause ?? 0}`,
    `random => ${o.random ?? true}`,
    `window => ${o.window ?? 0}`,
  ].join(', ');
  return node.eval(`bg_traffic:start_sender("${key}", {${sink}, '${dest}'}, #{${opts}})`);
}

export async function progress(node: ErlNode, key: string): Promise<{ sent: number; done: boolean; acked: number }> {
  const text = await node.eval(`bg_traffic:progress("${key}")`);
  const m = /^\{(\d+),(running|done),(\d+)\}$/.exec(text);
  if (!m) throw new Error(`unexpected progress ${text}`);
  return { sent: Number(m[1]), done: m[2] === 'done', acked: Number(m[3]) };
}

export interface SinkEntry {
  sender: string;
  /** Highest sequence number accounted for (next expected - 1). */
  last: number;
  received: number;
  corrupted: number;
  /** Gaps and backward steps together. */
  outOfOrder: number;
  bytes: number;
  /** Messages older than one already received: duplicated or reordered, never just lost. */
  backwards: number;
}

export async function sinkReport(node: ErlNode, sink: string): Promise<SinkEntry[]> {
  const text = await node.eval(`bg_traffic:sink_report(${sink})`);
  return [...text.matchAll(/\{"([^"]+)",(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\}/g)].map((m) => ({
    sender: m[1]!,
    last: Number(m[2]),
    received: Number(m[3]),
    corrupted: Number(m[4]),
    outOfOrder: Number(m[5]),
    bytes: Number(m[6]),
    backwards: Number(m[7]),
  }));
}

export interface NodeEvent {
  event: 'nodeup' | 'nodedown';
  node: string;
  /** When the node saw it, ms since epoch (same clock as Date.now() on this machine). */
  at: number;
}

export async function nodeEvents(node: ErlNode): Promise<NodeEvent[]> {
  const text = await node.eval('bg_traffic:node_events()');
  return [...text.matchAll(/\{(nodeup|nodedown),'([^']+)',(\d+)\}/g)].map((m) => ({ event: m[1] as NodeEvent['event'], node: m[2]!, at: Number(m[3]) }));
}

export function stopSender(node: ErlNode, key: string): Promise<string> {
  return node.eval(`bg_traffic:stop_sender("${key}")`);
}
