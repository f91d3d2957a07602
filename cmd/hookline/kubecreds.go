package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// kubeFlags is --kubeconfig for the commands that act as the user: they
// send the kubeconfig user's token to the dispatcher (it authorises with
// TokenReview and SubjectAccessReview, so the user's own RBAC applies) and
// check the cluster has hookline's CRDs.
type kubeFlags struct{ path string }

func bindKubeFlags(fs *flag.FlagSet) *kubeFlags {
	k := &kubeFlags{}
	fs.StringVar(&k.path, "kubeconfig", "", "kubeconfig whose user's token is sent to the dispatcher when there is no --token-file (default: $KUBECONFIG or ~/.kube/config)")
	return k
}

// load reads the kubeconfig and puts its user's bearer token in api, unless
// --token-file is given. Without a kubeconfig it returns nil: the request
// then goes with the pod's token, if any. A user without a token (client
// certificate, exec plugin) cannot be passed on to the dispatcher, which
// is said here rather than left to a 401.
func (k *kubeFlags) load(api *apiFlags) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.path != "" {
		rules.ExplicitPath = k.path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if k.path != "" {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return nil, nil //nolint:nilnil // no kubeconfig is a normal case: the pod's token is used
	}
	if api.tokenFile != "" {
		return cfg, nil
	}
	tok := cfg.BearerToken
	if tok == "" && cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the kubeconfig user's token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" && !fileExists(serviceAccountToken) {
		fmt.Fprintln(os.Stderr, "warning: the kubeconfig's user has no bearer token (a client certificate or exec plugin "+
			"cannot be passed on to the dispatcher); pass --token-file with a token, e.g. from 'kubectl create token <serviceaccount>'")
	}
	api.kubeconfigToken = tok
	return cfg, nil
}

// checkSubscription says clearly when hookline's CRDs or the subscription
// are missing, before asking the dispatcher. Without a kubeconfig, or when
// the API server cannot be asked, it leaves the answer to the dispatcher.
func checkSubscription(ctx context.Context, cfg *rest.Config, ns, name string) error {
	if cfg == nil {
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil //nolint:nilerr // the dispatcher's answer is authoritative; this check only words errors better
	}
	gv := hooklinev1.GroupVersion.String()
	if _, err := cs.Discovery().ServerResourcesForGroupVersion(gv); apierrors.IsNotFound(err) {
		return fmt.Errorf("the cluster has no %s resources: hookline's CRDs are not installed (install the chart or config/crd)", gv)
	} else if err != nil {
		return nil //nolint:nilerr // as above
	}
	path := "/apis/" + gv + "/namespaces/" + ns + "/subscriptions/" + name
	err = cs.Discovery().RESTClient().Get().AbsPath(path).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("subscription %s/%s does not exist (kubectl get whsub -n %s lists them)", ns, name, ns)
	}
	return nil
}

// unreachable words a failure to reach the dispatcher.
func unreachable(server string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("cannot reach the dispatcher at %s (%w); is it running? From outside the cluster, "+
			"kubectl port-forward -n <namespace> svc/<dispatcher service> 8080 and --server http://127.0.0.1:8080", server, err)
	}
	return err
}
