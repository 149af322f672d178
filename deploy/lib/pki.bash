# deploy/lib/pki.bash: the certificates of a Brume cluster, made with OpenSSL (EC P-256 keys),
# sourced by deploy/cluster.sh (its namespaces) and deploy/make-certs.sh (real machines).
#
#   pki_ca DIR [CN]            makes DIR/ca.pem and DIR/ca.key (a self-signed CA, CN default
#                              brume-ca) unless DIR/ca.pem exists already
#   pki_cert DIR NAME [SAN...] makes DIR/NAME.pem and DIR/NAME.key unless DIR/NAME.pem exists:
#                              CN=NAME, subject alternative names DNS:NAME and one per SAN (an
#                              IPv4 or IPv6 address becomes IP:, anything else DNS:), good for
#                              serverAuth and clientAuth (every Brume daemon and etcd member is
#                              both a server and a client), signed by the CA
#
# Settings (variables, read at each call):
#   pki_days      validity in days of what is made (default 365)
#   pki_ca_cert   the CA that pki_cert signs with (default DIR/ca.pem)
#   pki_ca_key    its private key (default DIR/ca.key)
# Keys are written mode 0600, certificates 0644. Both functions return non-zero, with
# OpenSSL's message on stderr, when OpenSSL fails. Nothing is overwritten: delete a file to make
# it again.

# pki_run CMD...: runs an OpenSSL command quietly; on failure prints its output, returns 1.
pki_run() {
  local out
  if ! out=$("$@" 2>&1); then
    printf 'pki: %s failed:\n%s\n' "$*" "$out" >&2
    return 1
  fi
}

pki_ca() {
  local dir=$1 cn=${2:-brume-ca}
  mkdir -p "$dir"
  [ -s "$dir/ca.pem" ] && return 0
  (umask 077 && pki_run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -days "${pki_days:-365}" -subj "/CN=$cn" -keyout "$dir/ca.key" -out "$dir/ca.pem") &&
    chmod 644 "$dir/ca.pem"
}

pki_cert() {
  local dir=$1 name=$2 san ext ca=${pki_ca_cert:-$1/ca.pem} cakey=${pki_ca_key:-$1/ca.key}
  shift 2
  [ -s "$dir/$name.pem" ] && return 0
  ext="subjectAltName=DNS:$name"
  for san in "$@"; do
    # An IPv4 address is four numbers with dots; a colon only appears in an IPv6 address.
    if [[ $san =~ ^[0-9]+(\.[0-9]+){3}$ || $san == *:* ]]; then ext+=",IP:$san"; else ext+=",DNS:$san"; fi
  done
  mkdir -p "$dir"
  printf '%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$ext" >"$dir/$name.ext"
  local rc=0
  if ! (umask 077 && pki_run openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr") ||
    ! pki_run openssl x509 -req -in "$dir/$name.csr" -CA "$ca" -CAkey "$cakey" \
      -CAserial "$dir/ca.srl" -CAcreateserial -days "${pki_days:-365}" -extfile "$dir/$name.ext" \
      -out "$dir/$name.pem"; then
    rc=1
    rm -f "$dir/$name.pem" "$dir/$name.key"
  fi
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  return $rc
}
