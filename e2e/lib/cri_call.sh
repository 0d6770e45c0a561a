# shellcheck shell=bash
# cri_call RPC ID: calls RuntimeService/RPC with a request whose field 1 is ID, as kubelet
# does, straight over gRPC (curl, HTTP/2 on the unix socket). For the id-only requests
# StopContainer, RemoveContainer, StopPodSandbox and RemovePodSandbox.
#
# Why not crictl: `crictl rm` asks ContainerStatus first and fails on a container that is
# already gone, while kubelet's retried RemoveContainer must succeed on it.
cri_call() {
  local rpc=$1 id=$2 trailers status
  [ ${#id} -lt 128 ] || { echo "cri_call: id too long" >&2; return 2; }
  # gRPC frame: no compression, 4-byte length; protobuf: field 1, wire type 2 (0x0a), length.
  trailers=$({
    printf '\x00\x00\x00\x00'"$(printf '\\x%02x' $((${#id} + 2)))"'\x0a'"$(printf '\\x%02x' ${#id})"
    printf %s "$id"
  } | curl -sS --max-time 60 --unix-socket "$CORRAL_SOCKET" --http2-prior-knowledge -X POST \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
    "http://localhost/runtime.v1.RuntimeService/$rpc" -D - -o /dev/null)
  status=$(sed -n 's/^grpc-status: *\([0-9]*\).*/\1/p' <<<"$trailers")
  if [ "$status" != 0 ]; then
    echo "cri_call $rpc $id: grpc-status ${status:-none}: $(sed -n 's/^grpc-message: *//p' <<<"$trailers")" >&2
    return 1
  fi
}
