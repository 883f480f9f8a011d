# A periodic batch job: 4 allocations, each scanning shard NOMAD_ALLOC_INDEX of 4
# (--shard auto/4) onto a host volume; then the merge job (below, a second file or
# `nomad job dispatch`) makes one run of them. Nomad reschedules a lost allocation with
# the same index, so a shard is rerun, not lost; a shard that never came is reported by
# the merge as missing (exit 2).
job "reachscan" {
  type = "batch"

  periodic {
    crons            = ["0 * * * *"]
    prohibit_overlap = true
  }

  group "shards" {
    count = 4

    volume "results" {
      type   = "host"
      source = "reachscan-results"
    }

    task "shard" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args = ["-c", <<-EOT
          reachscan scan /etc/reachscan/fleet.yaml --shard auto/4 --vantage "${node.datacenter}" --no-history -o "/srv/reachscan/shard-${NOMAD_ALLOC_INDEX}.jsonl" ; test $? -le 1
        EOT
        ]
      }

      volume_mount {
        volume      = "results"
        destination = "/srv/reachscan"
      }
    }
  }
}

# The merge, as its own batch job (nomad job run merge.nomad.hcl after the shards):
#
#   task "merge" {
#     driver = "raw_exec"
#     config {
#       command = "/bin/sh"
#       args = ["-c", <<-EOT
#         reachscan merge /srv/reachscan/shard-0.jsonl /srv/reachscan/shard-1.jsonl /srv/reachscan/shard-2.jsonl /srv/reachscan/shard-3.jsonl --db /srv/reachscan/history.sqlite --format prom -o /srv/reachscan/reachscan.prom
#       EOT
#       ]
#     }
#   }
