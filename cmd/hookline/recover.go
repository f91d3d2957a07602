package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

func init() {
	register("recover", "send a subscription's retained events since a time again", runRecover)
}

func runRecover(args []string) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	kube := bindKubeFlags(fs)
	ns := fs.String("n", "default", "namespace of the subscription")
	sub := fs.String("subscription", "", "the subscription to recover (required)")
	since := fs.String("since", "", "send the events retained since this time: RFC 3339 (2026-11-26T20:00:00Z) or a duration ago (6h); empty: all retained")
	id := fs.String("id", "", "the request's id (Idempotency-Key); run again with the same id to see its progress or resume it (default: a new random id)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("--subscription is required, e.g. --subscription invoices")
	}
	t, err := parseWhen(*since, time.Now())
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	key := *id
	if key == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		key = "recover-" + hex.EncodeToString(b[:])
	}
	cfg, err := kube.load(api)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := checkSubscription(ctx, cfg, *ns, *sub); err != nil {
		return err
	}
	path := "/v1/namespaces/" + url.PathEscape(*ns) + "/subscriptions/" + url.PathEscape(*sub) + "/recover"
	if !t.IsZero() {
		path += "?since=" + url.QueryEscape(t.UTC().Format(time.RFC3339))
	}
	header := http.Header{"Idempotency-Key": []string{key}}
	// 202 while the recovery runs, 200 with its outcome once it has ended.
	out, err := callAPIWith(ctx, *api, http.MethodPost, path, nil, header, 0)
	if err != nil {
		return err
	}
	fmt.Println(out)
	fmt.Fprintf(os.Stderr, "Recovery %s: its progress is the Subscription's Recovering condition (kubectl get whsub -n %s %s -o yaml); "+
		"run 'hookline recover --id %s ...' again to see it here.\n", key, *ns, *sub, key)
	return nil
}
