# tests/harness/free_port.bash: sourced by the shell tests and benchmarks that start servers.
#
#   free_port   sets $port to a loopback port nobody listens on, random, below the kernel's
#               ephemeral range (an outgoing connection of one daemon could take a port above it
#               before the next daemon binds it), and never handed out twice by this shell
#               (call it without a subshell, so that $used_ports remembers).

used_ports=" "
free_port() {
  local low p
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  while :; do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    case "$used_ports" in *" $p "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    used_ports+="$p "
    port=$p
    return
  done
}
