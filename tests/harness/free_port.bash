# tests/harness/free_port.bash: sourced by the shell tests and benchmarks that start servers.
#
#   free_port   sets $port to a loopback port nobody listens on, random, below the kernel's
#               ephemeral range (an outgoing connection of one daemon could take a port above it
#               before the next daemon binds it), and never handed out twice by this shell
#               (call it without a subshell, so that $used_ports remembers).
#   quickstart_on_free_ports ID
#               points deploy/quickstart.sh at a fresh BRUME_HOME (printed in $BRUME_HOME) and
#               free ports for etcd and every daemon, with daemon and host ids ID, so that a
#               test's quickstart cannot disturb one already running here.

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

quickstart_on_free_ports() {
  local d
  export BRUME_HOME
  BRUME_HOME=$(mktemp -d /tmp/brume-quickstart-XXXXXX)
  export BRUME_QUICKSTART_ID=$1
  free_port; export BRUME_ETCD_PORT=$port
  free_port; export BRUME_ETCD_PEER_PORT=$port
  for d in COUNTING PLACEMENT WORKER FRONTEND; do
    free_port; export "BRUME_${d}_LISTEN=127.0.0.1:$port"
    free_port; export "BRUME_${d}_HTTP_LISTEN=127.0.0.1:$port"
  done
}
