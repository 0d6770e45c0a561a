# shellcheck shell=bash
# Pod and container configs for the e2e tests, written as crictl JSON files (sourced by
# lib/prelude.sh). The configs look like kubelet's: a log directory, metadata with a uid,
# a PID namespace per container unless a test asks otherwise.

: "${E2E_IMAGE:=${REGISTRY:-127.0.0.1:5000}/busybox:latest}"

# pod_json NAME [JQ-FILTER...]: writes the pod config of NAME and prints its path.
pod_json() {
  local name=$1 file=$E2E_WORK/pod-$1.json
  shift
  jq -n --arg name "$name" --arg logs "$E2E_WORK/logs/$name" '{
      metadata: {name: $name, namespace: "e2e", uid: ("uid-" + $name), attempt: 0},
      hostname: $name,
      log_directory: $logs,
      linux: {security_context: {namespace_options: {pid: 1}}}
    }' | jq "$(jq_filters "$@")" >"$file"
  echo "$file"
}

# jq_filters [FILTER...]: the filters chained with `|` ("." for none).
jq_filters() {
  local IFS='|'
  echo "${*:-.}"
}

# ctr_json NAME CMD-JSON-ARRAY [JQ-FILTER...]: writes a container config and prints its path.
ctr_json() {
  local name=$1 cmd=$2 file=$E2E_WORK/ctr-$1.json
  shift 2
  jq -n --arg name "$name" --arg image "$E2E_IMAGE" --argjson cmd "$cmd" '{
      metadata: {name: $name},
      image: {image: $image},
      command: $cmd,
      log_path: ($name + "/0.log"),
      linux: {}
    }' | jq "$(jq_filters "$@")" >"$file"
  echo "$file"
}

# run_pod NAME [JQ-FILTER...]: runs a pod and prints its id.
run_pod() {
  cri runp "$(pod_json "$@")"
}

# run_ctr POD POD-NAME NAME CMD-JSON [JQ-FILTER...]: creates and starts a container, prints its id.
run_ctr() {
  local pod=$1 pod_name=$2 name=$3 cmd=$4 id
  shift 4
  id=$(cri create "$pod" "$(ctr_json "$name" "$cmd" "$@")" "$E2E_WORK/pod-$pod_name.json")
  cri start "$id" >/dev/null
  echo "$id"
}

# pod_ip POD: the pod's IP.
pod_ip() {
  cri inspectp "$1" | jq -r .status.network.ip
}

# ctr_state ID: CONTAINER_RUNNING, CONTAINER_EXITED, ...
ctr_state() {
  cri inspect "$1" | jq -r .status.state
}
