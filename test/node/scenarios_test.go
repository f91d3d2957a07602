package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/receiver"
)

// publishThroughKill runs the publisher pod, SIGKILLs the dispatcher's container process and
// force-deletes its pod mid-stream, and checks that every accepted event reached the
// receiver, verified.
func (k *cluster) publishThroughKill(t *testing.T, rx *receiver.Receiver) {
	clusterIP := strings.TrimSpace(k.kubectl(t, nil, "-n", system, "get", "svc", dispName, "-o", "jsonpath={.spec.clusterIP}"))
	k.kubectl(t, []byte(publisherPod(testTag, "http://"+clusterIP+":8080")), "apply", "--server-side", "-f", "-")
	waitFor(t, "a third of the events delivered before the kill", stepWait, func() error {
		if n := len(accepted(rx)); n < events/3 {
			return fmt.Errorf("%d of %d delivered", n, events)
		}
		return nil
	})
	pod := strings.TrimSpace(k.kubectl(t, nil, "-n", system, "get", "pods", "-l", "app.kubernetes.io/component=dispatcher", "-o", "jsonpath={.items[0].metadata.name}"))
	pid := k.containerPID(t, system, pod)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL of the dispatcher's process %d: %v", pid, err)
	}
	k.kubectl(t, nil, "-n", system, "delete", "pod", pod, "--grace-period=0", "--force")
	t.Logf("killed dispatcher pod %s (process %d) with %d of %d events delivered", pod, pid, len(accepted(rx)), events)

	waitFor(t, "the publisher pod to finish", 4*time.Minute, func() error {
		phase := strings.TrimSpace(k.kubectl(t, nil, "-n", users, "get", "pod", "publisher", "-o", "jsonpath={.status.phase}"))
		if phase == "Failed" {
			logs, _ := k.kubectlErr(nil, "-n", users, "logs", "publisher")
			t.Fatalf("the publisher pod failed: an event was not accepted within its retries:\n%s", logs)
		}
		if phase != "Succeeded" {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
	logs := k.kubectl(t, nil, "-n", users, "logs", "publisher", "-c", "publish")
	if n := strings.Count(logs, `"id"`); n < events {
		t.Fatalf("the publisher printed %d accepted events, want %d:\n%s", n, events, logs)
	}
	// Every event was answered 202 (the pod succeeded only then): every one must arrive.
	waitFor(t, "every accepted event at the receiver", stepWait, func() error {
		got := accepted(rx)
		var missing []string
		for i := 1; i <= events; i++ {
			if id := fmt.Sprintf("node-%d", i); !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d accepted events not delivered: %v", len(missing), missing)
		}
		return nil
	})
	st := rx.Stats()
	if st.Rejected != 0 {
		t.Errorf("%d deliveries failed signature verification", st.Rejected)
	}
	t.Logf("all %d accepted events delivered and verified (%d duplicate deliveries after the kill)", events, st.Duplicates)
	k.waitRollout(t, system, dispName)
}

// containerPID is the host PID of the first container of a pod, from containerd.
func (k *cluster) containerPID(t *testing.T, ns, pod string) int {
	t.Helper()
	var id string
	waitFor(t, "pod "+pod+" running", stepWait, func() error {
		out, err := k.kubectlErr(nil, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}")
		if err != nil || !strings.HasPrefix(out, "containerd://") {
			return fmt.Errorf("container id %q: %v", out, err)
		}
		id = strings.TrimPrefix(strings.TrimSpace(out), "containerd://")
		return nil
	})
	for _, line := range strings.Split(k.ctr(t, "tasks", "list"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no running containerd task for container %s of pod %s/%s", id, ns, pod)
	return 0
}

// checkPodSecurity checks, on the running process rather than in the pod spec, that the
// first container of the pod selected runs as uid 65532 with no capabilities, under a
// seccomp filter, without new privileges, on a read-only root filesystem; and that the spec
// adds no capabilities and asks for RuntimeDefault seccomp.
func (k *cluster) checkPodSecurity(t *testing.T, ns, selector string) {
	t.Helper()
	pod := strings.TrimSpace(k.kubectl(t, nil, "-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[0].metadata.name}"))
	spec := k.kubectl(t, nil, "-n", ns, "get", "pod", pod, "-o",
		`jsonpath={.spec.securityContext.seccompProfile.type} {.spec.containers[0].securityContext.capabilities.add}`)
	if !strings.HasPrefix(spec, "RuntimeDefault") || strings.TrimSpace(strings.TrimPrefix(spec, "RuntimeDefault")) != "" {
		t.Errorf("pod %s/%s: seccomp profile and added capabilities are %q, want RuntimeDefault and none", ns, pod, spec)
	}
	pid := k.containerPID(t, ns, pod)
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("reading the status of pod %s's process %d: %v", pod, pid, err)
	}
	want := map[string]string{
		"Uid":        "65532\t65532\t65532\t65532",
		"Gid":        "65532\t65532\t65532\t65532",
		"CapEff":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2", // a filter (RuntimeDefault), not disabled (0)
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if w, check := want[key]; ok && check {
			if strings.TrimSpace(val) != w {
				t.Errorf("pod %s/%s process %d: %s is %q, want %q", ns, pod, pid, key, strings.TrimSpace(val), w)
			}
			delete(want, key)
		}
	}
	for key := range want {
		t.Errorf("pod %s/%s process %d: no %s in /proc status", ns, pod, pid, key)
	}
	mounts, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	rootRO := false
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			rootRO = strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	if !rootRO {
		t.Errorf("pod %s/%s process %d: the root filesystem is writable", ns, pod, pid)
	}
	t.Logf("pod %s/%s: uid 65532, no capabilities, seccomp filter, read-only root", ns, pod)
}

// checkDrift deletes the dispatcher's Deployment and Service; the operator puts them back.
func (k *cluster) checkDrift(t *testing.T) {
	k.kubectl(t, nil, "-n", system, "delete", "deployment,service", dispName, "--wait=false")
	waitFor(t, "the operator recreating the dispatcher's Deployment and Service", stepWait, func() error {
		_, err := k.kubectlErr(nil, "-n", system, "get", "deployment/"+dispName, "service/"+dispName)
		return err
	})
	k.waitRollout(t, system, dispName)
}

// uninstallKustomize removes what config/default installed except the CRDs.
func (k *cluster) uninstallKustomize(t *testing.T) {
	all := k.kubectl(t, nil, "kustomize", filepath.Join(k.state, "overlay"))
	var keep []string
	for _, doc := range strings.Split(all, "\n---\n") {
		if !strings.Contains(doc, "kind: CustomResourceDefinition") {
			keep = append(keep, doc)
		}
	}
	k.kubectl(t, []byte(strings.Join(keep, "\n---\n")), "delete", "--ignore-not-found", "--wait=true", "--timeout=3m", "-f", "-")
}

// helmInstallUninstall installs the chart with the test image, waits for the operator and
// the dispatcher it runs, uninstalls, and checks that the CRDs and the users' objects stay.
func (k *cluster) helmInstallUninstall(t *testing.T) {
	helm := filepath.Join(k.root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("bin/helm is missing (run `make helm`; `make test` does): %v", err)
	}
	repo, tag, _ := strings.Cut(testTag, ":")
	const ns = "hookline-helm"
	args := []string{"--kubeconfig", k.kubeconfig(), "-n", ns}
	out, err := run(k.root, nil, helm, append(args, "install", "hookline", "charts/hookline", "--create-namespace",
		"--set", "image.registry=", "--set", "image.repository="+repo, "--set", "image.tag="+tag,
		"--set", "dispatcher.imagePullPolicy=Never", "--set", "dispatcher.storage.size=1Gi",
		"--set", "dispatcher.extraArgs={--allow-cidr="+nodeIP+"/32}",
		"--wait", "--timeout", "3m")...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	k.waitRollout(t, ns, "hookline-operator")
	k.waitRollout(t, ns, dispName)
	k.checkPodSecurity(t, ns, "app.kubernetes.io/component=dispatcher")
	if out, err := run(k.root, nil, helm, append(args, "uninstall", "hookline", "--wait", "--timeout", "3m")...); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	k.kubectl(t, nil, "get", "crd", "webhookendpoints.hookline.io", "subscriptions.hookline.io")
	k.kubectl(t, nil, "-n", users, "get", "webhookendpoint/node-receiver", "subscription/everything")
	if out, err := k.kubectlErr(nil, "-n", ns, "get", "deployment", "hookline-operator", "--ignore-not-found", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("helm uninstall left the operator's Deployment: %s", out)
	}
}
