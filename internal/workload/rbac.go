package workload

import (
	rbacv1 "k8s.io/api/rbac/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// NamespacedRules are what the dispatcher needs in each namespace it watches: read
// endpoints and subscriptions, report delivery in their status, read Secrets, and record
// Events.
//
// RBAC cannot grant by label, so get/list/watch covers every Secret in the namespace even
// though the dispatcher lists only those labelled hookline.io/signing-key=true (its
// informer's selector) and GETs the ones endpoints refer to by name. Watching namespaces
// with --watch-namespaces narrows this to those namespaces.
func NamespacedRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"hookline.io"}, Resources: []string{"webhookendpoints", "subscriptions", "eventtypes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"hookline.io"}, Resources: []string{"webhookendpoints/status", "subscriptions/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
}

// AuthRules let the dispatcher authenticate publishers by their ServiceAccount token and
// authorise them with a SubjectAccessReview. Both resources are cluster-scoped, so these
// are granted cluster-wide in either RBAC mode.
func AuthRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
}

// LeaseName is the Lease that elects the one dispatcher replica writing delivery status;
// LeaseRules let the dispatcher take it, in its own namespace only.
const LeaseName = "hookline-dispatcher-status"

// LeaseRules are granted by a Role in the dispatcher's own namespace, which need not be a
// watched one.
func LeaseRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	}
}

// rbac renders the dispatcher's permissions: LeaseRules in its namespace, AuthRules cluster-wide, and NamespacedRules
// either cluster-wide (no watched namespaces) or as a Role in each watched namespace.
func rbac(s Settings) ([]*rbacv1ac.ClusterRoleApplyConfiguration, []*rbacv1ac.ClusterRoleBindingApplyConfiguration,
	[]*rbacv1ac.RoleApplyConfiguration, []*rbacv1ac.RoleBindingApplyConfiguration) {
	subject := rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(Name).WithNamespace(s.Namespace)
	clusterRole := func(name string, rules []rbacv1.PolicyRule) (*rbacv1ac.ClusterRoleApplyConfiguration, *rbacv1ac.ClusterRoleBindingApplyConfiguration) {
		return rbacv1ac.ClusterRole(name).WithLabels(Labels()).WithRules(policyRules(rules)...),
			rbacv1ac.ClusterRoleBinding(name).WithLabels(Labels()).WithSubjects(subject).
				WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(name))
	}

	authRole, authBinding := clusterRole(AuthName, AuthRules())
	clusterRoles := []*rbacv1ac.ClusterRoleApplyConfiguration{authRole}
	clusterBindings := []*rbacv1ac.ClusterRoleBindingApplyConfiguration{authBinding}
	roles := []*rbacv1ac.RoleApplyConfiguration{
		rbacv1ac.Role(LeaseName, s.Namespace).WithLabels(Labels()).WithRules(policyRules(LeaseRules())...),
	}
	bindings := []*rbacv1ac.RoleBindingApplyConfiguration{
		rbacv1ac.RoleBinding(LeaseName, s.Namespace).WithLabels(Labels()).WithSubjects(subject).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(LeaseName)),
	}
	if s.clusterWide() {
		role, binding := clusterRole(Name, NamespacedRules())
		return append(clusterRoles, role), append(clusterBindings, binding), roles, bindings
	}
	for _, ns := range s.WatchNamespaces {
		roles = append(roles, rbacv1ac.Role(Name, ns).WithLabels(Labels()).WithRules(policyRules(NamespacedRules())...))
		bindings = append(bindings, rbacv1ac.RoleBinding(Name, ns).WithLabels(Labels()).WithSubjects(subject).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(Name)))
	}
	return clusterRoles, clusterBindings, roles, bindings
}

func policyRules(rules []rbacv1.PolicyRule) []*rbacv1ac.PolicyRuleApplyConfiguration {
	out := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(rules))
	for _, r := range rules {
		out = append(out, rbacv1ac.PolicyRule().WithAPIGroups(r.APIGroups...).WithResources(r.Resources...).WithVerbs(r.Verbs...))
	}
	return out
}
