package ui

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/server"
)

// --- one endpoint -----------------------------------------------------------------

type endpointData struct {
	Endpoint      *hooklinev1.WebhookEndpoint
	Health        Health
	Circuit       string
	Disabled      bool
	Subscriptions []subscriptionRow
	Chart         Chart
	Latency       Latency
	LastFailure   *hooklinev1.DeliveryFailure
	// LastFailed is the newest failed attempt of the attempt logs, with the receiver's
	// answer.
	LastFailed   *Attempt
	Attempts     []Attempt
	TestSends    []Attempt
	NextRotation string
	CanTest      Permission
	CanEnable    Permission
	CanRotate    Permission
}

func (s *Server) endpointPage(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	ctx := r.Context()
	var ep hooklinev1.WebhookEndpoint
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ep); err != nil {
		s.fail(w, r, ns, fmt.Errorf("reading WebhookEndpoint %s/%s: %w", ns, name, err))
		return
	}
	p := page{Title: "Endpoint " + name, Namespace: ns}
	d := endpointData{Endpoint: &ep, Health: healthOf(ep.Status.Conditions, ep.Spec.Suspend), Circuit: circuitOf(ep.Status.Conditions),
		Disabled: isDisabled(ep.Status.Conditions), NextRotation: nextRotation(&ep)}
	if ep.Status.Delivery != nil {
		d.LastFailure = ep.Status.Delivery.LastFailure
	}
	var subs hooklinev1.SubscriptionList
	if err := s.kube.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		p.Notes = append(p.Notes, "Subscriptions: "+err.Error())
	}
	var mine []hooklinev1.Subscription
	for _, sb := range subs.Items {
		if sb.Spec.EndpointRef.Name == name {
			mine = append(mine, sb)
			row := subscriptionRow{Name: sb.Name, Endpoint: name, Types: strings.Join(sb.Spec.EventTypes, ", "),
				Health: healthOf(sb.Status.Conditions, sb.Spec.Suspend), Suspended: sb.Spec.Suspend}
			if sb.Status.Delivery != nil {
				row.Delivery = *sb.Status.Delivery
			}
			d.Subscriptions = append(d.Subscriptions, row)
		}
	}
	// The attempt logs of the endpoint's subscriptions make its chart and percentiles.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sb := range mine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			list, err := s.disp.Attempts(ctx, ns, sb.Name, 500)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.Notes = append(p.Notes, note("Attempts of subscription "+sb.Name, err))
				return
			}
			for i := range list {
				list[i].Subscription = sb.Name
			}
			d.Attempts = append(d.Attempts, list...)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		list, err := s.disp.EndpointAttempts(ctx, ns, name, 10)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			p.Notes = append(p.Notes, note("Test sends", err))
			return
		}
		d.TestSends = list
	}()
	perms := s.can(ctx, ns, name, server.SendTest, rightPatchEndpoint)
	wg.Wait()
	sort.Slice(d.Attempts, func(i, j int) bool { return d.Attempts[i].Time.After(d.Attempts[j].Time) })
	now := s.opts.Clock.Now()
	d.Chart = deliveryChart(d.Attempts, now, time.Hour, 12)
	d.Latency = latencyPercentiles(d.Attempts)
	for i := range d.Attempts {
		if !d.Attempts[i].OK() {
			d.LastFailed = &d.Attempts[i]
			break
		}
	}
	if len(d.Attempts) > 20 {
		d.Attempts = d.Attempts[:20]
	}
	d.CanTest = perms[0]
	d.CanEnable, d.CanRotate = perms[1], perms[1]
	if d.CanEnable.Allowed && !d.Disabled {
		d.CanEnable = Permission{Reason: "The endpoint is not disabled."}
	}
	if d.CanRotate.Allowed && ep.Spec.Signing != nil && ep.Spec.Signing.SecretRef != nil {
		d.CanRotate = Permission{Reason: "The signing key is yours (spec.signing.secretRef): rotate it in its Secret."}
	}
	p.Data = d
	s.render(w, r, http.StatusOK, "endpoint", p)
}
