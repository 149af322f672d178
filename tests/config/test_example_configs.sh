#!/usr/bin/env bash
# tests/config/test_example_configs.sh TOP FRONTEND COUNTING PLACEMENT WORKER
# Keeps what deploy/ gives for real machines from rotting (README.md, "Deploying on several
# machines"); TOP is the checkout, then the four daemons' binaries. Checks:
#   - deploy/examples/D.conf passes `brume-D --check-config`, names every option the daemon has
#     (set, or commented out as `#name = value`), and still passes with every commented-out
#     option set to the value shown;
#   - deploy/systemd/brume-D.service starts /usr/local/bin/brume-D with --config
#     /etc/brume/brume-D.conf, the path the example says it is installed at, as user brume;
#     with systemd-analyze, the units and the etcd drop-in verify without a word (ExecStart
#     pointed at the binaries under test, since /usr/local/bin has none here);
#   - every ETCD_ variable of deploy/examples/etcd.default is a flag of `etcd --help` (when etcd
#     is installed);
#   - deploy/make-certs.sh makes a CA and certificates that verify against it, with the names
#     and addresses asked for and both TLS uses, and keeps them on a second run.
set -uo pipefail
top=$1
shift
# Absolute: the units' ExecStart= is pointed at them.
declare -A bin=([frontend]=$(realpath "$1") [counting]=$(realpath "$2") [placement]=$(realpath "$3")
  [worker]=$(realpath "$4"))
daemons=(frontend counting placement worker)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

for d in "${daemons[@]}"; do
  ex=$top/deploy/examples/$d.conf
  b=${bin[$d]}
  if "$b" --config "$ex" --check-config >"$tmp/out" 2>"$tmp/err" && head -n 1 "$tmp/out" | grep -qx 'configuration OK'; then
    ok "$d.conf passes --check-config"
  else
    bad "$d.conf: brume-$d --check-config: $(cat "$tmp/err")"
    continue
  fi
  # Every option, in the order --check-config prints them (first word of each line after the
  # first), appears in the example as `name =` or `#name =`.
  missing=$(tail -n +2 "$tmp/out" | awk '{print $1}' | while read -r opt; do
    grep -Eq "^#?$opt = " "$ex" || echo "$opt"
  done)
  if [ -z "$missing" ]; then ok "$d.conf names every option"; else bad "$d.conf lacks: $missing"; fi
  # The commented-out options, set: their names and values must be real.
  sed -E 's/^#([a-z_]+ = )/\1/' "$ex" >"$tmp/$d-all.conf"
  if "$b" --config "$tmp/$d-all.conf" --check-config >/dev/null 2>"$tmp/err"; then
    ok "$d.conf with its commented-out options set passes --check-config"
  else
    bad "$d.conf with its commented-out options set: $(cat "$tmp/err")"
  fi
  # The unit: the binary, the config path the example names, the user.
  unit=$top/deploy/systemd/brume-$d.service
  want="ExecStart=/usr/local/bin/brume-$d --config /etc/brume/brume-$d.conf"
  if grep -qx "$want" "$unit" && grep -q "^# /etc/brume/brume-$d.conf " "$ex" &&
    grep -qx 'User=brume' "$unit"; then
    ok "brume-$d.service runs brume-$d on /etc/brume/brume-$d.conf, as in $d.conf"
  else
    bad "brume-$d.service: want '$want' and User=brume, and $d.conf's first line naming /etc/brume/brume-$d.conf"
  fi
  sed "s|^ExecStart=/usr/local/bin/brume-$d |ExecStart=$b |" "$unit" >"$tmp/brume-$d.service"
done

if command -v systemd-analyze >/dev/null; then
  # Unknown keys and bad values are only warnings: any output fails.
  units=()
  for d in "${daemons[@]}"; do units+=("$tmp/brume-$d.service"); done
  mkdir -p "$tmp/etcd.service.d"
  cp "$top/deploy/systemd/etcd.service.d/brume.conf" "$tmp/etcd.service.d/"
  if SYSTEMD_UNIT_PATH=$tmp: systemd-analyze verify "${units[@]}" >"$tmp/verify" 2>&1 && [ ! -s "$tmp/verify" ]; then
    ok "systemd-analyze verify: the four units"
  else
    bad "systemd-analyze verify: $(cat "$tmp/verify")"
  fi
  # The drop-in, over the etcd.service of Debian's etcd-server (deploy/install-deps.sh).
  if [ -f /lib/systemd/system/etcd.service ]; then
    if SYSTEMD_UNIT_PATH=$tmp: systemd-analyze verify etcd.service >"$tmp/verify" 2>&1 && [ ! -s "$tmp/verify" ]; then
      ok "systemd-analyze verify: etcd.service with deploy/systemd/etcd.service.d/brume.conf"
    else
      bad "systemd-analyze verify etcd.service with the drop-in: $(cat "$tmp/verify")"
    fi
  else
    echo "note: no etcd.service here; the etcd drop-in was not verified"
  fi
else
  echo "note: no systemd-analyze here; the units were checked by the lines above only"
fi

if command -v etcd >/dev/null; then
  etcd --help >"$tmp/etcd-help" 2>&1
  unknown=$(grep -o '^ETCD_[A-Z_]*' "$top/deploy/examples/etcd.default" | while read -r v; do
    flag=$(echo "${v#ETCD_}" | tr 'A-Z_' 'a-z-')
    grep -Eq -- "^ *--$flag( |$)" "$tmp/etcd-help" || echo "$v"
  done)
  if [ -z "$unknown" ]; then ok "etcd.default: every variable is an etcd flag"; else bad "etcd.default: not etcd flags: $unknown"; fi
else
  echo "note: no etcd here; etcd.default not checked"
fi

pki=$tmp/pki
if "$top/deploy/make-certs.sh" --dir "$pki" --days 2 node1=10.0.0.11 node2=10.0.0.12,node2.example \
  >"$tmp/mc" 2>&1; then
  good=1
  for n in node1 node2 cli; do
    openssl verify -CAfile "$pki/ca.pem" "$pki/$n.pem" >/dev/null 2>&1 || { good=0; echo "  $n.pem does not verify"; }
    [ "$(stat -c %a "$pki/$n.key")" = 600 ] || { good=0; echo "  $n.key is not mode 0600"; }
    openssl x509 -in "$pki/$n.pem" -noout -ext extendedKeyUsage 2>/dev/null |
      grep -q 'TLS Web Server Authentication, TLS Web Client Authentication' || { good=0; echo "  $n.pem lacks a TLS use"; }
  done
  sans=$(openssl x509 -in "$pki/node2.pem" -noout -ext subjectAltName | tail -n 1 | sed 's/^ *//')
  [ "$sans" = "DNS:node2, IP Address:10.0.0.12, DNS:node2.example" ] || { good=0; echo "  node2.pem's SANs: $sans"; }
  before=$(md5sum "$pki/node1.pem")
  "$top/deploy/make-certs.sh" --dir "$pki" node1=10.0.0.11 >/dev/null 2>&1 || { good=0; echo "  a second run failed"; }
  [ "$(md5sum "$pki/node1.pem")" = "$before" ] || { good=0; echo "  a second run remade node1.pem"; }
  if [ $good = 1 ]; then ok "deploy/make-certs.sh"; else bad "deploy/make-certs.sh (above)"; fi
else
  bad "deploy/make-certs.sh failed: $(cat "$tmp/mc")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
