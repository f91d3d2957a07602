package workload

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// Names of the dispatcher's objects. The cluster-scoped ones are unique per cluster: one
// hookline installation manages one dispatcher.
const (
	// Name of the Deployment, Service, ServiceAccount, PodDisruptionBudget, the
	// per-namespace Roles and RoleBindings, and the cluster-wide ClusterRole and binding.
	Name = "hookline-dispatcher"
	// AuthName is the ClusterRole (and binding) for TokenReviews and SubjectAccessReviews,
	// which are cluster-scoped and so cannot be granted by a Role.
	AuthName = "hookline-dispatcher-auth"
	// VolumeClaimName is the embedded queue's PersistentVolumeClaim.
	VolumeClaimName = "hookline-dispatcher-data"
)

// Labels on every object rendered here; the dispatcher controller finds what it owns by them.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// AnnotationChecksum, on the pod template, is Settings.Checksum.
	AnnotationChecksum = "hookline.io/settings-checksum"
)

// The dispatcher's ports and paths, as its flags take them.
const (
	APIPort     = 8080
	MetricsPort = 9090
	DataDir     = "/var/lib/hookline"
	tlsDir      = "/etc/hookline/tls" //nolint:gosec // G101: a mount path, not a credential
)

// Labels returns the labels of every dispatcher object.
func Labels() map[string]string {
	return map[string]string{
		LabelName:      "hookline",
		LabelComponent: "dispatcher",
		LabelManagedBy: "hookline-operator",
	}
}

// Selector selects the dispatcher objects by their labels.
func Selector() labels.Selector { return labels.SelectorFromSet(Labels()) }

// podLabels select the dispatcher's pods. They are the Deployment's selector, which cannot
// change once created, so they leave out managed-by.
func podLabels() map[string]string {
	return map[string]string{LabelName: "hookline", LabelComponent: "dispatcher"}
}

// Object is a rendered object as the controller applies it.
type Object interface {
	runtime.ApplyConfiguration
	GetKind() *string
	GetName() *string
	GetNamespace() *string
}

// Objects are the dispatcher's objects for one Settings.
type Objects struct {
	ServiceAccount      *corev1ac.ServiceAccountApplyConfiguration
	ClusterRoles        []*rbacv1ac.ClusterRoleApplyConfiguration
	ClusterRoleBindings []*rbacv1ac.ClusterRoleBindingApplyConfiguration
	Roles               []*rbacv1ac.RoleApplyConfiguration // one per watched namespace
	RoleBindings        []*rbacv1ac.RoleBindingApplyConfiguration
	VolumeClaim         *corev1ac.PersistentVolumeClaimApplyConfiguration // nil with the external queue
	Service             *corev1ac.ServiceApplyConfiguration
	Deployment          *appsv1ac.DeploymentApplyConfiguration
	PodDisruptionBudget *policyv1ac.PodDisruptionBudgetApplyConfiguration
}

// All lists the objects in the order they are applied: identity and permissions before
// the pods that use them, the volume before the pod that mounts it.
func (o Objects) All() []Object {
	all := []Object{o.ServiceAccount}
	for _, r := range o.ClusterRoles {
		all = append(all, r)
	}
	for _, b := range o.ClusterRoleBindings {
		all = append(all, b)
	}
	for _, r := range o.Roles {
		all = append(all, r)
	}
	for _, b := range o.RoleBindings {
		all = append(all, b)
	}
	if o.VolumeClaim != nil {
		all = append(all, o.VolumeClaim)
	}
	return append(all, o.Service, o.Deployment, o.PodDisruptionBudget)
}

// Render returns the dispatcher's objects for s, which must be defaulted and valid.
func Render(s Settings) Objects {
	o := Objects{
		ServiceAccount:      corev1ac.ServiceAccount(Name, s.Namespace).WithLabels(Labels()),
		Service:             service(s),
		Deployment:          deployment(s),
		PodDisruptionBudget: podDisruptionBudget(s),
	}
	o.ClusterRoles, o.ClusterRoleBindings, o.Roles, o.RoleBindings = rbac(s)
	if s.Queue == QueueEmbedded {
		o.VolumeClaim = volumeClaim(s)
	}
	return o
}

// Args are the dispatcher's command-line arguments.
func Args(s Settings) []string {
	args := []string{
		"dispatcher",
		"--listen=:" + strconv.Itoa(APIPort),
		"--metrics-listen=:" + strconv.Itoa(MetricsPort),
		"--data-dir=" + DataDir,
		"--queue=" + string(s.Queue),
	}
	if s.Queue == QueueExternal {
		args = append(args, s.natsArgs()...)
	}
	args = append(args, "--durability="+string(s.Durability))
	if !s.clusterWide() {
		args = append(args, "--watch-namespaces="+s.watchNamespacesFlag())
	}
	args = append(args, "--max-body-bytes="+strconv.FormatInt(s.MaxBodyBytes, 10))
	args = append(args, "--lease-namespace="+s.Namespace)
	if s.RequireSecretOptIn != nil && !*s.RequireSecretOptIn {
		args = append(args, "--require-secret-opt-in=false")
	}
	if s.TLS != nil {
		args = append(args, "--tls-cert-file="+tlsDir+"/"+corev1.TLSCertKey, "--tls-key-file="+tlsDir+"/"+corev1.TLSPrivateKeyKey)
	}
	if s.LogLevel != "" {
		args = append(args, "--zap-log-level="+s.LogLevel)
	}
	args = append(args, s.Egress.args()...)
	args = append(args, s.EventRetention.args()...)
	args = append(args, s.Dashboard.args()...)
	return append(args, s.ExtraArgs...)
}

func deployment(s Settings) *appsv1ac.DeploymentApplyConfiguration {
	strategy := appsv1ac.DeploymentStrategy()
	if s.Queue == QueueEmbedded {
		// The old pod must release the volume and the NATS store before the new one opens it.
		strategy.WithType(appsv1.RecreateDeploymentStrategyType)
	} else {
		// Both fields are set so this manager owns them and a switch back to Recreate
		// removes them (Recreate refuses a rollingUpdate block).
		strategy.WithType(appsv1.RollingUpdateDeploymentStrategyType).
			WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
				WithMaxUnavailable(intstr.FromInt32(0)).
				WithMaxSurge(intstr.FromInt32(1)))
	}
	return appsv1ac.Deployment(Name, s.Namespace).
		WithLabels(Labels()).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(s.Replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(podLabels())).
			WithStrategy(strategy).
			WithTemplate(podTemplate(s)))
}

func podTemplate(s Settings) *corev1ac.PodTemplateSpecApplyConfiguration {
	data := corev1ac.Volume().WithName("data")
	if s.Queue == QueueEmbedded {
		data.WithPersistentVolumeClaim(corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(VolumeClaimName))
	} else {
		data.WithEmptyDir(corev1ac.EmptyDirVolumeSource())
	}
	volumes := []*corev1ac.VolumeApplyConfiguration{
		data,
		// The root filesystem is read-only; Go and NATS may still want a temp dir.
		corev1ac.Volume().WithName("tmp").WithEmptyDir(corev1ac.EmptyDirVolumeSource()),
	}
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName("data").WithMountPath(DataDir),
		corev1ac.VolumeMount().WithName("tmp").WithMountPath("/tmp"),
	}
	for _, ref := range s.NATSSecrets() {
		// Listing the keys makes a Secret without them fail the pod's start visibly.
		items := make([]*corev1ac.KeyToPathApplyConfiguration, len(ref.Keys))
		for i, key := range ref.Keys {
			items[i] = corev1ac.KeyToPath().WithKey(key).WithPath(key)
		}
		volumes = append(volumes, corev1ac.Volume().WithName(ref.volume).WithSecret(
			corev1ac.SecretVolumeSource().WithSecretName(ref.Secret).WithItems(items...)))
		mounts = append(mounts, corev1ac.VolumeMount().WithName(ref.volume).WithMountPath(ref.dir).WithReadOnly(true))
	}
	scheme := corev1.URISchemeHTTP
	if s.TLS != nil {
		// Mounted as a directory, not with subPath, so that a renewed certificate
		// reaches the running pod, which reloads it.
		volumes = append(volumes, corev1ac.Volume().WithName("tls").WithSecret(
			corev1ac.SecretVolumeSource().WithSecretName(s.TLS.SecretName).
				WithItems(corev1ac.KeyToPath().WithKey(corev1.TLSCertKey).WithPath(corev1.TLSCertKey),
					corev1ac.KeyToPath().WithKey(corev1.TLSPrivateKeyKey).WithPath(corev1.TLSPrivateKeyKey))))
		mounts = append(mounts, corev1ac.VolumeMount().WithName("tls").WithMountPath(tlsDir).WithReadOnly(true))
		scheme = corev1.URISchemeHTTPS
	}

	container := corev1ac.Container().
		WithName("dispatcher").
		WithImage(s.Image).
		WithArgs(Args(s)...).
		WithPorts(
			corev1ac.ContainerPort().WithName("http").WithContainerPort(APIPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(MetricsPort).WithProtocol(corev1.ProtocolTCP),
		).
		WithPorts(s.Dashboard.containerPorts()...).
		WithVolumeMounts(mounts...).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		// Recovering a large embedded store can take a while; the startup probe keeps the
		// liveness probe from killing the pod meanwhile.
		WithStartupProbe(probe("/healthz", scheme).WithPeriodSeconds(5).WithFailureThreshold(60)).
		WithLivenessProbe(probe("/healthz", scheme).WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(probe("/readyz", scheme).WithPeriodSeconds(5).WithFailureThreshold(2))
	if s.ImagePullPolicy != "" {
		container.WithImagePullPolicy(s.ImagePullPolicy)
	}
	container.WithEnv(s.Tracing.env()...)
	if s.Resources != nil {
		container.WithResources(resources(*s.Resources))
		if limit, ok := s.Resources.Limits[corev1.ResourceMemory]; ok {
			// Leave the runtime some headroom below the limit so it collects garbage
			// harder instead of being OOM-killed.
			container.WithEnv(corev1ac.EnvVar().WithName("GOMEMLIMIT").
				WithValue(strconv.FormatInt(limit.Value()/10*9, 10)))
		}
	}

	pullSecrets := make([]*corev1ac.LocalObjectReferenceApplyConfiguration, len(s.ImagePullSecrets))
	for i, name := range s.ImagePullSecrets {
		pullSecrets[i] = corev1ac.LocalObjectReference().WithName(name)
	}
	spec := corev1ac.PodSpec()
	placement(s, spec)
	return corev1ac.PodTemplateSpec().
		WithLabels(Labels()).
		WithAnnotations(map[string]string{AnnotationChecksum: s.Checksum()}).
		WithSpec(spec.
			WithServiceAccountName(Name).
			WithImagePullSecrets(pullSecrets...).
			WithEnableServiceLinks(false).
			WithSecurityContext(corev1ac.PodSecurityContext().
				WithRunAsNonRoot(true).
				WithRunAsUser(65532).
				WithRunAsGroup(65532).
				// The volume is writable by the pod's group whatever the image.
				WithFSGroup(65532).
				WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
			WithContainers(container).
			WithVolumes(volumes...))
}

// probe checks path on the API port; scheme is set only for HTTPS, so the
// plain-HTTP Deployment stays as it was.
func probe(path string, scheme corev1.URIScheme) *corev1ac.ProbeApplyConfiguration {
	get := corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString("http"))
	if scheme == corev1.URISchemeHTTPS {
		get.WithScheme(scheme)
	}
	return corev1ac.Probe().WithHTTPGet(get)
}

func resources(r corev1.ResourceRequirements) *corev1ac.ResourceRequirementsApplyConfiguration {
	ac := corev1ac.ResourceRequirements()
	if len(r.Requests) > 0 {
		ac.WithRequests(r.Requests)
	}
	if len(r.Limits) > 0 {
		ac.WithLimits(r.Limits)
	}
	return ac
}

func service(s Settings) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(Name, s.Namespace).
		WithLabels(Labels()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(podLabels()).
			WithPorts(
				corev1ac.ServicePort().WithName("http").WithPort(APIPort).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP),
				corev1ac.ServicePort().WithName("metrics").WithPort(MetricsPort).WithTargetPort(intstr.FromString("metrics")).WithProtocol(corev1.ProtocolTCP),
			).
			WithPorts(s.Dashboard.servicePorts()...))
}

// podDisruptionBudget lets a drain take one pod at a time. With the embedded queue's one
// pod that still allows the eviction (a budget of zero would block node drains forever);
// with N replicas it keeps N-1 serving.
func podDisruptionBudget(s Settings) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(Name, s.Namespace).
		WithLabels(Labels()).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(podLabels())).
			// A crash-looping pod must not block a drain either.
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow))
}

func volumeClaim(s Settings) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	spec := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(s.Storage.Size)}))
	if s.Storage.Class != "" {
		spec.WithStorageClassName(s.Storage.Class)
	}
	return corev1ac.PersistentVolumeClaim(VolumeClaimName, s.Namespace).
		WithLabels(Labels()).
		WithSpec(spec)
}
