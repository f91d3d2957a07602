package controllers_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/app/operator"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
)

// The reconcilers run in a real manager against a real kube-apiserver and etcd, with
// kube-controller-manager for garbage collection, and a fake clock the tests move.

var (
	env       *controlplane.Env
	k8sClient client.Client
	fakeClock *clocktesting.FakeClock
	logs      = &syncBuffer{}

	stopManager context.CancelFunc
	managerDone chan struct{}
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Controllers")
}

var _ = BeforeSuite(func() {
	var err error
	env, err = controlplane.Start(controlplane.Options{ControllerManager: true})
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(env.Config, client.Options{Scheme: process.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	fakeClock = clocktesting.NewFakeClock(clockStart)
	startManager()
})

// Each spec gets its own fake clock, starting at clockStart, and an operator that uses it:
// a spec that moves time cannot fire another spec's rotations.
var _ = BeforeEach(func() {
	stopManager()
	<-managerDone
	fakeClock = clocktesting.NewFakeClock(clockStart)
	startManager()
})

var clockStart = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
		<-managerDone
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// startManager runs the operator's manager in-process, as `hookline operator` would, with
// the fake clock and logs captured for the no-secrets-in-logs check.
func startManager() {
	logger := zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapcore.DebugLevel))
	ctrl.SetLogger(logger)
	mgr, err := operator.NewManager(env.Config, operator.Options{
		Logger:      logger,
		MetricsAddr: "0",
		ProbeAddr:   "0",
		Clock:       fakeClock,
		Dispatcher:  dispatcherSettings,

		SkipNameValidation: true,
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	stopManager = cancel
	managerDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(managerDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
}

// restartManager stops the operator and starts a new one, as a pod restart would.
func restartManager() {
	stopManager()
	<-managerDone
	startManager()
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctrl-"}}
	Expect(k8sClient.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// syncBuffer collects log output from the manager's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// optedIn labels a Secret that an endpoint may send to its URL (the default rule).
var optedIn = map[string]string{hooklinev1.LabelEndpointSecret: "true"}
