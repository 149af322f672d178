#!/usr/bin/env bash
# deploy/make-certs.sh [options] NAME=ADDR[,ADDR...]...
# The certificates of a Brume cluster on real machines (README.md, "Deploying on several
# machines"): a CA, a certificate per machine and one for the CLI, made with OpenSSL into a
# directory (deploy/lib/pki.bash, which deploy/cluster.sh uses as well). Run it once, on a
# trusted machine; it keeps what exists, so a second run adds only the machines that are new.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/deploy/lib/pki.bash"

usage() {
  cat <<'EOT'
usage: deploy/make-certs.sh [options] NAME=ADDR[,ADDR...]...

Makes, in DIR (default ./brume-pki):
  ca.pem, ca.key     a new CA (CN brume-ca), unless DIR/ca.pem exists or --ca-cert is given
  NAME.pem, NAME.key per NAME=ADDR,...: CN=NAME, subject alternative names DNS:NAME and each
                     ADDR (an IP address, or a DNS name), good for server and client use: every
                     Brume daemon and etcd member on machine NAME presents it, to its clients
                     and as a client of the others
  cli.pem, cli.key   the brume CLI's client certificate (no address)
Existing files are kept (delete one to make it again); keys are mode 0600.

Options:
  --dir DIR              where to write (default ./brume-pki)
  --days N               validity of what is made, in days (default 365)
  --ca-cert FILE         sign with this existing CA instead of making one (copied to DIR/ca.pem)
  --ca-key FILE          its private key (required with --ca-cert; not copied)
  --cli-name NAME        name of the CLI's certificate (default cli; --cli-name "" for none)
  -h, --help             this help

Example: three machines and the CLI's certificate:
  deploy/make-certs.sh --dir pki node1=10.0.0.11 node2=10.0.0.12 node3=10.0.0.13
EOT
}

dir=./brume-pki
cli=cli
ca_cert=
ca_key=
members=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --days) pki_days=${2:?--days needs a number}; shift 2 ;;
    --ca-cert) ca_cert=${2:?--ca-cert needs a file}; shift 2 ;;
    --ca-key) ca_key=${2:?--ca-key needs a file}; shift 2 ;;
    --cli-name) cli=${2?--cli-name needs a name}; shift 2 ;;
    --dir=* | --days=* | --ca-cert=* | --ca-key=* | --cli-name=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    -*) echo "make-certs: unknown option $1 (see --help)" >&2; exit 2 ;;
    *=*) members+=("$1"); shift ;;
    *) echo "make-certs: '$1' is not NAME=ADDR[,ADDR...] (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${pki_days:-365} =~ ^[1-9][0-9]*$ ]] || { echo "make-certs: --days must be a positive number" >&2; exit 2; }
if [ -n "$ca_cert" ] || [ -n "$ca_key" ]; then
  if [ -z "$ca_cert" ] || [ -z "$ca_key" ]; then
    echo "make-certs: --ca-cert and --ca-key go together" >&2
    exit 2
  fi
  if [ ! -r "$ca_cert" ] || [ ! -r "$ca_key" ]; then
    echo "make-certs: cannot read $ca_cert or $ca_key" >&2
    exit 1
  fi
fi
[ ${#members[@]} -gt 0 ] || [ -n "$cli" ] || { usage >&2; exit 2; }

# Names become file names and a certificate's CN and DNS SAN.
check_name() {
  [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] ||
    { echo "make-certs: '$1' is not a host name (letters, digits, '.', '-')" >&2; exit 2; }
}
for m in "${members[@]}"; do
  check_name "${m%%=*}"
  [ -n "${m#*=}" ] || { echo "make-certs: $m has no address" >&2; exit 2; }
done
[ -z "$cli" ] || check_name "$cli"

mkdir -p "$dir"
if [ -n "$ca_cert" ]; then
  if [ -s "$dir/ca.pem" ] && ! cmp -s "$ca_cert" "$dir/ca.pem"; then
    echo "make-certs: $dir/ca.pem is another CA than $ca_cert; use another --dir" >&2
    exit 1
  fi
  cp "$ca_cert" "$dir/ca.pem"
  export pki_ca_cert=$ca_cert pki_ca_key=$ca_key
elif [ -s "$dir/ca.pem" ]; then
  [ -s "$dir/ca.key" ] || { echo "make-certs: $dir/ca.pem exists without ca.key: give --ca-key" >&2; exit 1; }
  echo "make-certs: using the CA in $dir/ca.pem"
else
  pki_ca "$dir" brume-ca
  echo "make-certs: made a CA: $dir/ca.pem (keep $dir/ca.key off the cluster's machines)"
fi

# made NAME SAN...: pki_cert, saying whether the certificate was made or kept.
made() {
  local name=$1 state=made
  [ -s "$dir/$name.pem" ] && state=kept
  pki_cert "$dir" "$@"
  printf 'make-certs: %-5s %s.pem  %s\n' "$state" "$dir/$name" \
    "$(openssl x509 -in "$dir/$name.pem" -noout -ext subjectAltName | tail -n +2 | sed 's/^ *//')"
}
for m in "${members[@]}"; do
  IFS=, read -r -a addrs <<<"${m#*=}"
  made "${m%%=*}" "${addrs[@]}"
done
[ -z "$cli" ] || made "$cli"
