%% Workloads of `npm run bench`, run inside the nodes so that the driver's
%% stdin round trips never touch a timed loop. Node B runs serve/0; node A
%% calls the measuring functions with B's name and gets plain numbers back.
-module(beamgate_bench).
-export([serve/0, connect/1, drop/1, throughput/3, throughput_for/3, rtt/2]).

%% Registers the two processes A talks to: a sink that counts what it is sent
%% and an echo for round trips.
serve() ->
    Sink = spawn(fun() -> sink(0, 0) end),
    Echo = spawn(fun echo/0),
    true = register(bench_sink, Sink),
    true = register(bench_echo, Echo),
    ok.

sink(N, Bytes) ->
    receive
        {data, Bin} -> sink(N + 1, Bytes + byte_size(Bin));
        {report, From} -> From ! {counts, N, Bytes}, sink(0, 0)
    end.

echo() ->
    receive
        {ping, From, I} -> From ! {pong, I}, echo()
    end.

%% Cold connect: microseconds for net_adm:ping/1 from this (fresh) node. After
%% drop/1, the same from a node whose code is loaded: a link's set-up alone.
connect(Node) ->
    {Micros, pong} = timer:tc(net_adm, ping, [Node]),
    Micros.

%% Drops the link to Node and returns once this node has seen it go (the
%% driver then waits until Node has too: a new handshake must not meet the old
%% connection there).
drop(Node) ->
    true = erlang:disconnect_node(Node),
    gone(Node).

gone(Node) ->
    case lists:member(Node, nodes([visible, hidden])) of
        true -> timer:sleep(2), gone(Node);
        false -> ok
    end.

%% Sends Count messages of Size bytes, then waits for the sink's counts.
%% Returns {Messages, Bytes, Microseconds}; the time ends when the sink has
%% received everything (the report request queues behind the data).
throughput(Node, Size, Count) ->
    Bin = binary:copy(<<"x">>, Size),
    Sink = {bench_sink, Node},
    T0 = erlang:monotonic_time(microsecond),
    send(Sink, Bin, Count),
    Sink ! {report, self()},
    receive
        {counts, N, Bytes} ->
            {N, Bytes, erlang:monotonic_time(microsecond) - T0}
    after 600000 -> error(sink_timeout)
    end.

%% Sends Size-byte messages for Millis milliseconds, then waits for the sink's
%% counts. Every path gets the same wall time, so a slow path is measured as
%% precisely as a fast one. Returns {Sent, Received, Bytes, Microseconds}.
throughput_for(Node, Size, Millis) ->
    Bin = binary:copy(<<"x">>, Size),
    Sink = {bench_sink, Node},
    T0 = erlang:monotonic_time(microsecond),
    Sent = send_until(Sink, Bin, T0 + Millis * 1000, 0),
    Sink ! {report, self()},
    receive
        {counts, N, Bytes} ->
            {Sent, N, Bytes, erlang:monotonic_time(microsecond) - T0}
    after 600000 -> error(sink_timeout)
    end.

%% Checks the clock once per batch of 16 sends: cheap next to the sends.
send_until(Sink, Bin, Deadline, Sent) ->
    send(Sink, Bin, 16),
    case erlang:monotonic_time(microsecond) < Deadline of
        true -> send_until(Sink, Bin, Deadline, Sent + 16);
        false -> Sent + 16
    end.

send(_Sink, _Bin, 0) -> ok;
send(Sink, Bin, K) -> Sink ! {data, Bin}, send(Sink, Bin, K - 1).

%% Count ping/pong round trips; returns the sorted list of nanoseconds.
rtt(Node, Count) ->
    Echo = {bench_echo, Node},
    lists:sort(rtt(Echo, Count, [])).

rtt(_Echo, 0, Acc) -> Acc;
rtt(Echo, I, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Echo ! {ping, self(), I},
    receive {pong, I} -> ok after 10000 -> error(rtt_timeout) end,
    rtt(Echo, I - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).
