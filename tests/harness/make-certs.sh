#!/usr/bin/env bash
# make-certs.sh DIR: a test PKI made with OpenSSL, never committed.
#   ca.pem/ca.key        the CA that signs everything below
#   server.pem/.key      CN=localhost, SAN DNS:localhost, IP:127.0.0.1
#   client.pem/.key      CN=brume-test-client (for mutual TLS)
#   other-ca.pem         an unrelated CA: trusting it instead must fail
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
q() { "$@" 2>/dev/null >/dev/null; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=brume-test-ca -keyout ca.key -out ca.pem
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=brume-other-ca -keyout other-ca.key -out other-ca.pem
for who in server client; do
  cn=localhost; [ $who = client ] && cn=brume-test-client
  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=$cn \
    -keyout $who.key -out $who.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > $who.ext
  q openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.pem
done
