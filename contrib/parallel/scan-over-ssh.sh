#!/bin/sh
# Shard I of N on the I-th host over ssh with GNU parallel; the shard files come back
# here (--return) and are merged into this machine's history.
#
#   contrib/parallel/scan-over-ssh.sh fleet.yaml scanner1.example scanner2.example ...
#
# Every host needs reachscan and the same inventory file (--transferfile sends it).
set -eu
inventory=$1; shift
shards=$#
hosts=$(printf '1/%s,' "$@")
seq 0 $((shards - 1)) | parallel --jobs "$shards" --sshlogin "${hosts%,}" \
    --transferfile "$inventory" --return 'shard-{}.jsonl' --cleanup \
    "reachscan scan $inventory --shard {}/$shards --no-history -o shard-{}.jsonl ; test \$? -le 1"
reachscan merge $(seq -f 'shard-%g.jsonl' 0 $((shards - 1))) --db history.sqlite --format table
