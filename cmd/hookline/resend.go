package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

func init() {
	register("resend", "send one dead delivery of a subscription again", runResend)
}

func runResend(args []string) error {
	fs := flag.NewFlagSet("resend", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	kube := bindKubeFlags(fs)
	ns := fs.String("n", "default", "namespace of the subscription")
	sub := fs.String("subscription", "", "the subscription whose dead delivery to send again (required)")
	id := fs.String("id", "", "the dead delivery's id: its seq in GET .../subscriptions/{name}/dead (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("--subscription is required, e.g. --subscription invoices")
	}
	if seq, err := strconv.ParseUint(*id, 10, 64); err != nil || seq == 0 {
		return fmt.Errorf("--id must be the seq of a dead delivery as GET .../subscriptions/%s/dead lists it, got %q", *sub, *id)
	}
	if _, err := kube.load(api); err != nil {
		return err
	}
	path := "/v1/namespaces/" + url.PathEscape(*ns) + "/subscriptions/" + url.PathEscape(*sub) + "/deliveries/" + *id + "/resend"
	out, err := callAPI(context.Background(), *api, http.MethodPost, path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}
