// Package process holds what every hookline process sets up the same way: the
// structured logger and its flags, the Kubernetes REST config, and the scheme with
// hookline's kinds. The operator, the dispatcher, the CLI commands and the tests all
// take these from here, so no process imports another's assembly for them.
package process

import (
	"flag"
	"io"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Scheme returns a scheme with the built-in kinds and hookline's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := hooklinev1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// BindLogFlags registers the logging flags (-zap-log-level, -zap-devel, ...) on fs.
func BindLogFlags(fs *flag.FlagSet) *zap.Options {
	o := &zap.Options{}
	o.BindFlags(fs)
	return o
}

// NewLogger builds the structured logger of a hookline process.
func NewLogger(o *zap.Options, w io.Writer) logr.Logger {
	return zap.New(zap.UseFlagOptions(o), zap.WriteTo(w))
}

// RESTConfig loads the kubeconfig file, or $KUBECONFIG / in-cluster config when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	return ctrl.GetConfig()
}
