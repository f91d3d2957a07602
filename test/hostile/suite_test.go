package hostile

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/queue"
)

var (
	env       *controlplane.Env
	k8sClient client.Client
	clientset kubernetes.Interface
	q         *queue.Queue
	ctx       = context.Background()
)

func TestHostile(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Hostile input")
}

var _ = BeforeSuite(func() {
	var err error
	env, err = controlplane.Start(controlplane.Options{})
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(env.Config, client.Options{Scheme: process.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err = queue.Open(openCtx, queue.Config{Embedded: true, DataDir: GinkgoT().TempDir(), MaxRequestTimeout: 30 * time.Second, AckWait: time.Minute}, logr.Discard())
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if q != nil {
		q.Close()
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})
