package workload

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// typed turns an apply configuration into the API type it configures, so tests read
// plain fields instead of pointers.
func typed[T any](t *testing.T, ac any) T {
	t.Helper()
	var v T
	data, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func embedded() Settings { return Settings{}.Default(image) }

func external() Settings {
	return Settings{Queue: QueueExternal, Replicas: 3, NATS: NATS{URL: "nats://nats:4222", CredentialsSecret: "nats-creds"}}.Default(image)
}

func TestRenderWorkload(t *testing.T) {
	tests := []struct {
		name        string
		s           Settings
		replicas    int32
		strategy    appsv1.DeploymentStrategyType
		dataVolume  func(corev1.VolumeSource) bool
		args        []string
		extraMounts []string // beyond data and tmp
	}{
		{
			name:     "embedded queue: one replica on its own volume, replaced with Recreate",
			s:        embedded(),
			replicas: 1,
			strategy: appsv1.RecreateDeploymentStrategyType,
			dataVolume: func(v corev1.VolumeSource) bool {
				return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == VolumeClaimName
			},
			args: []string{"dispatcher", "--listen=:8080", "--metrics-listen=:9090", "--data-dir=/var/lib/hookline",
				"--queue=embedded", "--durability=default", "--max-body-bytes=262144", "--lease-namespace=hookline-system"},
		},
		{
			name:       "external queue: N replicas rolling, credentials mounted",
			s:          external(),
			replicas:   3,
			strategy:   appsv1.RollingUpdateDeploymentStrategyType,
			dataVolume: func(v corev1.VolumeSource) bool { return v.EmptyDir != nil },
			args: []string{"dispatcher", "--listen=:8080", "--metrics-listen=:9090", "--data-dir=/var/lib/hookline",
				"--queue=external", "--nats-url=nats://nats:4222", "--nats-replicas=3", "--nats-creds-file=/etc/hookline/nats/creds",
				"--durability=default", "--max-body-bytes=262144", "--lease-namespace=hookline-system"},
			extraMounts: []string{"/etc/hookline/nats"},
		},
		{
			name: "external queue: user and password, TLS with a client certificate, five copies of each stream",
			s: Settings{Queue: QueueExternal, Replicas: 2, NATS: NATS{URL: "tls://nats:4222", Replicas: 5, UserSecret: "nats-user",
				TLS: &NATSTLS{CASecret: "nats-ca", ClientSecret: "nats-client", ServerName: "nats.messaging"}}}.Default(image),
			replicas:   2,
			strategy:   appsv1.RollingUpdateDeploymentStrategyType,
			dataVolume: func(v corev1.VolumeSource) bool { return v.EmptyDir != nil },
			args: []string{"dispatcher", "--listen=:8080", "--metrics-listen=:9090", "--data-dir=/var/lib/hookline",
				"--queue=external", "--nats-url=tls://nats:4222", "--nats-replicas=5",
				"--nats-user-file=/etc/hookline/nats-user/username", "--nats-password-file=/etc/hookline/nats-user/password",
				"--nats-ca-file=/etc/hookline/nats-ca/ca.crt",
				"--nats-cert-file=/etc/hookline/nats-client/tls.crt", "--nats-key-file=/etc/hookline/nats-client/tls.key",
				"--nats-tls-server-name=nats.messaging",
				"--durability=default", "--max-body-bytes=262144", "--lease-namespace=hookline-system"},
			extraMounts: []string{"/etc/hookline/nats-user", "/etc/hookline/nats-ca", "/etc/hookline/nats-client"},
		},
		{
			name: "flags from the settings, extra args last",
			s: Settings{Durability: DurabilityAlways, WatchNamespaces: []string{"shipping", "billing"}, MaxBodyBytes: 1 << 20,
				LogLevel: "debug", ExtraArgs: []string{"--max-body-bytes=2048"}}.Default(image),
			replicas:   1,
			strategy:   appsv1.RecreateDeploymentStrategyType,
			dataVolume: func(v corev1.VolumeSource) bool { return v.PersistentVolumeClaim != nil },
			args: []string{"dispatcher", "--listen=:8080", "--metrics-listen=:9090", "--data-dir=/var/lib/hookline",
				"--queue=embedded", "--durability=always", "--watch-namespaces=billing,shipping", "--max-body-bytes=1048576",
				"--lease-namespace=hookline-system", "--zap-log-level=debug", "--max-body-bytes=2048"},
		},
		{
			name:       "HTTPS from a mounted Secret; the Secret opt-in rule turned off",
			s:          Settings{TLS: &TLS{SecretName: "dispatcher-tls"}, RequireSecretOptIn: ptrTo(false)}.Default(image),
			replicas:   1,
			strategy:   appsv1.RecreateDeploymentStrategyType,
			dataVolume: func(v corev1.VolumeSource) bool { return v.PersistentVolumeClaim != nil },
			args: []string{"dispatcher", "--listen=:8080", "--metrics-listen=:9090", "--data-dir=/var/lib/hookline",
				"--queue=embedded", "--durability=default", "--max-body-bytes=262144", "--lease-namespace=hookline-system",
				"--require-secret-opt-in=false", "--tls-cert-file=/etc/hookline/tls/tls.crt", "--tls-key-file=/etc/hookline/tls/tls.key"},
			extraMounts: []string{"/etc/hookline/tls"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := typed[appsv1.Deployment](t, Render(tt.s).Deployment)
			if d.Namespace != tt.s.Namespace || d.Name != Name {
				t.Errorf("Deployment is %s/%s", d.Namespace, d.Name)
			}
			if *d.Spec.Replicas != tt.replicas {
				t.Errorf("replicas = %d, want %d", *d.Spec.Replicas, tt.replicas)
			}
			if d.Spec.Strategy.Type != tt.strategy {
				t.Errorf("strategy = %s, want %s", d.Spec.Strategy.Type, tt.strategy)
			}
			if tt.strategy == appsv1.RecreateDeploymentStrategyType && d.Spec.Strategy.RollingUpdate != nil {
				t.Error("Recreate with a rollingUpdate block: the API server refuses it")
			}
			pod := d.Spec.Template
			if pod.Annotations[AnnotationChecksum] != tt.s.Checksum() {
				t.Errorf("checksum annotation = %q, want %q", pod.Annotations[AnnotationChecksum], tt.s.Checksum())
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if pod.Labels[k] != v {
					t.Errorf("the selector's %s=%s is not on the pod template", k, v)
				}
			}
			if pod.Spec.ServiceAccountName != Name {
				t.Errorf("serviceAccountName = %q", pod.Spec.ServiceAccountName)
			}
			c := pod.Spec.Containers[0]
			if c.Image != tt.s.Image {
				t.Errorf("image = %q, want %q", c.Image, tt.s.Image)
			}
			if !reflect.DeepEqual(c.Args, tt.args) {
				t.Errorf("args =\n%q\nwant\n%q", c.Args, tt.args)
			}
			vols := map[string]corev1.VolumeSource{}
			for _, v := range pod.Spec.Volumes {
				vols[v.Name] = v.VolumeSource
			}
			if !tt.dataVolume(vols["data"]) {
				t.Errorf("data volume = %+v", vols["data"])
			}
			var mounts []string
			for _, m := range c.VolumeMounts {
				if _, ok := vols[m.Name]; !ok {
					t.Errorf("mount of undeclared volume %q", m.Name)
				}
				mounts = append(mounts, m.MountPath)
			}
			if want := append([]string{DataDir, "/tmp"}, tt.extraMounts...); !reflect.DeepEqual(mounts, want) {
				t.Errorf("mounts = %q, want %q", mounts, want)
			}
		})
	}
}

func TestRenderPodHardening(t *testing.T) {
	pod := typed[appsv1.Deployment](t, Render(embedded()).Deployment).Spec.Template.Spec
	psc, c := pod.SecurityContext, pod.Containers[0]
	if psc == nil || !*psc.RunAsNonRoot || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context = %+v", psc)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context = %+v", sc)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.StartupProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes are not on /healthz and /readyz")
	}
	if c.LivenessProbe.HTTPGet.Port.StrVal != "http" {
		t.Errorf("liveness probe port = %v", c.LivenessProbe.HTTPGet.Port)
	}
	if c.Resources.Limits.Memory().String() != "512Mi" || c.Resources.Limits.Cpu().Sign() != 0 {
		t.Errorf("resources = %+v", c.Resources)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["GOMEMLIMIT"] != "483183819" { // 90% of 512Mi
		t.Errorf("GOMEMLIMIT = %q", env["GOMEMLIMIT"])
	}

	noLimits := Settings{Resources: &corev1.ResourceRequirements{}}.Default(image)
	c = typed[appsv1.Deployment](t, Render(noLimits).Deployment).Spec.Template.Spec.Containers[0]
	if len(c.Env) != 0 || len(c.Resources.Limits) != 0 {
		t.Errorf("without limits: env %v, resources %+v", c.Env, c.Resources)
	}
}

func TestRenderImagePullSecrets(t *testing.T) {
	s := embedded()
	if pod := typed[appsv1.Deployment](t, Render(s).Deployment).Spec.Template.Spec; len(pod.ImagePullSecrets) != 0 {
		t.Errorf("pull secrets without any set: %v", pod.ImagePullSecrets)
	}
	s.ImagePullSecrets = []string{"registry-a", "registry-b"}
	pod := typed[appsv1.Deployment](t, Render(s).Deployment).Spec.Template.Spec
	if want := []corev1.LocalObjectReference{{Name: "registry-a"}, {Name: "registry-b"}}; !reflect.DeepEqual(pod.ImagePullSecrets, want) {
		t.Errorf("pull secrets = %v, want %v", pod.ImagePullSecrets, want)
	}
	s.ImagePullSecrets = []string{"Not_A_Name"}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "imagePullSecrets") {
		t.Errorf("Validate of a bad pull secret name = %v", err)
	}
}

func TestRenderServiceAndBudget(t *testing.T) {
	s := embedded()
	svc := typed[corev1.Service](t, Render(s).Service)
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if !reflect.DeepEqual(ports, map[string]int32{"http": 8080, "metrics": 9090}) {
		t.Errorf("service ports = %v", ports)
	}
	pdb := typed[policyv1.PodDisruptionBudget](t, Render(s).PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("budget = %+v: a single pod must stay evictable", pdb.Spec)
	}
	d := typed[appsv1.Deployment](t, Render(s).Deployment)
	if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Error("the Service and the budget do not select the Deployment's pods")
	}
}

func TestRenderVolumeClaim(t *testing.T) {
	if Render(external()).VolumeClaim != nil {
		t.Error("the external queue renders a volume claim")
	}
	s := Settings{Storage: Storage{Size: "20Gi", Class: "fast"}}.Default(image)
	pvc := typed[corev1.PersistentVolumeClaim](t, Render(s).VolumeClaim)
	if pvc.Name != VolumeClaimName || pvc.Namespace != s.Namespace || pvc.Spec.Resources.Requests.Storage().String() != "20Gi" ||
		*pvc.Spec.StorageClassName != "fast" || !reflect.DeepEqual(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("volume claim = %+v", pvc)
	}
	if pvc := typed[corev1.PersistentVolumeClaim](t, Render(embedded()).VolumeClaim); pvc.Spec.StorageClassName != nil {
		t.Error("no class set, yet the claim names one: it must use the cluster's default class")
	}
}

func TestRenderRBAC(t *testing.T) {
	tests := []struct {
		name            string
		s               Settings
		clusterRoles    map[string][]rbacv1.PolicyRule
		roleNamespaces  []string
		bindingSubjects string
	}{
		{
			name:         "all namespaces: cluster-wide",
			s:            embedded(),
			clusterRoles: map[string][]rbacv1.PolicyRule{AuthName: AuthRules(), Name: NamespacedRules()},
		},
		{
			name:           "watched namespaces: a Role in each, only reviews cluster-wide",
			s:              Settings{WatchNamespaces: []string{"shipping", "billing"}, Namespace: "ops"}.Default(image),
			clusterRoles:   map[string][]rbacv1.PolicyRule{AuthName: AuthRules()},
			roleNamespaces: []string{"billing", "shipping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Render(tt.s)
			subject := rbacv1.Subject{Kind: "ServiceAccount", Name: Name, Namespace: tt.s.Namespace}
			got := map[string][]rbacv1.PolicyRule{}
			for _, r := range o.ClusterRoles {
				cr := typed[rbacv1.ClusterRole](t, r)
				got[cr.Name] = cr.Rules
			}
			if !reflect.DeepEqual(got, tt.clusterRoles) {
				t.Errorf("cluster roles = %+v, want %+v", got, tt.clusterRoles)
			}
			if len(o.ClusterRoleBindings) != len(o.ClusterRoles) {
				t.Fatalf("%d cluster roles, %d bindings", len(o.ClusterRoles), len(o.ClusterRoleBindings))
			}
			for i, b := range o.ClusterRoleBindings {
				crb := typed[rbacv1.ClusterRoleBinding](t, b)
				if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != *o.ClusterRoles[i].Name || !reflect.DeepEqual(crb.Subjects, []rbacv1.Subject{subject}) {
					t.Errorf("cluster role binding = %+v", crb)
				}
			}
			var roleNamespaces []string
			for i, r := range o.Roles {
				role := typed[rbacv1.Role](t, r)
				rb := typed[rbacv1.RoleBinding](t, o.RoleBindings[i])
				wantRules := NamespacedRules()
				if role.Name == LeaseName {
					// The status-writer election's Lease, in the dispatcher's own namespace.
					if role.Namespace != tt.s.Namespace || !reflect.DeepEqual(role.Rules, LeaseRules()) {
						t.Errorf("lease role %+v", role)
					}
					wantRules = LeaseRules()
				} else {
					roleNamespaces = append(roleNamespaces, role.Namespace)
				}
				if !reflect.DeepEqual(role.Rules, wantRules) || rb.Namespace != role.Namespace || rb.RoleRef.Kind != "Role" ||
					rb.RoleRef.Name != role.Name || !reflect.DeepEqual(rb.Subjects, []rbacv1.Subject{subject}) {
					t.Errorf("role %+v, binding %+v", role, rb)
				}
			}
			if !slices.Equal(roleNamespaces, tt.roleNamespaces) {
				t.Errorf("roles in %q, want %q", roleNamespaces, tt.roleNamespaces)
			}
		})
	}
}

func TestRenderLabelsEverything(t *testing.T) {
	for _, s := range []Settings{embedded(), external(), Settings{WatchNamespaces: []string{"a"}}.Default(image)} {
		for _, o := range Render(s).All() {
			meta := typed[struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}](t, o)
			if !reflect.DeepEqual(meta.Metadata.Labels, Labels()) {
				t.Errorf("%s %s has labels %v", meta.Kind, *o.GetName(), meta.Metadata.Labels)
			}
			if *o.GetKind() == "" || *o.GetName() == "" {
				t.Errorf("object without kind or name: %+v", o)
			}
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestRenderTLSProbesAndVolume: with TLS the probes speak HTTPS and the
// Secret is mounted whole (no subPath), so a renewed certificate reaches the
// running pod.
func TestRenderTLSProbesAndVolume(t *testing.T) {
	d := typed[appsv1.Deployment](t, deployment(Settings{TLS: &TLS{SecretName: "dispatcher-tls"}}.Default(image)))
	c := d.Spec.Template.Spec.Containers[0]
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %s scheme %q, want HTTPS", p.HTTPGet.Path, p.HTTPGet.Scheme)
		}
	}
	found := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "dispatcher-tls" {
			found = true
		}
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/hookline/tls" && (m.SubPath != "" || !m.ReadOnly) {
			t.Errorf("TLS mount %+v: want read-only, without subPath", m)
		}
	}
	if !found {
		t.Error("no volume for the TLS Secret")
	}
	plain := typed[appsv1.Deployment](t, deployment(embedded()))
	if s := plain.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Scheme; s != "" {
		t.Errorf("plain HTTP probe scheme %q, want unset", s)
	}
	if err := (Settings{TLS: &TLS{SecretName: "Not_A_Name"}}.Default(image)).Validate(); err == nil {
		t.Error("an invalid TLS Secret name was accepted")
	}
}
