package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/app/operator"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/workload"
)

// dispatcherSettings, when set, has the suite's manager run the dispatcher controller.
// Only the dispatcher specs set it; the others run without it.
var dispatcherSettings *workload.Settings

const testImage = "hookline:test"

// There is no scheduler or kubelet: the dispatcher's pods never exist, so these specs look
// at the objects only.
var _ = Describe("Dispatcher", Ordered, func() {
	ctx := context.Background()
	var ns string                  // the dispatcher's namespace
	var settings workload.Settings // as the controller runs them, defaulted

	run := func(s workload.Settings) {
		s.Image, s.Namespace = testImage, ns
		settings = s.Default("")
		dispatcherSettings = &s
		restartManager()
	}
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	get := func(k client.ObjectKey, obj client.Object) func(g Gomega) {
		return func(g Gomega) { g.Expect(k8sClient.Get(ctx, k, obj)).To(Succeed()) }
	}
	gone := func(k client.ObjectKey, obj client.Object) func() error {
		return func() error { return client.IgnoreNotFound(k8sClient.Get(ctx, k, obj)) }
	}
	deployment := func(g Gomega) *appsv1.Deployment {
		var d appsv1.Deployment
		g.Expect(k8sClient.Get(ctx, key(workload.Name), &d)).To(Succeed())
		return &d
	}

	BeforeAll(func() {
		ns = newNamespace()
		run(workload.Settings{})
	})

	AfterAll(func() {
		dispatcherSettings = nil
		restartManager()
		// Cluster-scoped objects outlive the test namespaces.
		for _, obj := range []client.Object{&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}} {
			Expect(k8sClient.DeleteAllOf(ctx, obj, client.MatchingLabels(workload.Labels()))).To(Succeed())
		}
	})

	It("creates the dispatcher's objects as rendered, applied by the operator", func() {
		d := &appsv1.Deployment{}
		Eventually(get(key(workload.Name), d)).Should(Succeed())
		Expect(d.Labels).To(Equal(workload.Labels()))
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
		Expect(d.Spec.Strategy.Type).To(Equal(appsv1.RecreateDeploymentStrategyType))
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(workload.AnnotationChecksum, settings.Checksum()))
		Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(workload.Name))
		c := d.Spec.Template.Spec.Containers[0]
		Expect(c.Image).To(Equal(testImage))
		Expect(c.Args).To(Equal(workload.Args(settings)))
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(And(HaveField("Name", "data"),
			HaveField("VolumeSource.PersistentVolumeClaim.ClaimName", workload.VolumeClaimName))))
		Expect(d.ManagedFields).To(ContainElement(And(HaveField("Manager", controllers.DispatcherFieldOwner),
			HaveField("Operation", metav1.ManagedFieldsOperationApply))))

		By("having its pods admitted under the restricted Pod Security Standard")
		restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "restricted-",
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
		Expect(k8sClient.Create(ctx, restricted)).To(Succeed())
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted.Name, Name: "dispatcher"}, Spec: d.Spec.Template.Spec}
		Expect(k8sClient.Create(ctx, pod, client.DryRunAll)).To(Succeed())

		var svc corev1.Service
		Eventually(get(key(workload.Name), &svc)).Should(Succeed())
		Expect(svc.Spec.Ports).To(ConsistOf(
			And(HaveField("Name", "http"), HaveField("Port", BeEquivalentTo(8080))),
			And(HaveField("Name", "metrics"), HaveField("Port", BeEquivalentTo(9090)))))
		var pvc corev1.PersistentVolumeClaim
		Eventually(get(key(workload.VolumeClaimName), &pvc)).Should(Succeed())
		Expect(pvc.Spec.Resources.Requests.Storage().String()).To(Equal(workload.DefaultStorageSize))
		Eventually(get(key(workload.Name), &corev1.ServiceAccount{})).Should(Succeed())
		Eventually(get(key(workload.Name), &policyv1.PodDisruptionBudget{})).Should(Succeed())

		By("granting RBAC cluster-wide when watching every namespace")
		for _, name := range []string{workload.Name, workload.AuthName} {
			var crb rbacv1.ClusterRoleBinding
			Eventually(get(client.ObjectKey{Name: name}, &rbacv1.ClusterRole{})).Should(Succeed())
			Eventually(get(client.ObjectKey{Name: name}, &crb)).Should(Succeed())
			Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: workload.Name, Namespace: ns}))
		}
	})

	It("puts back a deleted object", func() {
		for _, tc := range []struct {
			key client.ObjectKey
			obj func() client.Object
		}{
			{key(workload.Name), func() client.Object { return &appsv1.Deployment{} }},
			{key(workload.Name), func() client.Object { return &corev1.Service{} }},
			{key(workload.Name), func() client.Object { return &corev1.ServiceAccount{} }},
			{key(workload.Name), func() client.Object { return &policyv1.PodDisruptionBudget{} }},
			{key(workload.VolumeClaimName), func() client.Object { return &corev1.PersistentVolumeClaim{} }},
			{client.ObjectKey{Name: workload.AuthName}, func() client.Object { return &rbacv1.ClusterRoleBinding{} }},
		} {
			obj := tc.obj()
			Eventually(get(tc.key, obj)).Should(Succeed())
			By(fmt.Sprintf("deleting %T %s", obj, obj.GetName()))
			uid := obj.GetUID()
			Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
			if isVolumeClaim(obj) {
				// kubernetes.io/pvc-protection holds the claim until no pod uses it; its
				// controller does not run here, so do its job (no pod uses the claim).
				Expect(client.IgnoreNotFound(k8sClient.Patch(ctx, obj,
					client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))))).To(Succeed())
			}
			Eventually(func(g Gomega) types.UID {
				fresh := tc.obj()
				g.Expect(k8sClient.Get(ctx, tc.key, fresh)).To(Succeed())
				return fresh.GetUID()
			}).ShouldNot(Equal(uid))
		}
	})

	It("puts back an edit to what it applies, and leaves other fields alone", func() {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: workload.Name}}
		Expect(k8sClient.Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(
			`{"metadata":{"annotations":{"team":"payments"}},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"dispatcher","image":"someone-else:latest"}]}}}}`)))).
			To(Succeed())
		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
			g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(testImage))
		}).Should(Succeed())
		Expect(deployment(Default).Annotations).To(HaveKeyWithValue("team", "payments"))

		By("putting back a label edited away, though the object then leaves the label-selected cache")
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: workload.Name}}
		Expect(k8sClient.Patch(ctx, svc, client.RawPatch(types.MergePatchType, []byte(
			`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`)))).To(Succeed())
		Eventually(func(g Gomega) map[string]string {
			g.Expect(k8sClient.Get(ctx, key(workload.Name), svc)).To(Succeed())
			return svc.Labels
		}).Should(Equal(workload.Labels()))
	})

	It("rolls the Deployment when the settings change", func() {
		before := deployment(Default)
		old := before.Spec.Template.Annotations[workload.AnnotationChecksum]
		run(workload.Settings{Durability: workload.DurabilityAlways, LogLevel: "debug", Storage: workload.Storage{Size: "20Gi"}})
		Expect(settings.Checksum()).NotTo(Equal(old))
		Eventually(func(g Gomega) string {
			return deployment(g).Spec.Template.Annotations[workload.AnnotationChecksum]
		}).Should(Equal(settings.Checksum()))
		d := deployment(Default)
		Expect(d.Generation).To(BeNumerically(">", before.Generation))
		Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements("--durability=always", "--zap-log-level=debug"))

		By("leaving the queue's claim as it is when the API server refuses the new size, and saying why")
		Eventually(func(g Gomega) []eventsv1.Event {
			var evs eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			return evs.Items
		}).Should(ContainElement(And(HaveField("Reason", "VolumeClaimUnchanged"), HaveField("Type", corev1.EventTypeWarning),
			HaveField("Regarding.Name", workload.VolumeClaimName), HaveField("Note", ContainSubstring("--dispatcher-storage-size")))))
		var pvc corev1.PersistentVolumeClaim
		Expect(k8sClient.Get(ctx, key(workload.VolumeClaimName), &pvc)).To(Succeed())
		Expect(pvc.Spec.Resources.Requests.Storage().String()).To(Equal(workload.DefaultStorageSize))
	})

	It("serves the dashboard on a port named dashboard of the pods and the Service, and takes it away again", func() {
		service := func(g Gomega) *corev1.Service {
			var svc corev1.Service
			g.Expect(k8sClient.Get(ctx, key(workload.Name), &svc)).To(Succeed())
			return &svc
		}
		run(workload.Settings{Dashboard: &workload.Dashboard{Enabled: true, Port: 8091}})
		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(d.Spec.Template.Annotations[workload.AnnotationChecksum]).To(Equal(settings.Checksum()))
			c := d.Spec.Template.Spec.Containers[0]
			g.Expect(c.Args).To(ContainElement("--ui-listen=:8091"))
			g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "dashboard"), HaveField("ContainerPort", BeEquivalentTo(8091)))))
			g.Expect(service(g).Spec.Ports).To(ContainElement(And(HaveField("Name", "dashboard"), HaveField("Port", BeEquivalentTo(8091)),
				HaveField("TargetPort.StrVal", "dashboard"))))
		}).Should(Succeed())

		By("removing the flag and both ports when it is turned off")
		run(workload.Settings{})
		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(d.Spec.Template.Annotations[workload.AnnotationChecksum]).To(Equal(settings.Checksum()))
			c := d.Spec.Template.Spec.Containers[0]
			g.Expect(c.Args).NotTo(ContainElement(HavePrefix("--ui-listen")))
			g.Expect(c.Ports).NotTo(ContainElement(HaveField("Name", "dashboard")))
			g.Expect(service(g).Spec.Ports).To(HaveLen(2))
			g.Expect(service(g).Spec.Ports).NotTo(ContainElement(HaveField("Name", "dashboard")))
		}).Should(Succeed())
	})

	It("runs N replicas with RollingUpdate on an external queue, and keeps the embedded queue's volume", func() {
		external := workload.Settings{Queue: workload.QueueExternal, Replicas: 3,
			NATS: workload.NATS{URL: "nats://nats.messaging:4222", CredentialsSecret: "nats-creds"}}
		run(external)
		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
			g.Expect(d.Spec.Strategy.Type).To(Equal(appsv1.RollingUpdateDeploymentStrategyType))
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(Equal(workload.Args(settings)))
			g.Expect(d.Spec.Template.Spec.Volumes).To(ContainElements(
				And(HaveField("Name", "data"), HaveField("VolumeSource.EmptyDir", Not(BeNil()))),
				And(HaveField("Name", "nats-creds"), HaveField("VolumeSource.Secret.SecretName", "nats-creds"))))
		}).Should(Succeed())

		By("keeping the volume claim, marked, with an Event saying so")
		Eventually(func(g Gomega) map[string]string {
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8sClient.Get(ctx, key(workload.VolumeClaimName), &pvc)).To(Succeed())
			g.Expect(pvc.DeletionTimestamp).To(BeNil())
			return pvc.Annotations
		}).Should(HaveKeyWithValue(controllers.AnnotationRetainedVolume, "true"))
		Eventually(func(g Gomega) []eventsv1.Event {
			var evs eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			return evs.Items
		}).Should(ContainElement(And(HaveField("Reason", "QueueVolumeRetained"), HaveField("Type", corev1.EventTypeWarning),
			HaveField("Regarding.Kind", "PersistentVolumeClaim"), HaveField("Regarding.Name", workload.VolumeClaimName))))
	})

	It("spreads external replicas and reports missing or invalid NATS Secrets on the Deployment until they are fixed", func() {
		run(workload.Settings{Queue: workload.QueueExternal, NATS: workload.NATS{URL: "tls://nats.messaging:4222",
			UserSecret: "nats-user", TLS: &workload.NATSTLS{CASecret: "nats-ca"}}})
		condition := func(g Gomega) appsv1.DeploymentCondition {
			for _, c := range deployment(g).Status.Conditions {
				if c.Type == controllers.ConditionNATSSecretsReady {
					return c
				}
			}
			g.Expect(false).To(BeTrue(), "no %s condition", controllers.ConditionNATSSecretsReady)
			return appsv1.DeploymentCondition{}
		}
		warnings := func(reason string) func(g Gomega) []eventsv1.Event {
			return func(g Gomega) []eventsv1.Event {
				var evs eventsv1.EventList
				g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
				var out []eventsv1.Event
				for _, e := range evs.Items {
					if e.Reason == reason && e.Type == corev1.EventTypeWarning && e.Regarding.Kind == "Deployment" && e.Regarding.Name == workload.Name {
						out = append(out, e)
					}
				}
				return out
			}
		}

		By("running three replicas by default, preferring different nodes and spread over zones, with a budget of one pod down")
		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(workload.DefaultExternalReplicas))
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements("--nats-replicas=3",
				"--nats-user-file=/etc/hookline/nats-user/username", "--nats-ca-file=/etc/hookline/nats-ca/ca.crt"))
			g.Expect(d.Spec.Template.Spec.Affinity).NotTo(BeNil())
			g.Expect(d.Spec.Template.Spec.Affinity.PodAntiAffinity).NotTo(BeNil())
			g.Expect(d.Spec.Template.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution).To(HaveLen(1))
			g.Expect(d.Spec.Template.Spec.TopologySpreadConstraints).To(ConsistOf(And(
				HaveField("TopologyKey", corev1.LabelTopologyZone), HaveField("MaxSkew", BeEquivalentTo(1)))))
		}).Should(Succeed())
		var pdb policyv1.PodDisruptionBudget
		Eventually(get(key(workload.Name), &pdb)).Should(Succeed())
		Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))

		By("naming each missing Secret, its setting and the key it needs")
		Eventually(condition).Should(And(HaveField("Status", corev1.ConditionFalse), HaveField("Reason", controllers.ReasonSecretNotFound),
			HaveField("Message", And(
				ContainSubstring(`Secret %s/nats-user (nats.userSecret) does not exist: create it with the NATS user name and password under key "username" and "password".`, ns),
				ContainSubstring(`Secret %s/nats-ca (nats.tls.caSecret) does not exist`, ns)))))
		Eventually(warnings(controllers.ReasonSecretNotFound)).Should(ContainElement(HaveField("Note", ContainSubstring("nats-user (nats.userSecret)"))))

		By("naming a missing key and an unparseable value, never a value")
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats-user"},
			Data: map[string][]byte{"username": []byte("hookline-user-value")}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats-ca"},
			Data: map[string][]byte{"ca.crt": []byte("not a certificate")}})).To(Succeed())
		Eventually(condition).Should(And(HaveField("Status", corev1.ConditionFalse), HaveField("Reason", controllers.ReasonSecretKeyMissing),
			HaveField("Message", And(
				ContainSubstring(`Secret %s/nats-user (nats.userSecret) has no key "password", or it is empty`, ns),
				ContainSubstring(`Secret %s/nats-ca (nats.tls.caSecret), key "ca.crt": no PEM certificate found`, ns),
				Not(ContainSubstring("hookline-user-value"))))))
		Eventually(warnings(controllers.ReasonSecretKeyMissing)).ShouldNot(BeEmpty())

		By("turning True once the Secrets hold what the dispatcher needs")
		var user, ca corev1.Secret
		Expect(k8sClient.Get(ctx, key("nats-user"), &user)).To(Succeed())
		user.Data["password"] = []byte("s3cret")
		Expect(k8sClient.Update(ctx, &user)).To(Succeed())
		Expect(k8sClient.Get(ctx, key("nats-ca"), &ca)).To(Succeed())
		ca.Data["ca.crt"] = selfSignedPEM()
		Expect(k8sClient.Update(ctx, &ca)).To(Succeed())
		Eventually(condition).Should(And(HaveField("Status", corev1.ConditionTrue), HaveField("Reason", controllers.ReasonNATSSecretsFound)))

		By("removing the condition when the queue is embedded again")
		run(workload.Settings{})
		Eventually(func(g Gomega) []appsv1.DeploymentCondition { return deployment(g).Status.Conditions }).
			ShouldNot(ContainElement(HaveField("Type", controllers.ConditionNATSSecretsReady)))
	})

	It("grants RBAC per watched namespace, and withdraws it from a namespace no longer watched", func() {
		a, b := newNamespace(), newNamespace()
		external := workload.Settings{Queue: workload.QueueExternal, NATS: workload.NATS{URL: "nats://nats.messaging:4222"}}
		absent := "absent-" + a // watched, but not created yet: the rest must not wait for it
		external.WatchNamespaces = []string{a, b, absent}
		run(external)
		for _, watched := range []string{a, b} {
			k := client.ObjectKey{Namespace: watched, Name: workload.Name}
			var rb rbacv1.RoleBinding
			Eventually(get(k, &rbacv1.Role{})).Should(Succeed())
			Eventually(get(k, &rb)).Should(Succeed())
			Expect(rb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: workload.Name, Namespace: ns}))
		}
		Eventually(gone(client.ObjectKey{Name: workload.Name}, &rbacv1.ClusterRole{})).Should(Succeed())
		Eventually(gone(client.ObjectKey{Name: workload.Name}, &rbacv1.ClusterRoleBinding{})).Should(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: workload.AuthName}, &rbacv1.ClusterRole{})).To(Succeed())
		Eventually(logs.String).Should(MatchRegexp(`namespace does not exist; will try again.*"targetNamespace": "%s"`, absent))
		Expect(logs.String()).NotTo(MatchRegexp(`Reconciler error.*%s`, absent))

		By("putting back a deleted Role")
		role := &rbacv1.Role{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: a, Name: workload.Name}, role)).To(Succeed())
		uid := role.UID
		Expect(k8sClient.Delete(ctx, role)).To(Succeed())
		Eventually(func(g Gomega) types.UID {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: a, Name: workload.Name}, role)).To(Succeed())
			return role.UID
		}).ShouldNot(Equal(uid))

		By("withdrawing the Role from a namespace no longer watched")
		external.WatchNamespaces = []string{a}
		run(external)
		Eventually(gone(client.ObjectKey{Namespace: b, Name: workload.Name}, &rbacv1.Role{})).Should(Succeed())
		Eventually(gone(client.ObjectKey{Namespace: b, Name: workload.Name}, &rbacv1.RoleBinding{})).Should(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: a, Name: workload.Name}, &rbacv1.Role{})).To(Succeed())
	})

	It("needs no more than the operator's own RBAC, and goes back to the embedded queue on its volume", func() {
		// The API server refuses a Role or binding granting more than the requester holds;
		// the operator holds what it grants instead of escalate/bind. Run the controller as
		// a ServiceAccount bound to the generated config/rbac/role.yaml.
		dispatcherSettings = nil
		restartManager()
		opNS := newNamespace()
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: opNS, Name: "hookline-operator"}})).To(Succeed())
		data, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var role rbacv1.ClusterRole
		Expect(yaml.Unmarshal(data, &role)).To(Succeed())
		role.Name = "hookline-operator-" + opNS
		Expect(k8sClient.Create(ctx, &role)).To(Succeed())
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "hookline-operator", Namespace: opNS}},
		}
		Expect(k8sClient.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8sClient.Delete(ctx, binding)).To(Succeed())
			Expect(k8sClient.Delete(ctx, &role)).To(Succeed())
		})

		// Everything cluster-scoped is created afresh under the operator's identity, where
		// the API server's escalation check applies.
		for _, obj := range []client.Object{&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}} {
			Expect(k8sClient.DeleteAllOf(ctx, obj, client.MatchingLabels(workload.Labels()))).To(Succeed())
		}

		mgrLogs := &syncBuffer{}
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + opNS + ":hookline-operator"}
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:                 process.Scheme(),
			Logger:                 zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, mgrLogs)), zap.UseDevMode(true)),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// Watching only its own namespace, as with --watch-namespaces, must not hide the
			// dispatcher's objects elsewhere from the controller.
			Cache: cache.Options{
				DefaultNamespaces: map[string]cache.Config{opNS: {}},
				ByObject:          controllers.DispatcherCacheByObject(),
			},
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		Expect(err).NotTo(HaveOccurred())
		settings = workload.Settings{Image: testImage, Namespace: ns}.Default("")
		Expect(operator.SetupDispatcher(mgr, settings)).To(Succeed())
		mctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(mgr.Start(mctx)).To(Succeed())
		}()
		DeferCleanup(func() { stop(); <-done })

		Eventually(func(g Gomega) {
			d := deployment(g)
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
			g.Expect(d.Spec.Strategy.Type).To(Equal(appsv1.RecreateDeploymentStrategyType))
			g.Expect(d.Spec.Strategy.RollingUpdate).To(BeNil())
			g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(workload.AnnotationChecksum, settings.Checksum()))
			g.Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(
				HaveField("VolumeSource.PersistentVolumeClaim.ClaimName", workload.VolumeClaimName)))
		}).Should(Succeed())
		for _, name := range []string{workload.Name, workload.AuthName} {
			Eventually(get(client.ObjectKey{Name: name}, &rbacv1.ClusterRole{})).Should(Succeed())
			Eventually(get(client.ObjectKey{Name: name}, &rbacv1.ClusterRoleBinding{})).Should(Succeed())
		}
		Eventually(func(g Gomega) map[string]string {
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8sClient.Get(ctx, key(workload.VolumeClaimName), &pvc)).To(Succeed())
			return pvc.Annotations
		}).ShouldNot(HaveKey(controllers.AnnotationRetainedVolume))
		var roles rbacv1.RoleList
		Eventually(func(g Gomega) []string {
			g.Expect(k8sClient.List(ctx, &roles, client.MatchingLabels(workload.Labels()))).To(Succeed())
			var names []string
			for _, r := range roles.Items {
				names = append(names, r.Namespace+"/"+r.Name)
			}
			return names
		}).Should(ConsistOf(settings.Namespace+"/"+workload.LeaseName), "cluster-wide: only the status Lease's Role")
		Expect(mgrLogs.String()).NotTo(ContainSubstring("Reconciler error"))
	})
})

func isVolumeClaim(obj client.Object) bool {
	_, ok := obj.(*corev1.PersistentVolumeClaim)
	return ok
}

// selfSignedPEM is a CA certificate, as a NATS CA Secret's ca.crt holds.
func selfSignedPEM() []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
