// Package node runs hookline's install on a real single-node cluster: kubelet, containerd and
// runc, kube-proxy, a CNI bridge (hack/node-up.sh, torn down by hack/node-down.sh). The tests
// import the image `make image` builds, install it the ways users do (kubectl apply
// --server-side -k config/default, helm install), publish from a pod through the
// dispatcher's Service to a receiver that verifies every signature, kill the dispatcher's pod
// mid-stream, and check the pod security settings on the running processes.
//
// It needs root and the binaries of hack/build-node.sh and hack/build-control-plane.sh
// (`make test` builds them). When something is missing the test fails and names it.
package node
