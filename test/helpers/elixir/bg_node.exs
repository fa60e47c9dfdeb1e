# A cluster member written in Elixir for the multi-host tests, run with
# Debian's `elixir` command. Its process :bg_elixir answers echo requests,
# forwards messages to named processes on other nodes (so the Elixir side
# sends across hosts too) and is a member of the pg group :bg_pg. The node
# halts when its stdin closes, so it never outlives the test that started it.

defmodule BgNode do
  def loop do
    receive do
      {:echo, from, term} ->
        send(from, {:elixir_echo, node(), term})

      {:relay, dest, term, reply_to} ->
        send(dest, {:from_elixir, node(), term})
        send(reply_to, {:relayed, node()})

      {:hello, from} ->
        send(from, {:member, node()})
    end

    loop()
  end
end

pid = spawn(&BgNode.loop/0)
Process.register(pid, :bg_elixir)
:ok = :pg.join(:bg_pg, pid)
IO.puts("@@BG-ELIXIR-READY #{node()} #{System.version()}")
IO.stream(:stdio, :line) |> Stream.run()
System.halt(0)
