#!/usr/bin/env bash
# Make a private CA and one certificate it signs, for every Dask role (scheduler, workers,
# clients), in DIR (default ./tls):  ca.pem, cert.pem, key.pem (and ca-key.pem: keep it off the
# cluster, it signs new certificates).  Dask checks that a peer's certificate was signed by the
# CA, not its host name, so one certificate may serve every host.
#
#   deploy/tls/make-certs.sh [DIR] [DAYS]
set -euo pipefail
dir=${1:-tls}
days=${2:-365}
mkdir -p "$dir"
cd "$dir"
if [ -e ca.pem ] || [ -e cert.pem ]; then
    echo "$dir already holds certificates; remove them first or choose another directory" >&2
    exit 1
fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=dask-softkmeans CA" -keyout ca-key.pem -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=dask" -keyout key.pem -out cert.csr 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > cert.ext
openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
    -extfile cert.ext -out cert.pem 2>/dev/null
rm -f cert.csr cert.ext ca.srl
chmod 644 ca.pem cert.pem
echo "Wrote $dir/ca.pem, $dir/cert.pem, $dir/key.pem (and $dir/ca-key.pem, keep it private)"
