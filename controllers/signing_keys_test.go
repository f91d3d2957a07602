package controllers_test

import (
	"strings"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/rotation"
)

func TestRotationPolicy(t *testing.T) {
	tests := []struct {
		signing *hooklinev1.Signing
		want    rotation.Policy
		err     string
	}{
		{nil, rotation.DefaultPolicy, ""},
		{&hooklinev1.Signing{SecretRef: &hooklinev1.SecretKeyRef{Name: "k", Key: "secret"}}, rotation.DefaultPolicy, ""},
		{&hooklinev1.Signing{Rotation: &hooklinev1.Rotation{Every: hooklinev1.DurationOf(720 * time.Hour), Overlap: hooklinev1.DurationOf(90 * time.Minute)}}, rotation.Policy{Every: 720 * time.Hour, Overlap: 90 * time.Minute}, ""},
		{&hooklinev1.Signing{Rotation: &hooklinev1.Rotation{Every: hooklinev1.DurationOf(2 * time.Hour), Overlap: hooklinev1.DurationOf(2 * time.Hour)}}, rotation.Policy{}, "shorter"},
		{&hooklinev1.Signing{Rotation: &hooklinev1.Rotation{Every: hooklinev1.DurationOf(0)}}, rotation.Policy{}, "spec.signing.rotation: rotation interval must be positive"},
	}
	for _, tt := range tests {
		got, err := controllers.RotationPolicy(&hooklinev1.WebhookEndpointSpec{Signing: tt.signing})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: error %v, want one containing %q", tt.signing, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%+v: got %+v, %v; want %+v", tt.signing, got, err, tt.want)
		}
	}
}

func TestRotationRequest(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		last        string
		want        rotation.Request
	}{
		{"none", nil, "", rotation.Request{}},
		{"rotate", map[string]string{hooklinev1.AnnotationRotate: "t1"}, "",
			rotation.Request{Token: "rotate=t1;immediately="}},
		{"already handled", map[string]string{hooklinev1.AnnotationRotate: "t1"}, "rotate=t1;immediately=",
			rotation.Request{Token: "rotate=t1;immediately="}},
		{"immediate", map[string]string{hooklinev1.AnnotationRotate: "t1", hooklinev1.AnnotationRotateImmediately: "leak"}, "rotate=t1;immediately=",
			rotation.Request{Token: "rotate=t1;immediately=leak", Immediate: true}},
		{"a new rotate value after an immediate one keeps the overlap",
			map[string]string{hooklinev1.AnnotationRotate: "t2", hooklinev1.AnnotationRotateImmediately: "leak"}, "rotate=t1;immediately=leak",
			rotation.Request{Token: "rotate=t2;immediately=leak"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := controllers.RotationRequest(tt.annotations, tt.last); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
